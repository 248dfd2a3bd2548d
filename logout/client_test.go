package logout

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// startServer serves f's Admin the way the CLI mounts it.
func startServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/admin/revocations", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestRevokeRemote(t *testing.T) {
	tests := []struct {
		name       string
		token      string
		req        RevokeRequest
		want       cache.Entry
		wantStatus int // of a *RemoteError; 0 means success
		wantErr    string
	}{
		{name: "sub", token: tokOps, req: RevokeRequest{Sub: "alice", Reason: "left"},
			want: cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "alice", Reason: "left", Initiator: "admin:ops",
				RevokedAt: t0, ExpiresAt: t0.Add(time.Hour + 2*skew)}},
		{name: "client with issuer", token: tokCI, req: RevokeRequest{ClientID: "billing", Issuer: issA},
			want: cache.Entry{Issuer: issA, Kind: cache.KindClient, Value: "billing", Initiator: "admin:ci",
				RevokedAt: t0, ExpiresAt: t0.Add(time.Hour + 2*skew)}},
		{name: "session", token: tokOps, req: RevokeRequest{Session: "gw-1"},
			want: cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest("gw-1"), Initiator: "admin:ops",
				RevokedAt: t0, ExpiresAt: t0.Add(24*time.Hour + skew)}},
		{name: "every field of the request reaches the server", token: tokOps, req: RevokeRequest{SID: "s", JTI: "j"},
			wantStatus: 400, wantErr: "logout: admin API answered 400 Bad Request: invalid_request: exactly one of sub, sid, jti, client_id, session, key is required"},
		{name: "nothing to revoke", token: tokOps, req: RevokeRequest{Reason: "x"},
			wantStatus: 400, wantErr: "invalid_request: exactly one of"},
		{name: "unknown issuer", token: tokOps, req: RevokeRequest{Sub: "alice", Issuer: "https://other.example"},
			wantStatus: 400, wantErr: "invalid_request: issuer: not a configured issuer"},
		{name: "wrong token", token: tokOps + "x", req: RevokeRequest{Sub: "alice"},
			wantStatus: 401, wantErr: "logout: admin API answered 401 Unauthorized: unauthorized"},
		{name: "no token", token: "", req: RevokeRequest{Sub: "alice"},
			wantStatus: 401, wantErr: "401 Unauthorized: unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			srv := startServer(t, f.admin)
			got, err := RevokeRemote(context.Background(), srv.Client(), srv.URL, tt.token, tt.req)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				if !entryEqual(got, tt.want) {
					t.Errorf("got %+v; want %+v", got, tt.want)
				}
				return
			}
			var re *RemoteError
			if !errors.As(err, &re) || re.StatusCode != tt.wantStatus {
				t.Fatalf("got %v; want a *RemoteError with status %d", err, tt.wantStatus)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %q; want it to contain %q", err, tt.wantErr)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
			if n := len(f.stored(t)); n != 0 {
				t.Errorf("stored entries: got %d; want 0", n)
			}
		})
	}
}

func TestRevokeRemoteStoreFailure(t *testing.T) {
	var events []string
	f := newFixture(t, func(c *Config) { c.Store = eventStore{Store: c.Store, fail: errors.New("disk full"), events: &events} })
	srv := startServer(t, f.admin)
	_, err := RevokeRemote(context.Background(), srv.Client(), srv.URL, tokOps, RevokeRequest{JTI: "j"})
	var re *RemoteError
	if !errors.As(err, &re) || re.StatusCode != http.StatusInternalServerError || re.Code != "server_error" || re.Description != "revocation not stored" {
		t.Errorf("got %v; want 500 server_error: revocation not stored", err)
	}
}

// blockingStore never finishes a revocation before its context ends.
type blockingStore struct{ Store }

func (blockingStore) Revoke(ctx context.Context, _ cache.Entry) (cache.Entry, error) {
	<-ctx.Done()
	return cache.Entry{}, ctx.Err()
}

func TestRevokeRemoteTimesOutWithContext(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Store = blockingStore{c.Store} })
	srv := startServer(t, f.admin)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := RevokeRemote(ctx, srv.Client(), srv.URL, tokOps, RevokeRequest{Sub: "alice"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v; want context.DeadlineExceeded", err)
	}
}

func TestRevokeRemoteBaseURL(t *testing.T) {
	f := newFixture(t, nil)
	mux := http.NewServeMux()
	mux.Handle("/gw/admin/revocations", f.admin)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, base := range []string{srv.URL + "/gw", srv.URL + "/gw/"} {
		if _, err := RevokeRemote(context.Background(), srv.Client(), base, tokOps, RevokeRequest{Sub: "alice"}); err != nil {
			t.Errorf("base %q: got %v; want nil", base, err)
		}
	}
	for _, base := range []string{"", "127.0.0.1:9091", "ftp://host", "http://", "http://a b", "/admin"} {
		if _, err := RevokeRemote(context.Background(), srv.Client(), base, tokOps, RevokeRequest{Sub: "alice"}); err == nil {
			t.Errorf("base %q: got nil; want error", base)
		}
	}
	if _, err := RevokeRemote(context.Background(), nil, srv.URL, tokOps, RevokeRequest{Sub: "alice"}); err == nil {
		t.Errorf("nil client: got nil; want error")
	}
}

func TestRevokeRemoteOddAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
		remote  bool
	}{
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/steal", http.StatusTemporaryRedirect)
		}, "answered 307 Temporary Redirect", true},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		}, "logout: admin API answered 502 Bad Gateway", true},
		{"control characters stripped", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"bad\u001b[31m","error_description":"line\nbreak"}`))
		}, "answered 400 Bad Request: bad[31m: linebreak", true},
		{"201 without an entry", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`not json`))
		}, "stored, but the answer is not an entry", false},
		{"200 is not 201", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{}`))
		}, "answered 200 OK", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			_, err := RevokeRemote(context.Background(), srv.Client(), srv.URL, tokOps, RevokeRequest{Sub: "alice"})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v; want an error containing %q", err, tt.wantErr)
			}
			var re *RemoteError
			if errors.As(err, &re) != tt.remote {
				t.Errorf("got %T; want *RemoteError %v", err, tt.remote)
			}
		})
	}
}
