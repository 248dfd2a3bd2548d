package propagate_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/propagate"
)

// logBuffer collects the connector's logs (debug level and up), safe for
// concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is one connector against its fake, with its logs.
type harness struct {
	f    *fakeIdP
	auth propagate.Authority
	logs *logBuffer
	errs []error // every error returned, checked for secrets at the end
}

func newHarness(t *testing.T, vendor string, edit ...func(*propagate.Config)) *harness {
	t.Helper()
	f := newFakeIdP(t, vendor)
	cfg := f.config()
	for _, e := range edit {
		e(&cfg)
	}
	h := &harness{f: f, logs: &logBuffer{}}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	auth, err := propagate.New(cfg, &http.Client{Timeout: 5 * time.Second}, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.auth = auth
	t.Cleanup(func() { h.checkNoSecrets(t) })
	return h
}

// record keeps err for the secret check and returns it.
func (h *harness) record(err error) error {
	if err != nil {
		h.errs = append(h.errs, err)
	}
	return err
}

// checkNoSecrets fails when a credential or an admin token appears in
// the logs or in an error.
func (h *harness) checkNoSecrets(t *testing.T) {
	t.Helper()
	text := h.logs.String()
	for _, e := range h.errs {
		text += "\n" + e.Error()
	}
	for _, s := range []string{fakeClientSecret, fakeAPIToken, fakeTokenPrefix} {
		if strings.Contains(text, s) {
			t.Errorf("secret %q in logs or errors:\n%s", s, text)
		}
	}
}

func wantCalls(t *testing.T, f *fakeIdP, want ...string) {
	t.Helper()
	if got := f.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n  got  %q\n  want %q", got, want)
	}
}

func wantCallError(t *testing.T, err error, status int, temporary bool) *propagate.CallError {
	t.Helper()
	var ce *propagate.CallError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v; want a *CallError", err)
	}
	if ce.Status != status || ce.Temporary != temporary {
		t.Errorf("CallError = status %d temporary %v (%v); want %d, %v", ce.Status, ce.Temporary, ce, status, temporary)
	}
	return ce
}

// The documented calls, in order, with the right credentials.

func TestKeycloakEndUser(t *testing.T) {
	h := newHarness(t, "keycloak")
	if err := h.record(h.auth.EndUser(t.Context(), "bob")); err != nil {
		t.Fatalf("EndUser = %v; want nil", err)
	}
	wantCalls(t, h.f,
		"POST token",
		"POST /admin/realms/acme/users/bob/logout token#1",
		"GET /admin/realms/acme/users/bob/consents token#1",
		"DELETE /admin/realms/acme/users/bob/consents/app-one token#1",
		"DELETE /admin/realms/acme/users/bob/consents/app-two token#1",
	)
	// Again: nothing left to revoke, the token is reused.
	if err := h.record(h.auth.EndUser(t.Context(), "bob")); err != nil {
		t.Fatalf("EndUser again = %v; want nil", err)
	}
	wantCalls(t, h.f,
		"POST /admin/realms/acme/users/bob/logout token#1",
		"GET /admin/realms/acme/users/bob/consents token#1",
	)
}

func TestKeycloakEndSession(t *testing.T) {
	h := newHarness(t, "keycloak")
	if err := h.record(h.auth.EndSession(t.Context(), "sid-1")); err != nil {
		t.Fatalf("EndSession = %v; want nil", err)
	}
	err := h.record(h.auth.EndSession(t.Context(), "sid-1"))
	if !errors.Is(err, propagate.ErrNotFound) {
		t.Errorf("EndSession of an ended session = %v; want ErrNotFound", err)
	}
	wantCalls(t, h.f, "POST token", "DELETE /admin/realms/acme/sessions/sid-1 token#1", "DELETE /admin/realms/acme/sessions/sid-1 token#1")
	if err := h.auth.RevokeClient(t.Context(), "app-one"); !errors.Is(err, propagate.ErrUnsupported) {
		t.Errorf("RevokeClient = %v; want ErrUnsupported", err)
	}
	wantCalls(t, h.f)
}

func TestKeycloakEscapesPath(t *testing.T) {
	h := newHarness(t, "keycloak")
	err := h.record(h.auth.EndUser(t.Context(), "../../../realms/master/users/x"))
	if !errors.Is(err, propagate.ErrNotFound) {
		t.Errorf("EndUser(path traversal) = %v; want ErrNotFound", err)
	}
	wantCalls(t, h.f, "POST token", "POST /admin/realms/acme/users/..%2F..%2F..%2Frealms%2Fmaster%2Fusers%2Fx/logout token#1")
}

