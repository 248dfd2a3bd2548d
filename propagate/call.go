package propagate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

const (
	// defaultCallTimeout bounds one call (token request or admin call) when
	// the caller's context has no deadline.
	defaultCallTimeout = 10 * time.Second
	// maxBody bounds what is read of an answer: the largest documented one
	// is a list of a user's consents.
	maxBody = 1 << 20
	// maxRetryAfter caps a Retry-After: an authority cannot park a target
	// for longer.
	maxRetryAfter = time.Hour
	// maxErrorText bounds the authority's error text kept in a CallError.
	maxErrorText = 200
)

// credential puts the admin credential on a request.
type credential interface {
	// authorization returns the Authorization header value.
	authorization(ctx context.Context) (string, error)
	// expired drops the credential whose header was refused with a 401, so
	// that the next authorization fetches a new one; false when it cannot
	// be renewed (a static API token).
	expired(header string) bool
}

// conn calls one authority's admin API.
type conn struct {
	name   string
	base   string // URL without trailing slash
	client *http.Client
	cred   credential // nil: no Authorization header
	now    func() time.Time
	logger *slog.Logger
}

// newConn returns a conn whose client follows no redirect: the credential
// must never travel to another URL, and a redirect is a failure.
func newConn(name, base string, client *http.Client, cred credential, now func() time.Time, logger *slog.Logger) *conn {
	return &conn{name: name, base: strings.TrimSuffix(base, "/"), client: noRedirects(client), cred: cred, now: now, logger: logger}
}

// call sends one admin request (path relative to base, already escaped)
// and returns the body of a 2xx answer. On a 401 it renews the credential
// once and repeats the request once. A 404 is ErrNotFound; every other
// failure is a *CallError.
func (c *conn) call(ctx context.Context, method, path string, query url.Values) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	op := method + " " + path
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		header := ""
		if c.cred != nil {
			h, err := c.cred.authorization(ctx)
			if err != nil {
				return nil, err
			}
			header = h
		}
		status, body, resp, err := c.send(ctx, method, target, header)
		if err != nil {
			return nil, &CallError{Op: op, Temporary: true, Err: err}
		}
		c.logger.LogAttrs(ctx, slog.LevelDebug, "propagate: call", slog.String("authority", c.name), slog.String("op", op), slog.Int("status", status))
		switch {
		case status == http.StatusUnauthorized && attempt == 0 && c.cred != nil && c.cred.expired(header):
			c.logger.LogAttrs(ctx, slog.LevelInfo, "propagate: admin token refused (401), renewing it once", slog.String("authority", c.name), slog.String("op", op))
			continue
		case status >= 200 && status < 300:
			return body, nil
		case status == http.StatusNotFound:
			return nil, fmt.Errorf("%w: %s %s: %s", ErrNotFound, c.name, op, errorText(body))
		}
		return nil, c.failure(op, status, resp, body)
	}
}

// send makes one request and reads at most maxBody of the answer.
func (c *conn) send(ctx context.Context, method, target, authorization string) (int, []byte, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return do(c.client, req)
}

// do sends req and reads at most maxBody of the answer; a longer answer is
// an error.
func do(client *http.Client, req *http.Request) (int, []byte, *http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxBody {
		return 0, nil, nil, fmt.Errorf("answer longer than %d bytes", maxBody)
	}
	return resp.StatusCode, body, resp, nil
}

// failure classifies a non-2xx answer other than 404.
func (c *conn) failure(op string, status int, resp *http.Response, body []byte) *CallError {
	e := &CallError{Op: op, Status: status}
	switch {
	case status >= 300 && status < 400:
		// Not followed: the credential must not travel elsewhere. A
		// redirect is usually a wrong url (http to https, a login page);
		// the retry budget bounds it.
		e.Temporary = true
		e.Err = fmt.Errorf("redirect to %q not followed", redirectHost(resp))
		return e
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		e.Temporary = true
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
		if e.RetryAfter == 0 && status == http.StatusTooManyRequests {
			// Okta sends no Retry-After but the end of its rate-limit
			// window, in epoch seconds
			// (https://developer.okta.com/docs/reference/rl-best-practices/).
			e.RetryAfter = rateLimitReset(resp.Header.Get("X-Rate-Limit-Reset"), c.now())
		}
	case status == http.StatusRequestTimeout || status >= 500:
		e.Temporary = true
	}
	if t := errorText(body); t != "" {
		e.Err = errors.New(t)
	}
	return e
}

// redirectHost names where a redirect pointed, without its path or query.
func redirectHost(resp *http.Response) string {
	u, err := resp.Location()
	if err != nil {
		return ""
	}
	return u.Host
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3), as a delay from now, capped at maxRetryAfter; 0 for
// none, a date in the past, or a value that does not parse.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if strings.Trim(v, "0123456789") == "" {
		// delay-seconds; one too large to parse is past the cap.
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// rateLimitReset parses an epoch-seconds reset time as a delay from now,
// capped at maxRetryAfter; 0 for none or a time in the past.
func rateLimitReset(v string, now time.Time) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return min(max(time.Unix(n, 0).Sub(now), 0), maxRetryAfter)
}

// errorText extracts a short, printable description from an error answer:
// the OAuth 2.0 error fields (RFC 6749 §5.2, Hydra, Keycloak), Okta's
// errorCode and errorSummary, or Graph's error.code and error.message.
// Nothing else of the body is kept: it might echo something sensitive.
func errorText(body []byte) string {
	var e struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
		Message     string          `json:"errorMessage"`
		Code        string          `json:"errorCode"`
		Summary     string          `json:"errorSummary"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	var parts []string
	var s string
	var graph struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	switch {
	case json.Unmarshal(e.Error, &s) == nil:
		parts = append(parts, s, e.Description)
	case json.Unmarshal(e.Error, &graph) == nil:
		parts = append(parts, graph.Code, graph.Message)
	}
	parts = append(parts, e.Message, e.Code, e.Summary)
	var kept []string
	for _, p := range parts {
		if p = printable(p); p != "" {
			kept = append(kept, p)
		}
	}
	return printable(strings.Join(kept, ": "))
}

// printable keeps at most maxErrorText printable characters of s.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if len(s) > maxErrorText {
		s = strings.ToValidUTF8(s[:maxErrorText], "") + "…"
	}
	return strings.TrimSpace(s)
}
