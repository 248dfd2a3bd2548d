package logout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/oidcgate/oidcgate/cache"
)

// maxResponseBody bounds what RevokeRemote reads of an answer.
const maxResponseBody = 1 << 20

// maxRemoteText bounds each server-supplied string in a RemoteError.
const maxRemoteText = 256

// RevokeRequest is the JSON body of POST /admin/revocations. Exactly one
// of Sub, SID, JTI, ClientID, Session and Key (an API key's id) must be
// set. Issuer may be empty when the gateway has a single issuer, and must
// be empty with Session and Key. Reason is free text recorded with the
// entry. EffectiveAt (RFC 3339), only with ClientID or Key, schedules the
// revocation: credentials issued before it keep working until then.
type RevokeRequest struct {
	Sub         string `json:"sub,omitempty"`
	SID         string `json:"sid,omitempty"`
	JTI         string `json:"jti,omitempty"`
	ClientID    string `json:"client_id,omitempty"`
	Session     string `json:"session,omitempty"`
	Key         string `json:"key,omitempty"`
	Issuer      string `json:"issuer,omitempty"`
	Reason      string `json:"reason,omitempty"`
	EffectiveAt string `json:"effective_at,omitempty"`
	// Wait, when positive, asks the gateway to answer only when every live
	// replica applied the entry, or after Wait (?wait=replicas&timeout=).
	Wait time.Duration `json:"-"`
}

// RemoteError is returned by RevokeRemote when the admin API answered but
// did not store the revocation.
type RemoteError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code and Description are the answer's error and error_description,
	// stripped of control characters and shortened; empty when the answer
	// had none.
	Code        string
	Description string
}

func (e *RemoteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "logout: admin API answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	return b.String()
}

// RevokeRemote asks the admin API under baseURL (the internal listener's
// base URL, e.g. "http://127.0.0.1:9091") to store req, authenticating with
// the bearer token, and returns the entry as stored. It succeeds only on
// 201 Created, which the server sends once the entry is durable; any other
// answer is a *RemoteError, and redirects are not followed (the token must
// not travel elsewhere). The deadline is ctx's and client's; client must
// not be nil.
func RevokeRemote(ctx context.Context, client *http.Client, baseURL, token string, req RevokeRequest) (cache.Entry, error) {
	e, _, err := RevokeRemoteWait(ctx, client, baseURL, token, req)
	return e, err
}

// RevokeRemoteWait is RevokeRemote that also returns, when req.Wait is
// positive, which live replicas had applied the entry when the gateway
// answered (nil otherwise).
func RevokeRemoteWait(ctx context.Context, client *http.Client, baseURL, token string, req RevokeRequest) (cache.Entry, *WaitReplicas, error) {
	if client == nil {
		return cache.Entry{}, nil, errors.New("logout: RevokeRemote: nil *http.Client")
	}
	endpoint, err := revocationsURL(baseURL)
	if err != nil {
		return cache.Entry{}, nil, err
	}
	if req.Wait > 0 {
		endpoint += "?" + url.Values{"wait": {"replicas"}, "timeout": {req.Wait.String()}}.Encode()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return cache.Entry{}, nil, fmt.Errorf("logout: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return cache.Entry{}, nil, fmt.Errorf("logout: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("Authorization", "Bearer "+token)
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(hr)
	if err != nil {
		return cache.Entry{}, nil, fmt.Errorf("logout: revoke: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return cache.Entry{}, nil, fmt.Errorf("logout: revoke: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		var er errorResponse
		_ = json.Unmarshal(data, &er)
		return cache.Entry{}, nil, &RemoteError{
			StatusCode:  resp.StatusCode,
			Code:        printable(er.Error),
			Description: printable(er.Description),
		}
	}
	var ans revokeAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		return cache.Entry{}, nil, fmt.Errorf("logout: revoke: stored, but the answer is not an entry: %w", err)
	}
	if w := ans.Wait; w != nil {
		for i := range w.Pending {
			w.Pending[i] = printable(w.Pending[i])
		}
		for i := range w.Down {
			w.Down[i] = printable(w.Down[i])
		}
	}
	return ans.Entry, ans.Wait, nil
}

// revocationsURL returns the admin revocations endpoint under baseURL.
func revocationsURL(baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("logout: admin API URL is not an absolute http(s) URL")
	}
	return u.JoinPath("admin", "revocations").String(), nil
}

// printable drops control and other non-printable characters from text a
// server sent, so it cannot drive the terminal it is shown on, and
// shortens it.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	return truncate(s, maxRemoteText)
}