func TestOktaCalls(t *testing.T) {
	h := newHarness(t, "okta")
	ctx := t.Context()
	if err := h.record(h.auth.EndUser(ctx, "bob")); err != nil {
		t.Fatalf("EndUser = %v; want nil", err)
	}
	if err := h.record(h.auth.RevokeClient(ctx, "0oa1app")); err != nil {
		t.Fatalf("RevokeClient = %v; want nil", err)
	}
	if err := h.auth.EndSession(ctx, "sid-1"); !errors.Is(err, propagate.ErrUnsupported) {
		t.Errorf("EndSession = %v; want ErrUnsupported", err)
	}
	wantCalls(t, h.f,
		"DELETE /api/v1/users/bob/sessions?oauthTokens=true ssws",
		"DELETE /api/v1/apps/0oa1app/tokens ssws",
	)
}

// An Okta service app: private_key_jwt at the org authorization server,
// then the scoped bearer token.
func TestOktaServiceAppCalls(t *testing.T) {
	h := newHarness(t, "okta-oauth")
	ctx := t.Context()
	if err := h.record(h.auth.EndUser(ctx, "bob")); err != nil {
		t.Fatalf("EndUser = %v; want nil", err)
	}
	if err := h.record(h.auth.RevokeClient(ctx, "0oa1app")); err != nil {
		t.Fatalf("RevokeClient = %v; want nil", err)
	}
	wantCalls(t, h.f,
		"POST token",
		"DELETE /api/v1/users/bob/sessions?oauthTokens=true token#1",
		"DELETE /api/v1/apps/0oa1app/tokens token#1",
	)
	// Each token request carries a fresh assertion (the fake refuses a
	// jti seen before).
	h.f.expire()
	if err := h.record(h.auth.EndUser(ctx, "bob")); err != nil {
		t.Fatalf("EndUser after expiry = %v; want nil", err)
	}
	if n := h.f.tokenRequests(); n != 2 {
		t.Errorf("token requests = %d; want 2", n)
	}
}

func TestEntraCalls(t *testing.T) {
	h := newHarness(t, "entra")
	ctx := t.Context()
	if err := h.record(h.auth.EndUser(ctx, "bob")); err != nil {
		t.Fatalf("EndUser = %v; want nil", err)
	}
	for name, call := range map[string]func(context.Context, string) error{"EndSession": h.auth.EndSession, "RevokeClient": h.auth.RevokeClient} {
		if err := call(ctx, "x"); !errors.Is(err, propagate.ErrUnsupported) {
			t.Errorf("%s = %v; want ErrUnsupported", name, err)
		}
	}
	wantCalls(t, h.f, "POST token", "POST /v1.0/users/bob/revokeSignInSessions token#1")
}

// Every connector behaves the same way on the failures the issue names.

var vendors = []struct {
	name string
	// user is the call an EndUser makes first, as the fake records it
	// (without the credential).
	user string
	// token says whether the connector gets its admin token from a token
	// endpoint (Okta uses a fixed API token).
	token bool
}{
	{"keycloak", "POST /admin/realms/acme/users/nobody/logout", true},
	{"okta", "DELETE /api/v1/users/nobody/sessions?oauthTokens=true", false},
	{"okta-oauth", "DELETE /api/v1/users/nobody/sessions?oauthTokens=true", true},
	{"entra", "POST /v1.0/users/nobody/revokeSignInSessions", true},
}

func TestUnknownUser(t *testing.T) {
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			err := h.record(h.auth.EndUser(t.Context(), "nobody"))
			if !errors.Is(err, propagate.ErrNotFound) {
				t.Fatalf("EndUser(unknown) = %v; want ErrNotFound", err)
			}
			var ce *propagate.CallError
			if errors.As(err, &ce) {
				t.Errorf("ErrNotFound wraps a CallError %v; the engine must not retry it", ce)
			}
		})
	}
}

