package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerifyFiles feeds arbitrary file contents to VerifyFiles: it
// never panics, and an intact verdict counts every line.
func FuzzVerifyFiles(f *testing.F) {
	chain := []byte(`{"seq":1,"time":"2026-03-01T12:00:01Z","event":"revocation","trigger":"admin","initiator":"admin:ops","targets":[{"issuer":"https://idp","kind":"sub","value":"alice"}],"prev":"` + GenesisHash + `"}` + "\n")
	f.Add(chain)
	f.Add([]byte{})
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + GenesisHash + `","event":"x"}`))
	f.Add([]byte(`{"seq":2,"prev":"` + GenesisHash + `"}` + "\n" + `{"seq":1,"prev":"zz"}` + "\n"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := VerifyFiles(path)
		if err != nil {
			t.Fatalf("VerifyFiles: %v", err)
		}
		if rep.Break == nil {
			if n := bytes.Count(data, []byte("\n")); rep.Records != n || (n > 0 && data[len(data)-1] != '\n') {
				t.Fatalf("intact verdict: got %d records; want %d complete lines", rep.Records, n)
			}
		}
	})
}
