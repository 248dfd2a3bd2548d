package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// Browser login endpoints (DESIGN.md, public listener paths).
const (
	pathStart    = "/oauth2/start"
	pathCallback = "/oauth2/callback"
	pathSignOut  = "/oauth2/sign_out"
)

const (
	// loginTTL bounds a login from /oauth2/start to the callback.
	loginTTL = 10 * time.Minute
	// loginCookieInfix joins the session cookie name and a state digest:
	// one login cookie per state, so that several tabs can log in at once.
	loginCookieInfix = "_login_"
	// maxReturnPath bounds the return path kept in the login state.
	maxReturnPath = 2048
	// maxTokenResponse bounds the token endpoint's answer.
	maxTokenResponse = 1 << 20
	// tokenTimeout bounds the code exchange.
	tokenTimeout = 10 * time.Second
	// maxSignOutForm bounds the sign-out POST body.
	maxSignOutForm = 4 << 10
)

// aadSignOutCSRF binds the sign-out page's CSRF token (the session id,
// sealed with the session key) to its use.
var aadSignOutCSRF = []byte("oidcgate sign-out csrf v1")

// loginState is sealed in the login cookie, bound to State.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Expires  int64  `json:"e"`
}

// randomToken returns 256 random bits, base64url: state, nonce and the
// PKCE code_verifier (43 characters, RFC 7636 §4.1).
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// loginCookieName is the login cookie of one state.
func (g *Gateway) loginCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return loginCookieBase(g.cookies.name) + loginCookieInfix + base64.RawURLEncoding.EncodeToString(sum[:9])
}

// loginCookieBase is what login cookie names start with: the session
// cookie's name, except that "__Host-" becomes "__Secure-" — a login
// cookie's Path is the callback, which __Host- forbids.
func loginCookieBase(session string) string {
	if rest, ok := strings.CutPrefix(session, "__Host-"); ok {
		return "__Secure-" + rest
	}
	return session
}

// safeReturnPath returns p when it is a same-origin relative reference
// (an absolute path with an optional query), else "/". Refused: anything
// not starting with exactly one '/', a backslash anywhere (browsers read
// it as '/', so "/\evil" is "//evil"), "//" (a network-path reference),
// control characters, spaces and non-ASCII (browsers strip tabs and
// newlines: "/\t/evil" would become "//evil"), and fragments.
func safeReturnPath(p string) string {
	if len(p) == 0 || len(p) > maxReturnPath || p[0] != '/' || len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= 0x20 || c >= 0x7f || c == '\\' || c == '#' {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return p
}

// isNavigation reports whether r looks like a top-level browser
// navigation, which may be redirected to the IdP; anything else gets 401.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest") {
		return false
	}
	// Fetch Metadata: only "navigate" is a navigation.
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && !strings.EqualFold(m, "navigate") {
		return false
	}
	accept := strings.ToLower(strings.Join(r.Header.Values("Accept"), ","))
	if strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html") {
		return false
	}
	return true
}

// start handles /oauth2/start?rd=PATH (or an absolute URL returnTarget
// accepts).
//
// An rd that starts with an unescaped "/" is the rest of the query,
// verbatim: nginx (error_page 401 = /oauth2/start?rd=$request_uri) has no
// way to escape the original query, whose "&" would otherwise cut it.
func (g *Gateway) start(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plainError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	g.redirectToLogin(w, r, g.returnTarget(startReturn(r.URL.RawQuery)))
}

// startReturn is the rd of /oauth2/start's raw query.
func startReturn(rawQuery string) string {
	if rest, ok := strings.CutPrefix(rawQuery, "rd=/"); ok {
		return "/" + rest
	}
	q, _ := url.ParseQuery(rawQuery)
	return q.Get("rd")
}