// An admin token that expired is refused with 401: the connector gets a
// new one, once, and repeats the call, once.
func TestAdminTokenExpiry(t *testing.T) {
	for _, v := range vendors {
		if !v.token {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			ctx := t.Context()
			if err := h.record(h.auth.EndUser(ctx, "alice")); err != nil {
				t.Fatal(err)
			}
			h.f.takeCalls()
			h.f.expire()
			if err := h.record(h.auth.EndUser(ctx, "alice")); err != nil {
				t.Fatalf("EndUser after expiry = %v; want nil", err)
			}
			user := strings.Replace(v.user, "nobody", "alice", 1)
			calls := h.f.takeCalls()
			if len(calls) < 3 || calls[0] != user+" none" || calls[1] != "POST token" || calls[2] != user+" token#2" {
				t.Errorf("calls = %q; want the call refused, one token request, the call again with the new token", calls)
			}

			// Refused again with the new token (the admin client lost its
			// rights): one renewal only, then a permanent 401.
			h.f.revoke()
			err := h.record(h.auth.EndUser(ctx, "alice"))
			wantCallError(t, err, http.StatusUnauthorized, false)
			wantCalls(t, h.f, user+" none", "POST token", user+" none")
		})
	}
}

// Okta's API token cannot be renewed: a 401 is final at once.
func TestOktaAPITokenRefused(t *testing.T) {
	h := newHarness(t, "okta", func(c *propagate.Config) { c.APIToken = fakeAPIToken + "-revoked" })
	err := h.record(h.auth.EndUser(t.Context(), "bob"))
	wantCallError(t, err, http.StatusUnauthorized, false)
	if calls := h.f.takeCalls(); len(calls) != 1 {
		t.Errorf("calls = %q; want one", calls)
	}
	if !strings.Contains(err.Error(), "E0000011") {
		t.Errorf("error %q does not carry Okta's errorCode", err)
	}
	// The wrong token itself must not show either.
	if strings.Contains(h.logs.String()+err.Error(), "-revoked") {
		t.Error("API token in logs or error")
	}
}

func TestRateLimited(t *testing.T) {
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			h.f.script(status(http.StatusTooManyRequests, `{"error":"rate"}`, "Retry-After", "7"))
			err := h.record(h.auth.EndUser(t.Context(), "alice"))
			ce := wantCallError(t, err, http.StatusTooManyRequests, true)
			if ce.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %s; want 7s", ce.RetryAfter)
			}
			// The next attempt succeeds.
			if err := h.record(h.auth.EndUser(t.Context(), "alice")); err != nil {
				t.Errorf("EndUser after the 429 = %v; want nil", err)
			}
		})
	}
}

// Okta announces its rate-limit window in X-Rate-Limit-Reset (epoch
// seconds) rather than Retry-After
// (https://developer.okta.com/docs/reference/rl-best-practices/).
func TestOktaRateLimitReset(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, "okta", func(c *propagate.Config) { c.Clock = clocktest.New(now) })
	h.f.script(status(http.StatusTooManyRequests, `{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests."}`,
		"X-Rate-Limit-Limit", "600", "X-Rate-Limit-Remaining", "0", "X-Rate-Limit-Reset", strconv.FormatInt(now.Unix()+42, 10)))
	err := h.record(h.auth.EndUser(t.Context(), "bob"))
	ce := wantCallError(t, err, http.StatusTooManyRequests, true)
	if want := 42 * time.Second; ce.RetryAfter != want {
		t.Errorf("RetryAfter = %s; want %s", ce.RetryAfter, want)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			h.f.script(status(http.StatusInternalServerError, "oops"), status(http.StatusBadGateway, "<html>bad gateway</html>"), status(http.StatusServiceUnavailable, "", "Retry-After", "Fri, 04 Dec 2026 12:00:30 GMT"))
			for _, code := range []int{500, 502, 503} {
				wantCallError(t, h.record(h.auth.EndUser(t.Context(), "alice")), code, true)
			}
			if err := h.record(h.auth.EndUser(t.Context(), "alice")); err != nil {
				t.Errorf("EndUser after 5xx = %v; want nil", err)
			}
		})
	}
}

func TestPermanentClientError(t *testing.T) {
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			h.f.script(status(http.StatusForbidden, `{"errorCode":"E0000006","errorSummary":"You do not have permission to perform the requested action"}`))
			ce := wantCallError(t, h.record(h.auth.EndUser(t.Context(), "alice")), http.StatusForbidden, false)
			if v.name == "okta" && !strings.Contains(ce.Error(), "E0000006") {
				t.Errorf("error %q lacks Okta's errorCode", ce)
			}
		})
	}
}

// An authority that never answers costs one call until the caller's
// deadline, then a temporary error.
func TestHang(t *testing.T) {
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			release := make(chan struct{})
			defer close(release)
			h.f.script(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			err := h.record(h.auth.EndUser(ctx, "alice"))
			wantCallError(t, err, 0, true)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v; want it to wrap context.DeadlineExceeded", err)
			}
		})
	}
}

