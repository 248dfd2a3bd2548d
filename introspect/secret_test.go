package introspect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretRedacts(t *testing.T) {
	const value = "hunter2-very-secret"
	is := Issuer{Issuer: "https://idp.example.com", ClientSecret: Secret(value)}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "secret", is.ClientSecret, "issuer", is)
	js, err := json.Marshal(is)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":     fmt.Sprintf("%v", is),
		"%+v":    fmt.Sprintf("%+v", is),
		"%#v":    fmt.Sprintf("%#v", is),
		"Sprint": fmt.Sprint(is.ClientSecret),
		"json":   string(js),
		"slog":   logged.String(),
	} {
		if strings.Contains(out, value) {
			t.Errorf("%s: got %q; want the secret redacted", name, out)
		}
	}
	if string(is.ClientSecret) != value {
		t.Errorf("got %q; want the value kept", string(is.ClientSecret))
	}
}