// redirectToLogin starts the authorization code flow with PKCE (RFC 7636,
// S256), state and nonce, returning to ret afterwards.
func (g *Gateway) redirectToLogin(w http.ResponseWriter, r *http.Request, ret string) {
	ep, err := g.idTokens.Endpoints(r.Context(), g.login.Issuer)
	if err != nil || ep.Authorization == "" {
		g.log.LogAttrs(r.Context(), slog.LevelWarn, "login: no authorization endpoint", slog.Any("error", err))
		plainError(w, http.StatusServiceUnavailable, "login is unavailable; retry later")
		return
	}
	authz, err := url.Parse(ep.Authorization)
	if err != nil {
		plainError(w, http.StatusServiceUnavailable, "login is unavailable; retry later")
		return
	}
	st := loginState{
		State: randomToken(), Nonce: randomToken(), Verifier: randomToken(),
		Return: ret, Expires: g.now().Add(loginTTL).Unix(),
	}
	plain, _ := json.Marshal(st) // strings and an int: cannot fail
	http.SetCookie(w, &http.Cookie{
		Name: g.loginCookieName(st.State), Value: g.loginSeal.seal(plain, []byte(st.State)),
		Path: pathCallback, MaxAge: int(loginTTL / time.Second),
		HttpOnly: true, Secure: g.cookies.secure, SameSite: http.SameSiteLaxMode,
	})
	challenge := sha256.Sum256([]byte(st.Verifier))
	q := authz.Query()
	q.Set("response_type", "code")
	q.Set("client_id", g.login.ClientID)
	q.Set("redirect_uri", g.redirectURI)
	q.Set("scope", strings.Join(g.login.Scopes, " "))
	q.Set("state", st.State)
	q.Set("nonce", st.Nonce)
	// RFC 7636 §4.2: code_challenge = BASE64URL(SHA256(code_verifier)).
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	q.Set("code_challenge_method", "S256")
	authz.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authz.String(), http.StatusFound)
}

// callback handles /oauth2/callback: checks state against the login
// cookie, exchanges the code, verifies the ID token (nonce included) and
// only then makes a session.
func (g *Gateway) callback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		plainError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	q := r.URL.Query()
	stateParam := q.Get("state")
	if stateParam == "" || len(stateParam) > 512 {
		plainError(w, http.StatusBadRequest, "login state missing or expired; start again")
		return
	}
	cookieName := g.loginCookieName(stateParam)
	// The login cookie is single use, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: pathCallback, MaxAge: -1,
		HttpOnly: true, Secure: g.cookies.secure, SameSite: http.SameSiteLaxMode})
	raw, _ := cookieValue(r.Header, cookieName)
	plain, ok := g.loginSeal.open(raw, []byte(stateParam), nil)
	var st loginState
	if !ok || json.Unmarshal(plain, &st) != nil ||
		subtle.ConstantTimeCompare([]byte(st.State), []byte(stateParam)) != 1 ||
		g.now().Unix() > st.Expires {
		plainError(w, http.StatusBadRequest, "login state missing or expired; start again")
		return
	}
	// RFC 9207 §2.4: an iss parameter must name the expected issuer, and
	// must be there when the issuer says it always sends one.
	iss, hasIss := q["iss"]
	if hasIss && (len(iss) != 1 || iss[0] != g.login.Issuer) {
		plainError(w, http.StatusBadRequest, "login answered by an unexpected issuer")
		return
	}
	if !hasIss {
		if ep, err := g.idTokens.Endpoints(r.Context(), g.login.Issuer); err == nil && ep.AuthorizationResponseIss {
			plainError(w, http.StatusBadRequest, "login answer without the issuer's iss")
			return
		}
	}
	if q.Get("error") != "" {
		// RFC 6749 §4.1.2.1; the IdP's text is not echoed.
		plainError(w, http.StatusForbidden, "login was refused by the identity provider")
		return
	}
	code := q.Get("code")
	if code == "" {
		plainError(w, http.StatusBadRequest, "login answer without a code")
		return
	}
	claims, err := g.exchange(r.Context(), code, st)
	switch {
	case errors.Is(err, introspect.ErrInvalidToken):
		g.log.LogAttrs(r.Context(), slog.LevelInfo, "login: ID token refused", slog.String("error", err.Error()))
		plainError(w, http.StatusForbidden, "login refused")
		return
	case err != nil:
		g.log.LogAttrs(r.Context(), slog.LevelWarn, "login: code exchange failed", slog.String("error", err.Error()))
		plainError(w, http.StatusBadGateway, "login could not be completed; start again")
		return
	}
	// The cookie keeps iat to the millisecond; the revocation check below
	// must see the same value every later request will.
	now := g.now().Truncate(time.Millisecond)
	s := &session{
		ID: newSessionID(), Issuer: claims.Issuer, Subject: claims.Subject, SID: claims.SID,
		IDToken: claims.raw, IssuedAt: now, ExpiresAt: now.Add(g.maxAge),
	}
	if g.emailVerified(claims.Claims) {
		s.Email, _ = claims.Claims.Claim(claimEmail)
	}
	s.Name, _ = claims.Claims.Claim("name")
	cred := s.credential()
	if g.sessions.IsRevoked(&cred) {
		// A sub revocation within the clock skew: redirecting would loop
		// through the IdP until the skew has passed.
		plainError(w, http.StatusForbidden, "your sessions were ended moments ago; try again in a minute")
		return
	}
	if s.SID != "" && g.liveSIDs != nil {
		// A front-channel logout ends only a session whose sid is
		// recorded: a session not recorded could not be ended that way.
		if err := g.liveSIDs.RecordSID(r.Context(), s.Issuer, s.SID, s.ExpiresAt.Add(g.skew)); err != nil {
			g.log.LogAttrs(r.Context(), slog.LevelError, "login: live sid not recorded", slog.String("session", logID(s.ID)), slog.String("error", err.Error()))
			plainError(w, http.StatusServiceUnavailable, "login could not be completed; retry")
			return
		}
	}
	if s.Email != "" && g.emails != nil {
		// A Universal Logout naming this email finds the user only
		// through this record: a session not recorded could not be ended
		// that way.
		if err := g.emails.RecordEmail(r.Context(), s.Email, cache.EmailOwner{Issuer: s.Issuer, Sub: s.Subject}, s.ExpiresAt.Add(g.skew)); err != nil {
			g.log.LogAttrs(r.Context(), slog.LevelError, "login: email not recorded", slog.String("session", logID(s.ID)), slog.String("error", err.Error()))
			plainError(w, http.StatusServiceUnavailable, "login could not be completed; retry")
			return
		}
	}
	g.learnUserID(r.Context(), claims.Claims)
	if !g.cookies.set(w, r, s, g.maxAge) {
		plainError(w, http.StatusBadGateway, "the ID token is too large for a session cookie")
		return
	}
	if s.SID == "" {
		// A back-channel logout naming only a sid (Hydra sends those) can
		// never match this session; one naming the sub still does.
		g.log.LogAttrs(r.Context(), slog.LevelWarn, "login: the ID token has no sid; sid-only logout tokens cannot end this session", slog.String("session", logID(s.ID)))
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "login", slog.String("session", logID(s.ID)))
	http.Redirect(w, r, st.Return, http.StatusFound)
}