// A redirect is never followed (the credential would travel with it) and
// fails the call.
func TestRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer other.Close()
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
				h.f.script(status(code, "", "Location", other.URL+"/steal"))
				wantCallError(t, h.record(h.auth.EndUser(t.Context(), "alice")), code, true)
			}
			if v.token {
				// The token endpoint redirecting is refused as well.
				h.f.expire()
				h.f.script(status(http.StatusUnauthorized, ""))
				h.f.scriptToken(status(http.StatusFound, "", "Location", other.URL+"/token"))
				wantCallError(t, h.record(h.auth.EndUser(t.Context(), "alice")), http.StatusFound, true)
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("%d requests reached the redirect target; want 0", n)
	}
}

// An endless body is read up to a bound, then the call fails.
func TestEndlessBody(t *testing.T) {
	endless := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte("["), 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	for _, v := range vendors {
		t.Run(v.name, func(t *testing.T) {
			h := newHarness(t, v.name)
			h.f.script(endless)
			err := h.record(h.auth.EndUser(t.Context(), "alice"))
			wantCallError(t, err, 0, true)
			if !strings.Contains(err.Error(), "longer than") {
				t.Errorf("err = %v; want the size bound named", err)
			}
			if v.token {
				h.f.expire()
				h.f.script(status(http.StatusUnauthorized, ""))
				h.f.scriptToken(endless)
				wantCallError(t, h.record(h.auth.EndUser(t.Context(), "alice")), 0, true)
			}
		})
	}
}

// Answers that are not what the vendor documents fail the call, never
// pass for success.
func TestGarbageAnswers(t *testing.T) {
	t.Run("keycloak consents", func(t *testing.T) {
		h := newHarness(t, "keycloak")
		h.f.script(nil, status(http.StatusOK, "<html>login</html>"))
		wantCallError(t, h.record(h.auth.EndUser(t.Context(), "bob")), http.StatusOK, true)
	})
	for _, body := range []string{"", "null", `{"value":false}`, `{"value":"true"}`, "<html>", `{"@odata.context":"x"}`} {
		t.Run("entra "+body, func(t *testing.T) {
			h := newHarness(t, "entra")
			h.f.script(status(http.StatusOK, body))
			wantCallError(t, h.record(h.auth.EndUser(t.Context(), "bob")), http.StatusOK, true)
		})
	}
	for _, tc := range []struct{ name, body string }{
		{"not json", "<html>"},
		{"no token", `{"token_type":"Bearer","expires_in":300}`},
		{"not bearer", `{"access_token":"x","token_type":"DPoP","expires_in":300}`},
		{"token with spaces", `{"access_token":"x y","token_type":"Bearer"}`},
	} {
		t.Run("token "+tc.name, func(t *testing.T) {
			h := newHarness(t, "keycloak")
			h.f.scriptToken(status(http.StatusOK, tc.body))
			err := h.record(h.auth.EndUser(t.Context(), "bob"))
			var ce *propagate.CallError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a CallError", err)
			}
			wantCalls(t, h.f, "POST token")
		})
	}
	t.Run("token refused", func(t *testing.T) {
		h := newHarness(t, "keycloak", func(c *propagate.Config) { c.ClientSecret = "wrong-" + fakeClientSecret })
		wantCallError(t, h.record(h.auth.EndUser(t.Context(), "bob")), http.StatusUnauthorized, false)
		wantCalls(t, h.f, "POST token")
	})
}

// Concurrent calls share one token request.
func TestTokenSingleflight(t *testing.T) {
	h := newHarness(t, "entra")
	entered, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.f.tokenHook = func() {
		once.Do(func() { close(entered) })
		<-gate
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- h.auth.EndUser(t.Context(), "alice") })
	}
	// Hold the one request open while the other callers arrive; whoever
	// comes after it is answered finds the token cached. Either way there
	// is exactly one request.
	<-entered
	runtime.Gosched()
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if h.record(err) != nil {
			t.Errorf("EndUser = %v; want nil", err)
		}
	}
	if n := h.f.tokenRequests(); n != 1 {
		t.Errorf("token requests = %d; want 1", n)
	}
}

