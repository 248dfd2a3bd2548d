package propagate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	// defaultTokenLifetime is how long a token without expires_in is used.
	defaultTokenLifetime = time.Minute
	// maxTokenEarly is the most a token is renewed before it expires; a
	// short-lived one is renewed when a quarter of its lifetime is left.
	maxTokenEarly = 30 * time.Second
)

// staticCredential is a fixed Authorization header value: an Okta API
// token ("SSWS …") or a bearer token in front of Hydra's admin API. It
// cannot be renewed.
type staticCredential struct{ header Secret }

func (s staticCredential) authorization(context.Context) (string, error) {
	return string(s.header), nil
}

func (staticCredential) expired(string) bool { return false }

// clientCredentials gets admin access tokens with the client_credentials
// grant (RFC 6749 §4.4) and caches each until shortly before it expires.
// Concurrent callers share one token request.
type clientCredentials struct {
	tokenURL string
	clientID string
	secret   Secret
	scope    string // "" sends none
	// post sends the credentials in the body (client_secret_post) instead
	// of HTTP Basic (RFC 6749 §2.3.1).
	post bool
	// assertion, when set, authenticates with private_key_jwt instead of
	// the secret.
	assertion *privateKeyJWT
	client    *http.Client
	now       func() time.Time
	logger    *slog.Logger
	name      string

	flight singleflight.Group
	mu     sync.Mutex
	token  Secret
	until  time.Time // when to stop using token
}

// authorization returns "Bearer {token}", requesting a token when none is
// cached or the cached one is about to expire.
func (c *clientCredentials) authorization(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, until := c.token, c.until
	c.mu.Unlock()
	if tok != "" && c.now().Before(until) {
		return "Bearer " + string(tok), nil
	}
	// The request is not tied to the first caller's context, which may be
	// cancelled while others wait for it; each caller stops waiting at its
	// own deadline.
	ch := c.flight.DoChan("token", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultCallTimeout)
		defer cancel()
		return c.fetch(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return "Bearer " + string(r.Val.(Secret)), nil
	case <-ctx.Done():
		return "", &CallError{Op: "POST token", Temporary: true, Err: ctx.Err()}
	}
}

// expired drops the cached token when it is the one refused.
func (c *clientCredentials) expired(header string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if "Bearer "+string(c.token) == header {
		c.token, c.until = "", time.Time{}
	}
	return true
}

// fetch requests a token and caches it.
func (c *clientCredentials) fetch(ctx context.Context) (Secret, error) {
	const op = "POST token"
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.scope != "" {
		form.Set("scope", c.scope)
	}
	switch {
	case c.assertion != nil:
		a, err := c.assertion.sign(c.now())
		if err != nil {
			return "", &CallError{Op: op, Err: fmt.Errorf("signing the client assertion: %w", err)}
		}
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", a)
	case c.post:
		form.Set("client_id", c.clientID)
		form.Set("client_secret", string(c.secret))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &CallError{Op: op, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !c.post && c.assertion == nil {
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(c.clientID), url.QueryEscape(string(c.secret)))
	}
	start := c.now()
	status, body, resp, err := do(c.client, req)
	if err != nil {
		return "", &CallError{Op: op, Temporary: true, Err: err}
	}
	if status != http.StatusOK {
		c.logger.LogAttrs(ctx, slog.LevelWarn, "propagate: admin token refused", slog.String("authority", c.name), slog.Int("status", status))
		e := (&conn{now: c.now}).failure(op, status, resp, body)
		if status == http.StatusNotFound {
			e.Err = errors.New("no token endpoint at token_url")
		}
		return "", e
	}
	// RFC 6749 §5.1.
	var tr struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", &CallError{Op: op, Status: status, Temporary: true, Err: errors.New("the answer is not a token response")}
	}
	if !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", &CallError{Op: op, Status: status, Err: fmt.Errorf("token_type %q, want Bearer", printable(tr.TokenType))}
	}
	if strings.ContainsAny(tr.AccessToken, " \t\r\n") {
		return "", &CallError{Op: op, Status: status, Err: errors.New("the access token is not a bearer token value")}
	}
	life := defaultTokenLifetime
	if len(tr.ExpiresIn) > 0 {
		// Entra's v1 endpoint sends expires_in as a string.
		var n json.Number
		if err := json.Unmarshal([]byte(strings.Trim(string(tr.ExpiresIn), `"`)), &n); err == nil {
			if secs, err := n.Int64(); err == nil && secs > 0 && secs < int64(24*time.Hour/time.Second) {
				life = time.Duration(secs) * time.Second
			}
		}
	}
	until := start.Add(life - min(maxTokenEarly, life/4))
	tok := Secret(tr.AccessToken)
	c.mu.Lock()
	c.token, c.until = tok, until
	c.mu.Unlock()
	c.logger.LogAttrs(ctx, slog.LevelDebug, "propagate: admin token", slog.String("authority", c.name), slog.Duration("lifetime", life))
	return tok, nil
}
