package propagate_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/oidcgate/oidcgate/propagate"
)

// fakeIdP is an authority's admin API and token endpoint as documented by
// its vendor (paths, methods, authentication, status codes and bodies),
// recording every request. Admin tokens are issued by its token endpoint
// and stay valid until expire is called; the API token of Okta is fixed.
type fakeIdP struct {
	t      *testing.T
	srv    *httptest.Server
	vendor string

	mu       sync.Mutex
	calls    []string // "METHOD /path?query auth", auth as "token#N", "ssws" or "none"
	tokens   map[string]int
	issued   int
	lifetime int                 // expires_in of the tokens, seconds
	users    map[string][]string // user id → the clients it consented to (keycloak)
	sessions map[string]bool
	// next answers the next admin call instead of the documented route,
	// once each, in order; nil entries fall through to the route.
	next []http.HandlerFunc
	// tokenNext likewise for the token endpoint.
	tokenNext []http.HandlerFunc
	// revoked refuses every admin token, also those issued later.
	revoked bool
	// tokenHook, when set, runs first in every token request.
	tokenHook func()
	// keyPEM and pub are the service app's key pair (okta-oauth).
	keyPEM string
	pub    *ecdsa.PublicKey
	jtis   map[string]bool
}

// Credentials of the fakes: the tests assert they never reach a log.
const (
	fakeClientID     = "oidcgate-admin"
	fakeClientSecret = "client-secret-7c1d0e5a9f"
	fakeAPIToken     = "00okta-api-token-4e2b8c"
	fakeTokenPrefix  = "at-3f9a1b-" // admin access tokens are fakeTokenPrefix + N
)

func newFakeIdP(t *testing.T, vendor string) *fakeIdP {
	t.Helper()
	f := &fakeIdP{t: t, vendor: vendor, tokens: map[string]int{}, lifetime: 300,
		users:    map[string][]string{"bob": {"app-one", "app-two"}, "alice": nil},
		sessions: map[string]bool{"sid-1": true}, jtis: map[string]bool{}}
	if vendor == "okta-oauth" {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		f.keyPEM, f.pub = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), &key.PublicKey
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// config returns the session_authority of this fake.
func (f *fakeIdP) config() propagate.Config {
	switch f.vendor {
	case "keycloak":
		return propagate.Config{Type: "keycloak", URL: f.srv.URL, Realm: "acme", ClientID: fakeClientID, ClientSecret: fakeClientSecret}
	case "okta":
		return propagate.Config{Type: "okta", URL: f.srv.URL, APIToken: fakeAPIToken}
	case "okta-oauth":
		return propagate.Config{Type: "okta", URL: f.srv.URL, ClientID: fakeClientID, PrivateKey: propagate.Secret(f.keyPEM), PrivateKeyID: "k1", TokenURL: f.srv.URL + "/oauth2/v1/token"}
	case "entra":
		return propagate.Config{Type: "entra", URL: f.srv.URL + "/v1.0", ClientID: fakeClientID, ClientSecret: fakeClientSecret, TokenURL: f.srv.URL + "/tenant-1/oauth2/v2.0/token"}
	}
	f.t.Fatalf("no vendor %q", f.vendor)
	return propagate.Config{}
}

func (f *fakeIdP) tokenPath() string {
	switch f.vendor {
	case "keycloak":
		return "/realms/acme/protocol/openid-connect/token"
	case "entra":
		return "/tenant-1/oauth2/v2.0/token"
	case "okta-oauth":
		return "/oauth2/v1/token"
	}
	return ""
}

// expire makes every admin token issued so far invalid, as its expiry
// would.
func (f *fakeIdP) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

// revoke makes every admin token invalid, also those issued later (the
// admin client lost its rights).
func (f *fakeIdP) revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = true
}

func (f *fakeIdP) script(h ...http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = append(f.next, h...)
}

func (f *fakeIdP) scriptToken(h ...http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenNext = append(f.tokenNext, h...)
}

func (f *fakeIdP) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeIdP) tokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}