// The admin token is reused until shortly before it expires, on the
// injected clock.
func TestTokenCachedUntilShortlyBeforeExpiry(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	advance := clk.Advance
	h := newHarness(t, "keycloak", func(c *propagate.Config) { c.Clock = clk })
	h.f.lifetime = 300 // renewed 30s before it expires
	call := func() {
		t.Helper()
		if err := h.record(h.auth.EndSession(t.Context(), "sid-1")); err != nil && !errors.Is(err, propagate.ErrNotFound) {
			t.Fatal(err)
		}
	}
	call()
	advance(269 * time.Second)
	call()
	if n := h.f.tokenRequests(); n != 1 {
		t.Errorf("token requests at 269s of 300s = %d; want 1", n)
	}
	advance(2 * time.Second)
	call()
	if n := h.f.tokenRequests(); n != 2 {
		t.Errorf("token requests at 271s of 300s = %d; want 2", n)
	}
}

func TestEmptyIdentifierRefused(t *testing.T) {
	h := newHarness(t, "keycloak")
	for name, call := range map[string]func(context.Context, string) error{"EndUser": h.auth.EndUser, "EndSession": h.auth.EndSession} {
		t.Run(name, func(t *testing.T) { wantCallError(t, h.record(call(t.Context(), "")), 0, false) })
	}
	wantCalls(t, h.f)
}

func TestName(t *testing.T) {
	for _, tc := range []struct {
		cfg  propagate.Config
		want string
	}{
		{propagate.Config{Type: "keycloak", URL: "https://sso.example.com/", Realm: "acme", ClientID: "c", ClientSecret: "s"}, "keycloak https://sso.example.com/realms/acme"},
		{propagate.Config{Type: "okta", URL: "https://acme.okta.com", APIToken: "t"}, "okta https://acme.okta.com"},
		{propagate.Config{Type: "entra", ClientID: "c", ClientSecret: "s", TokenURL: "https://login.microsoftonline.com/t/oauth2/v2.0/token"}, "entra https://graph.microsoft.com/v1.0"},
		{propagate.Config{Type: "hydra", URL: "http://127.0.0.1:4445"}, "hydra http://127.0.0.1:4445"},
	} {
		a, err := propagate.New(tc.cfg, nil, nil)
		if err != nil {
			t.Fatalf("New(%s) = %v", tc.cfg.Type, err)
		}
		if got := a.Name(); got != tc.want {
			t.Errorf("Name() = %q; want %q", got, tc.want)
		}
	}
	if _, err := propagate.New(propagate.Config{Type: "hydra"}, nil, nil); err == nil || !strings.Contains(err.Error(), "url: required") {
		t.Errorf("New(invalid) = %v; want the validation error", err)
	}
}

// Hydra's admin API behind a bearer token (Ory Network's API key).
func TestHydraBearer(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	a, err := propagate.New(propagate.Config{Type: "hydra", URL: srv.URL, APIToken: "ory_pat_1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := errors.Join(a.EndUser(ctx, "bob@example.com"), a.EndSession(ctx, "s 1"), a.RevokeClient(ctx, "app")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"DELETE /admin/oauth2/auth/sessions/login?subject=bob%40example.com Bearer ory_pat_1",
		"DELETE /admin/oauth2/auth/sessions/consent?all=true&subject=bob%40example.com Bearer ory_pat_1",
		"DELETE /admin/oauth2/auth/sessions/login?sid=s+1 Bearer ory_pat_1",
		"DELETE /admin/oauth2/tokens?client_id=app Bearer ory_pat_1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n  got  %q\n  want %q", got, want)
	}
}

func TestCall(t *testing.T) {
	h := newHarness(t, "keycloak")
	ctx := t.Context()
	if err := h.record(propagate.Call(ctx, h.auth, cache.KindSub, "alice")); err != nil {
		t.Errorf("Call(sub) = %v; want nil", err)
	}
	if err := h.record(propagate.Call(ctx, h.auth, cache.KindSID, "sid-1")); err != nil {
		t.Errorf("Call(sid) = %v; want nil", err)
	}
	for _, k := range []cache.Kind{cache.KindClient, cache.KindJTI, cache.KindSession} {
		if err := propagate.Call(ctx, h.auth, k, "x"); !errors.Is(err, propagate.ErrUnsupported) {
			t.Errorf("Call(%s) = %v; want ErrUnsupported", k, err)
		}
	}
	wantCalls(t, h.f,
		"POST token",
		"POST /admin/realms/acme/users/alice/logout token#1",
		"GET /admin/realms/acme/users/alice/consents token#1",
		"DELETE /admin/realms/acme/sessions/sid-1 token#1",
	)
}