// verifiedLogin is a verified ID token and its raw form.
type verifiedLogin struct {
	*introspect.Claims
	raw string
}

// exchange redeems code at the token endpoint (RFC 6749 §4.1.3, PKCE
// code_verifier, client_secret_basic) and verifies the ID token.
func (g *Gateway) exchange(ctx context.Context, code string, st loginState) (verifiedLogin, error) {
	ep, err := g.idTokens.Endpoints(ctx, g.login.Issuer)
	if err != nil {
		return verifiedLogin{}, fmt.Errorf("gateway: endpoints: %w", err)
	}
	if ep.Token == "" {
		return verifiedLogin{}, errors.New("gateway: the issuer has no token endpoint")
	}
	ctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {g.redirectURI},
		"code_verifier": {st.Verifier},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.Token, strings.NewReader(form.Encode()))
	if err != nil {
		return verifiedLogin{}, fmt.Errorf("gateway: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: client_id and secret form-urlencoded, then Basic.
	req.SetBasicAuth(url.QueryEscape(g.login.ClientID), url.QueryEscape(string(g.login.ClientSecret)))
	res, err := g.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return verifiedLogin{}, fmt.Errorf("gateway: token endpoint: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxTokenResponse+1))
	if err != nil {
		return verifiedLogin{}, fmt.Errorf("gateway: token endpoint: %w", err)
	}
	if res.StatusCode != http.StatusOK || len(body) > maxTokenResponse {
		return verifiedLogin{}, fmt.Errorf("gateway: token endpoint: status %d", res.StatusCode)
	}
	var tr struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.IDToken == "" {
		return verifiedLogin{}, errors.New("gateway: token endpoint: no id_token in the answer")
	}
	claims, err := g.idTokens.VerifyIDToken(ctx, g.login.Issuer, tr.IDToken, st.Nonce)
	if err != nil {
		return verifiedLogin{}, fmt.Errorf("gateway: id token: %w", err)
	}
	if claims == nil || claims.Subject == "" || claims.Issuer != g.login.Issuer {
		return verifiedLogin{}, fmt.Errorf("gateway: id token: %w", introspect.ErrInvalidToken)
	}
	return verifiedLogin{Claims: claims, raw: tr.IDToken}, nil
}

// signOut handles /oauth2/sign_out (OIDC RP-Initiated Logout 1.0). A GET
// never signs out: it answers with a confirmation page whose form POSTs
// the same URL with a CSRF token. A POST that passes signOutAllowed
// revokes the session, calls app logout for the request's app cookies,
// clears the cookies and sends the browser to the IdP's
// end_session_endpoint, or to the post-logout URI without one.
func (g *Gateway) signOut(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		plainError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	raw, _ := g.cookies.read(r.Header)
	s, ok := g.cookies.open(raw, true)
	if r.Method == http.MethodGet {
		// Logout CSRF: a link or image anywhere would log the user out, and
		// older browsers send no Sec-Fetch-Site to tell a link on the app
		// from one elsewhere (the session cookie, SameSite=Lax, rides along
		// on a top-level GET). So a GET only asks.
		token := ""
		if ok {
			token = g.cookies.seal.seal([]byte(s.ID), aadSignOutCSRF)
		}
		confirmSignOut(w, r.URL.RequestURI(), token)
		return
	}
	if !g.signOutAllowed(r, s.ID, ok) {
		plainError(w, http.StatusForbidden, "sign-out refused: send it from this site's sign-out page")
		return
	}
	post := g.postLogout[0]
	if p := r.URL.Query().Get("post_logout_redirect_uri"); p != "" && slices.Contains(g.postLogout, p) {
		post = p
	}
	if ok {
		now := g.now()
		_, err := g.sessions.Revoke(r.Context(), cache.Entry{
			Kind: cache.KindSession, Value: cache.SessionDigest(s.ID), RevokedAt: now,
			ExpiresAt: now.Add(g.maxAge + g.skew), Reason: "rp-initiated logout", Initiator: "gateway:sign_out",
		})
		if err != nil {
			g.log.LogAttrs(r.Context(), slog.LevelError, "sign_out: revoke failed",
				slog.String("session", logID(s.ID)), slog.String("error", err.Error()))
			plainError(w, http.StatusServiceUnavailable, "sign-out failed; retry")
			return
		}
		for _, rt := range g.routes {
			real := rt.openAppCookies(r.Header, s.ID)
			rt.expireAppCookies(w.Header(), r.Header)
			if len(real) > 0 && g.appLogout != nil {
				g.appLogout.once(&s, rt, real)
			}
		}
		g.log.LogAttrs(r.Context(), slog.LevelInfo, "sign_out", slog.String("session", logID(s.ID)))
	}
	g.cookies.clear(w, r)
	target := post
	if ok {
		if ep, err := g.idTokens.Endpoints(r.Context(), s.Issuer); err == nil && ep.EndSession != "" {
			if u, err := url.Parse(ep.EndSession); err == nil {
				q := u.Query()
				if s.IDToken != "" {
					q.Set("id_token_hint", s.IDToken)
				}
				q.Set("client_id", g.login.ClientID)
				q.Set("post_logout_redirect_uri", post)
				u.RawQuery = q.Encode()
				target = u.String()
			}
		}
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// signOutAllowed reports whether a sign-out POST comes from this site: its
// Origin (RFC 6454 §7, sent by browsers on every POST) is public_url's, or,
// when the browser sent none (or "null"), its form carries the CSRF token
// of the confirmation page, bound to the session id. A POST that fetch
// metadata marks as cross-site or same-site is refused whatever it
// carries: a sibling host is not this origin. Without a session there is
// nothing to protect and only the Origin is checked.
func (g *Gateway) signOutAllowed(r *http.Request, sessionID string, hasSession bool) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		return strings.EqualFold(o, g.publicOrigin)
	}
	if !hasSession {
		return true
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxSignOutForm)
	plain, ok := g.cookies.seal.open(r.PostFormValue("csrf"), aadSignOutCSRF, nil)
	return ok && subtle.ConstantTimeCompare(plain, []byte(sessionID)) == 1
}

// confirmSignOut writes the sign-out confirmation page: one button that
// POSTs action with the CSRF token. It may not be framed (a framed button
// could be clicked by a lure).
func confirmSignOut(w http.ResponseWriter, action, token string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	fmt.Fprintf(w, `<!doctype html><title>Sign out</title>
<form method="post" action="%s"><input type="hidden" name="csrf" value="%s"><button>Sign out</button></form>
`, html.EscapeString(action), html.EscapeString(token))
}

// plainError writes a short text error page.
func plainError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// logID identifies a session id or cookie in logs by a SHA-256 prefix.
func logID(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}