func (f *fakeIdP) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == f.tokenPath() && f.tokenPath() != "" {
		f.serveToken(w, r)
		return
	}
	auth := f.authOf(r)
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s %s", r.Method, r.URL.RequestURI(), auth))
	var next http.HandlerFunc
	if len(f.next) > 0 {
		next, f.next = f.next[0], f.next[1:]
	}
	f.mu.Unlock()
	if next != nil {
		next(w, r)
		return
	}
	if auth == "none" {
		f.unauthorized(w)
		return
	}
	switch f.vendor {
	case "keycloak":
		f.keycloak(w, r)
	case "okta", "okta-oauth":
		f.okta(w, r)
	case "entra":
		f.entra(w, r)
	}
}

// authOf names the admin credential of r: "token#N" for a valid issued
// token, "ssws" for Okta's API token, "none" for anything else.
func (f *fakeIdP) authOf(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if f.vendor == "okta" {
		if h == "SSWS "+fakeAPIToken {
			return "ssws"
		}
		return "none"
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return "none"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.tokens[tok]; ok && !f.revoked {
		return fmt.Sprintf("token#%d", n)
	}
	return "none"
}

func (f *fakeIdP) unauthorized(w http.ResponseWriter) {
	switch f.vendor {
	case "keycloak":
		// Keycloak's admin API: 401 with an empty body and a Bearer
		// challenge.
		w.Header().Set("WWW-Authenticate", `Bearer realm="acme"`)
		w.WriteHeader(http.StatusUnauthorized)
	case "okta", "okta-oauth":
		writeJSON(w, http.StatusUnauthorized, map[string]any{"errorCode": "E0000011", "errorSummary": "Invalid token provided", "errorLink": "E0000011", "errorId": "oae1", "errorCauses": []any{}})
	case "entra":
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})
	}
}

// serveToken is the client_credentials grant of RFC 6749 §4.4 as each
// vendor takes it: Keycloak with client_secret_basic, Entra with the
// credentials and the Graph scope in the body.
func (f *fakeIdP) serveToken(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var next http.HandlerFunc
	if len(f.tokenNext) > 0 {
		next, f.tokenNext = f.tokenNext[0], f.tokenNext[1:]
	}
	f.calls = append(f.calls, "POST token")
	f.issued++
	hook := f.tokenHook
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if next != nil {
		next(w, r)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	var id, secret string
	switch f.vendor {
	case "keycloak":
		u, p, ok := r.BasicAuth()
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
		if !ok || r.PostForm.Has("client_secret") {
			id = ""
		}
	case "okta-oauth":
		// private_key_jwt (RFC 7523 §2.2) with the Okta scopes.
		if _, _, basic := r.BasicAuth(); basic || r.PostForm.Has("client_secret") ||
			r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_client", "error_description": "private_key_jwt required"})
			return
		}
		if r.PostForm.Get("scope") != "okta.users.manage okta.apps.manage" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_scope"})
			return
		}
		id, secret = f.checkAssertion(r.PostForm.Get("client_assertion")), fakeClientSecret
	case "entra":
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		if r.PostForm.Get("scope") != "https://graph.microsoft.com/.default" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid."})
			return
		}
	}
	if id != fakeClientID || secret != fakeClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"})
		return
	}
	f.mu.Lock()
	n := f.issued
	tok := fmt.Sprintf("%s%d", fakeTokenPrefix, n)
	f.tokens[tok] = n
	life := f.lifetime
	f.mu.Unlock()
	body := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": life}
	if f.vendor == "keycloak" {
		body["refresh_expires_in"] = 0
		body["not-before-policy"] = 0
		body["scope"] = "profile email"
	} else {
		body["ext_expires_in"] = life
	}
	writeJSON(w, http.StatusOK, body)
}

