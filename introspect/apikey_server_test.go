package introspect

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// keyServerFixture is a serverFixture whose Server also knows API keys,
// with one key of owner ci-bot (scopes read, deploy).
func keyServerFixture(t *testing.T) (*serverFixture, string, string) {
	t.Helper()
	f := newServerFixture(t, nil)
	keys, err := NewAPIKeys(KeysConfig{Store: f.store, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.keys = keys
	key, id, hash, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	if err := f.store.PutKey(context.Background(), cache.KeyRecord{
		ID: id, Owner: "ci-bot", Scopes: []string{"read", "deploy"}, Hash: hash,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	return f, key, id
}

func TestIntrospectAPIKey(t *testing.T) {
	f, key, _ := keyServerFixture(t)
	status, _, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {key}})
	if status != http.StatusOK {
		t.Fatalf("status: got %d; want 200 (%s)", status, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	exp := float64(f.clock.Now().Add(time.Hour).Unix())
	for k, want := range map[string]any{"active": true, "client_id": "ci-bot", "sub": "ci-bot", "scope": "read deploy", "token_type": "api_key", "exp": exp} {
		if got[k] != want {
			t.Errorf("%s: got %v; want %v (%s)", k, got[k], want, body)
		}
	}
	if _, ok := got["iss"]; ok {
		t.Errorf("iss present for an API key: %s", body)
	}
	// A forged checksum, and the key after it expired, are inactive.
	for _, tok := range []string{key[:len(key)-1] + "0", key[:len(key)-1] + "1"} {
		if tok == key {
			continue
		}
		if _, _, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {tok}}); body != `{"active":false}`+"\n" {
			t.Errorf("malformed key: got %s; want inactive", body)
		}
	}
	f.clock.Advance(time.Hour)
	if _, _, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {key}}); body != `{"active":false}`+"\n" {
		t.Errorf("expired key: got %s; want inactive", body)
	}
}

func TestRevokeAPIKey(t *testing.T) {
	f, key, id := keyServerFixture(t)
	// An id alone (another secret) revokes nothing.
	other, _, _, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if status, _, body := f.post(t, "/revoke", appID, appSecret, url.Values{"token": {other}}); status != http.StatusOK {
		t.Fatalf("unknown key: status %d; want 200 (%s)", status, body)
	}
	if f.store.IsRevoked(&cache.Credential{KeyID: id}) {
		t.Fatal("an unknown key revoked a stored one")
	}
	if status, _, body := f.post(t, "/revoke", appID, appSecret, url.Values{"token": {key}}); status != http.StatusOK {
		t.Fatalf("status %d; want 200 (%s)", status, body)
	}
	e, ok := f.store.Get("", cache.KindKey, id)
	if !ok || e.Initiator != "rfc7009:"+appID {
		t.Fatalf("key entry = %+v, %t; want one initiated by rfc7009:%s", e, ok, appID)
	}
	if _, _, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {key}}); body != `{"active":false}`+"\n" {
		t.Errorf("revoked key: got %s; want inactive", body)
	}
}
