package cache

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// TestRecordEmailDurable: the email directory is in the file before
// RecordEmail returns and is reloaded by Open; expired records are not.
func TestRecordEmailDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	clk := clocktest.New(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	s, err := Open(Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice, bob := EmailOwner{Issuer: "https://idp", Sub: "alice"}, EmailOwner{Issuer: "https://idp", Sub: "bob"}
	if err := s.RecordEmail(ctx, "Alice@Example.com", alice, clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordEmail(ctx, "bob@example.com", bob, clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	s, err = Open(Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.EmailOwners(ctx, "alice@example.COM"); err != nil || len(got) != 1 || got[0] != alice {
		t.Errorf("after reopening: got %v, %v; want [%v]", got, err, alice)
	}
	if got, _ := s.EmailOwners(ctx, "bob@example.com"); len(got) != 0 {
		t.Errorf("an expired record after reopening: got %v; want none", got)
	}
}