// checkAssertion verifies a client assertion of the service app and
// returns its client id, or "" when it is not valid: signed by the app's
// key with kid k1, iss = sub = the client id, aud = the token endpoint,
// unexpired, a jti never seen before.
func (f *fakeIdP) checkAssertion(a string) string {
	msg, err := jws.Parse([]byte(a))
	if err != nil || len(msg.Signatures()) != 1 {
		return ""
	}
	if kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID(); kid != "k1" {
		return ""
	}
	tok, err := jwt.Parse([]byte(a), jwt.WithKey(jwa.ES256(), f.pub), jwt.WithValidate(true),
		jwt.WithIssuer(fakeClientID), jwt.WithSubject(fakeClientID), jwt.WithAudience(f.srv.URL+"/oauth2/v1/token"))
	if err != nil {
		return ""
	}
	jti, ok := tok.JwtID()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok || jti == "" || f.jtis[jti] {
		return ""
	}
	f.jtis[jti] = true
	return fakeClientID
}

// keycloak is the Admin REST API of realm acme.
func (f *fakeIdP) keycloak(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/admin/realms/acme/")
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "Realm not found."})
		return
	}
	parts := strings.Split(rest, "/")
	for i := range parts {
		parts[i], _ = url.PathUnescape(parts[i])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(parts) == 2 && parts[0] == "sessions" && r.Method == http.MethodDelete:
		if !f.sessions[parts[1]] {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "Sesssion not found"})
			return
		}
		delete(f.sessions, parts[1])
		w.WriteHeader(http.StatusNoContent)
	case len(parts) >= 3 && parts[0] == "users":
		consents, known := f.users[parts[1]]
		if !known {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "User not found"})
			return
		}
		switch {
		case len(parts) == 3 && parts[2] == "logout" && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusNoContent)
		case len(parts) == 3 && parts[2] == "consents" && r.Method == http.MethodGet:
			list := []map[string]any{}
			for _, c := range consents {
				list = append(list, map[string]any{"clientId": c, "grantedClientScopes": []string{"offline_access"}, "createdDate": 1700000000000, "lastUpdatedDate": 1700000000000,
					"additionalGrants": []map[string]string{{"client": "uuid-" + c, "key": "Offline Token"}}})
			}
			writeJSON(w, http.StatusOK, list)
		case len(parts) == 4 && parts[2] == "consents" && r.Method == http.MethodDelete:
			i := indexOf(consents, parts[3])
			if i < 0 {
				writeJSON(w, http.StatusNotFound, map[string]any{"error": "Consent nor offline token not found"})
				return
			}
			f.users[parts[1]] = append(consents[:i:i], consents[i+1:]...)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "HTTP 404 Not Found"})
	}
}

// okta is the Management API of an org.
func (f *fakeIdP) okta(w http.ResponseWriter, r *http.Request) {
	notFound := func(what string) {
		writeJSON(w, http.StatusNotFound, map[string]any{"errorCode": "E0000007", "errorSummary": "Not found: Resource not found: " + what, "errorLink": "E0000007", "errorId": "oae2", "errorCauses": []any{}})
	}
	path := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(path, "/api/v1/users/") && strings.HasSuffix(path, "/sessions") && r.Method == http.MethodDelete:
		id, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(path, "/api/v1/users/"), "/sessions"))
		f.mu.Lock()
		_, known := f.users[id]
		f.mu.Unlock()
		if !known {
			notFound(id + " (User)")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(path, "/api/v1/apps/") && strings.HasSuffix(path, "/tokens") && r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(path)
	}
}

// entra is Microsoft Graph v1.0.
func (f *fakeIdP) entra(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	id, ok := strings.CutPrefix(path, "/v1.0/users/")
	id, ok2 := strings.CutSuffix(id, "/revokeSignInSessions")
	if !ok || !ok2 || r.Method != http.MethodPost {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": "BadRequest", "message": "Resource not found for the segment."}})
		return
	}
	if r.ContentLength != 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": "BadRequest", "message": "unexpected body"}})
		return
	}
	id, _ = url.PathUnescape(id)
	f.mu.Lock()
	_, known := f.users[id]
	f.mu.Unlock()
	if !known {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": "Request_ResourceNotFound", "message": "Resource '" + id + "' does not exist or one of its queried reference-property objects are not present."}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// status answers with a status, headers and a body, once.
func status(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}
