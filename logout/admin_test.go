package logout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func TestAdminAuth(t *testing.T) {
	tests := []struct {
		name          string
		header        []string // Authorization header values
		wantStatus    int
		wantInitiator string
		wantChallenge string
	}{
		{"ops token", []string{"Bearer " + tokOps}, http.StatusCreated, "admin:ops", ""},
		{"ci token", []string{"Bearer " + tokCI}, http.StatusCreated, "admin:ci", ""},
		{"lower-case scheme", []string{"bearer " + tokOps}, http.StatusCreated, "admin:ops", ""},
		{"upper-case scheme", []string{"BEARER " + tokOps}, http.StatusCreated, "admin:ops", ""},
		{"several spaces", []string{"Bearer   " + tokOps}, http.StatusCreated, "admin:ops", ""},
		{"missing", nil, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin"`},
		{"wrong token", []string{"Bearer " + strings.Repeat("x", len(tokOps))}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin", error="invalid_token"`},
		{"prefix of right token", []string{"Bearer " + tokOps[:len(tokOps)-1]}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin", error="invalid_token"`},
		{"right token and more", []string{"Bearer " + tokOps + "x"}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin", error="invalid_token"`},
		{"token in other case", []string{"Bearer " + strings.ToUpper(tokOps)}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin", error="invalid_token"`},
		{"empty token", []string{"Bearer "}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin"`},
		{"scheme only", []string{"Bearer"}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin"`},
		{"basic scheme", []string{"Basic " + tokOps}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin"`},
		{"token without scheme", []string{tokOps}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin"`},
		{"two headers", []string{"Bearer " + tokOps, "Bearer " + tokOps}, http.StatusUnauthorized, "", `Bearer realm="oidcgate-admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			r := newRequest(http.MethodPost, "/admin/revocations", "", "application/json", `{"sub":"alice"}`)
			for _, v := range tt.header {
				r.Header.Add("Authorization", v)
			}
			w := serve(t, f.admin, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%s)", w.Code, tt.wantStatus, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate: got %q; want %q", got, tt.wantChallenge)
			}
			if tt.wantStatus != http.StatusCreated {
				if e := decodeError(t, w); e.Error != "unauthorized" {
					t.Errorf("error: got %q; want unauthorized", e.Error)
				}
				if n := len(f.stored(t)); n != 0 {
					t.Errorf("stored entries: got %d; want 0", n)
				}
				if got := f.counter(t, kindUnknown, resultUnauthorized); got != 1 {
					t.Errorf("unauthorized count: got %v; want 1", got)
				}
				return
			}
			if got := decodeEntry(t, w).Initiator; got != tt.wantInitiator {
				t.Errorf("initiator: got %q; want %q", got, tt.wantInitiator)
			}
		})
	}
}

func TestAdminAuthBeforeAnythingElse(t *testing.T) {
	f := newFixture(t, nil)
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := serve(t, f.admin, newRequest(method, "/admin/revocations?limit=bogus", "", "text/plain", "{"))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s without a token: got %d; want 401", method, w.Code)
		}
	}
}

func TestAdminRevoke(t *testing.T) {
	long := strings.Repeat("v", cache.MaxValueLen+1)
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantError   string // error code of a refusal
		wantDesc    string // error_description of a refusal
		want        cache.Entry
	}{
		{name: "sub", body: `{"sub":"alice","reason":"offboarding"}`, wantStatus: 201,
			want: cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "alice", Reason: "offboarding"}},
		{name: "sid", body: `{"sid":"s-1"}`, wantStatus: 201, want: cache.Entry{Issuer: issA, Kind: cache.KindSID, Value: "s-1"}},
		{name: "jti", body: `{"jti":"j-1","issuer":"` + issA + `"}`, wantStatus: 201, want: cache.Entry{Issuer: issA, Kind: cache.KindJTI, Value: "j-1"}},
		{name: "client_id", body: `{"client_id":"billing"}`, wantStatus: 201, want: cache.Entry{Issuer: issA, Kind: cache.KindClient, Value: "billing"}},
		{name: "session", body: `{"session":"gw-1"}`, wantStatus: 201, want: cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest("gw-1")}},
		{name: "session digest", body: `{"session":"` + cache.SessionDigest("gw-1") + `"}`, wantStatus: 201, want: cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest("gw-1")}},
		{name: "charset utf-8", contentType: "application/json; charset=UTF-8", body: `{"sub":"alice"}`, wantStatus: 201,
			want: cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "alice"}},
		{name: "whitespace around object", body: " \n{\"sub\" : \"alice\"}\n\t", wantStatus: 201,
			want: cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "alice"}},
		{name: "escaped value", body: `{"sub":"al\u0069ce"}`, wantStatus: 201, want: cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "alice"}},

		{name: "no content type", contentType: "-", body: `{"sub":"alice"}`, wantStatus: 415, wantError: "unsupported_media_type"},
		{name: "text/plain", contentType: "text/plain", body: `{"sub":"alice"}`, wantStatus: 415, wantError: "unsupported_media_type"},
		{name: "form", contentType: "application/x-www-form-urlencoded", body: `sub=alice`, wantStatus: 415, wantError: "unsupported_media_type"},
		{name: "other charset", contentType: "application/json; charset=latin1", body: `{"sub":"alice"}`, wantStatus: 415, wantError: "unsupported_media_type"},
		{name: "malformed content type", contentType: "application/json; charset", body: `{"sub":"alice"}`, wantStatus: 415, wantError: "unsupported_media_type"},
		{name: "too large", body: `{"reason":"` + strings.Repeat("r", maxRevokeBody) + `","sub":"alice"}`, wantStatus: 413, wantError: "invalid_request", wantDesc: "body larger than 65536 bytes"},

		{name: "empty body", body: ``, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not a JSON object"},
		{name: "not JSON", body: `sub=alice`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not a JSON object"},
		{name: "array", body: `[{"sub":"alice"}]`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not a JSON object"},
		{name: "string", body: `"alice"`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not a JSON object"},
		{name: "truncated", body: `{"sub":"alice"`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not valid JSON"},
		{name: "trailing comma", body: `{"sub":"alice",}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not valid JSON"},
		{name: "missing colon", body: `{"sub" "alice"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not valid JSON"},
		{name: "two objects", body: `{"sub":"alice"}{"sub":"bob"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body has data after the JSON object"},
		{name: "trailing garbage", body: `{"sub":"alice"} x`, wantStatus: 400, wantError: "invalid_request", wantDesc: "body has data after the JSON object"},
		{name: "invalid UTF-8", body: "{\"sub\":\"al\xffce\"}", wantStatus: 400, wantError: "invalid_request", wantDesc: "body is not valid UTF-8"},
		{name: "unknown field", body: `{"sub":"alice","user":"bob"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: `unknown field "user"`},
		{name: "long unknown field is cut", body: `{"` + strings.Repeat("k", 100) + `":"x"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: `unknown field "` + strings.Repeat("k", 32) + `…"`},
		{name: "duplicate field", body: `{"sub":"alice","sub":"bob"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: given more than once"},
		{name: "number", body: `{"sub":12}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: not a string"},
		{name: "huge number", body: `{"sub":1e999999999}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: not a string"},
		{name: "null", body: `{"sub":null}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: not a string"},
		{name: "bool", body: `{"sub":true}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: not a string"},
		{name: "object", body: `{"sub":{"v":"alice"}}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: not a string"},
		{name: "deep nesting", body: `{"sub":` + strings.Repeat("[", 60000) + `}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sub: not a string"},
		{name: "reason not a string", body: `{"sub":"alice","reason":["x"]}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "reason: not a string"},
		{name: "no target", body: `{"reason":"x"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "exactly one of sub, sid, jti, client_id, session, key is required"},
		{name: "empty object", body: `{}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "exactly one of sub, sid, jti, client_id, session, key is required"},
		{name: "two targets", body: `{"sub":"alice","jti":"j"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "exactly one of sub, sid, jti, client_id, session, key is required"},
		{name: "two targets one empty", body: `{"sub":"alice","jti":""}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "exactly one of sub, sid, jti, client_id, session, key is required"},
		{name: "empty value", body: `{"sid":""}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "sid: empty"},
		{name: "long value", body: `{"jti":"` + long + `"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "jti: longer than 1024 bytes"},
		{name: "long reason", body: `{"sub":"alice","reason":"` + strings.Repeat("r", cache.MaxTextLen+1) + `"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "reason: longer than 512 bytes"},
		{name: "empty issuer", body: `{"sub":"alice","issuer":""}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "issuer: empty"},
		{name: "long issuer", body: `{"sub":"alice","issuer":"` + long + `"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "issuer: longer than 1024 bytes"},
		{name: "unknown issuer", body: `{"sub":"alice","issuer":"https://evil.example"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "issuer: not a configured issuer"},
		{name: "issuer with trailing slash", body: `{"sub":"alice","issuer":"` + issA + `/"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "issuer: not a configured issuer"},
		{name: "issuer with session", body: `{"session":"gw-1","issuer":"` + issA + `"}`, wantStatus: 400, wantError: "invalid_request", wantDesc: "issuer: not allowed with session (its ids are the gateway's own)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			ct := tt.contentType
			switch ct {
			case "":
				ct = "application/json"
			case "-":
				ct = ""
			}
			w := serve(t, f.admin, newRequest(http.MethodPost, "/admin/revocations", tokOps, ct, tt.body))
			if w.Code != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%s)", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus != http.StatusCreated {
				e := decodeError(t, w)
				if e.Error != tt.wantError || (tt.wantDesc != "" && e.Description != tt.wantDesc) {
					t.Errorf("error: got %q %q; want %q %q", e.Error, e.Description, tt.wantError, tt.wantDesc)
				}
				if n := len(f.stored(t)); n != 0 {
					t.Errorf("stored entries: got %d; want 0", n)
				}
				if len(e.Description) > 100 {
					t.Errorf("error_description is %d bytes; want a short text of ours", len(e.Description))
				}
				return
			}
			want := tt.want
			want.RevokedAt = t0
			want.Initiator = "admin:ops"
			want.ExpiresAt = t0.Add(time.Hour + 2*skew)
			if want.Kind == cache.KindSession {
				want.ExpiresAt = t0.Add(24*time.Hour + skew)
			}
			if got := decodeEntry(t, w); !entryEqual(got, want) {
				t.Errorf("answer: got %+v; want %+v", got, want)
			}
			if got := f.stored(t); len(got) != 1 || !entryEqual(got[0], want) {
				t.Errorf("stored: got %+v; want [%+v]", got, want)
			}
			if got := f.counter(t, string(want.Kind), resultOK); got != 1 {
				t.Errorf("ok count: got %v; want 1", got)
			}
		})
	}
}

func entryEqual(a, b cache.Entry) bool {
	return a.Issuer == b.Issuer && a.Kind == b.Kind && a.Value == b.Value && a.Reason == b.Reason &&
		a.Initiator == b.Initiator && a.RevokedAt.Equal(b.RevokedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func TestAdminRevokeIsIdempotent(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 2 {
		if w := f.post(t, `{"sub":"alice"}`); w.Code != http.StatusCreated {
			t.Fatalf("revocation #%d: got %d; want 201", i, w.Code)
		}
	}
	if n := len(f.stored(t)); n != 1 {
		t.Errorf("stored entries: got %d; want 1", n)
	}
}

func TestAdminIssuerRule(t *testing.T) {
	several := map[string]time.Duration{issA: time.Hour, issB: 10 * time.Minute}
	tests := []struct {
		name       string
		lifetimes  map[string]time.Duration
		body       string
		wantStatus int
		wantDesc   string
		wantIssuer string
		wantExpiry time.Time
	}{
		{"only issuer is the default", map[string]time.Duration{issB: 10 * time.Minute}, `{"sub":"alice"}`, 201, "", issB, t0.Add(10*time.Minute + 2*skew)},
		{"only issuer named", map[string]time.Duration{issB: 10 * time.Minute}, `{"sub":"alice","issuer":"` + issB + `"}`, 201, "", issB, t0.Add(10*time.Minute + 2*skew)},
		{"several: issuer required", several, `{"sub":"alice"}`, 400, "issuer: required when several issuers are configured", "", time.Time{}},
		{"several: first", several, `{"sid":"s","issuer":"` + issA + `"}`, 201, "", issA, t0.Add(time.Hour + 2*skew)},
		{"several: second", several, `{"sid":"s","issuer":"` + issB + `"}`, 201, "", issB, t0.Add(10*time.Minute + 2*skew)},
		{"several: unknown", several, `{"sid":"s","issuer":"https://idp-c.example"}`, 400, "issuer: not a configured issuer", "", time.Time{}},
		{"several: session needs none", several, `{"session":"gw"}`, 201, "", "", t0.Add(24*time.Hour + skew)},
		{"none: sub refused", nil, `{"sub":"alice"}`, 400, "issuer: no issuer is configured; only session can be revoked", "", time.Time{}},
		{"none: named issuer unknown", nil, `{"sub":"alice","issuer":"` + issA + `"}`, 400, "issuer: not a configured issuer", "", time.Time{}},
		{"none: session accepted", nil, `{"session":"gw"}`, 201, "", "", t0.Add(24*time.Hour + skew)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Lifetimes = tt.lifetimes })
			w := f.post(t, tt.body)
			if w.Code != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%s)", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus != http.StatusCreated {
				if got := decodeError(t, w).Description; got != tt.wantDesc {
					t.Errorf("error_description: got %q; want %q", got, tt.wantDesc)
				}
				return
			}
			e := decodeEntry(t, w)
			if e.Issuer != tt.wantIssuer || !e.ExpiresAt.Equal(tt.wantExpiry) {
				t.Errorf("got issuer %q expiry %v; want %q %v", e.Issuer, e.ExpiresAt, tt.wantIssuer, tt.wantExpiry)
			}
		})
	}
}

func TestAdminSessionMaxAge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SessionMaxAge = 8 * time.Hour })
	w := f.post(t, `{"session":"gw"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("status: got %d; want 201", w.Code)
	}
	if got, want := decodeEntry(t, w).ExpiresAt, t0.Add(8*time.Hour+skew); !got.Equal(want) {
		t.Errorf("expires_at: got %v; want %v", got, want)
	}
}

// eventWriter and eventStore record, in order, when the answer's status
// was written and when the store's Revoke returned.
type eventWriter struct {
	*httptest.ResponseRecorder
	events *[]string
}

func (w eventWriter) WriteHeader(code int) {
	*w.events = append(*w.events, fmt.Sprintf("answer %d", code))
	w.ResponseRecorder.WriteHeader(code)
}

type eventStore struct {
	Store
	fail   error
	events *[]string
}

func (s eventStore) Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error) {
	if s.fail != nil {
		*s.events = append(*s.events, "revoke failed")
		return cache.Entry{}, s.fail
	}
	got, err := s.Store.Revoke(ctx, e)
	*s.events = append(*s.events, "revoke durable")
	return got, err
}

func TestAdminAnswersAfterDurableWrite(t *testing.T) {
	errDisk := errors.New("disk full")
	tests := []struct {
		name       string
		fail       error
		wantEvents []string
		wantStored int
	}{
		{"durable", nil, []string{"revoke durable", "answer 201"}, 1},
		{"store fails", errDisk, []string{"revoke failed", "answer 500"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			real := openStore(t)
			f := newFixture(t, func(c *Config) { c.Store = eventStore{Store: real, fail: tt.fail, events: &events} })
			w := eventWriter{httptest.NewRecorder(), &events}
			f.admin.ServeHTTP(w, newRequest(http.MethodPost, "/admin/revocations", tokOps, "application/json", `{"jti":"j-1"}`))
			if strings.Join(events, ", ") != strings.Join(tt.wantEvents, ", ") {
				t.Errorf("events: got %q; want %q", events, tt.wantEvents)
			}
			es, _, err := real.List(context.Background(), cache.ListOptions{})
			if err != nil || len(es) != tt.wantStored {
				t.Errorf("stored: got %d, %v; want %d, nil", len(es), err, tt.wantStored)
			}
			if tt.fail == nil {
				return
			}
			e := decodeError(t, w.ResponseRecorder)
			if e.Error != "server_error" || e.Description != "revocation not stored" {
				t.Errorf("error: got %q %q; want server_error, revocation not stored", e.Error, e.Description)
			}
			if strings.Contains(w.Body.String(), errDisk.Error()) {
				t.Errorf("answer %q reveals the store error", w.Body)
			}
			if got := f.counter(t, string(cache.KindJTI), resultError); got != 1 {
				t.Errorf("error count: got %v; want 1", got)
			}
			if !strings.Contains(f.logs.String(), "revocation not stored") {
				t.Errorf("logs: got %q; want the failure logged", f.logs)
			}
		})
	}
}

func TestAdminLogsNoValueNorToken(t *testing.T) {
	f := newFixture(t, nil)
	for _, body := range []string{`{"jti":"secret-jti-value"}`, `{"session":"secret-session-id"}`, `{"sub":"secret-subject"}`} {
		if w := f.post(t, body); w.Code != http.StatusCreated {
			t.Fatalf("%s: got %d; want 201", body, w.Code)
		}
	}
	logs := f.logs.String()
	for _, secret := range []string{"secret-jti-value", "secret-session-id", "secret-subject", tokOps} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q: %s", secret, logs)
		}
	}
	var line struct {
		Msg, Kind, Issuer, Initiator string
		ValueSHA256                  string `json:"value_sha256"`
	}
	first, _, _ := strings.Cut(logs, "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatalf("log line %q: %v", first, err)
	}
	want := digestPrefix("secret-jti-value")
	if line.Msg != "revocation stored" || line.Kind != "jti" || line.Issuer != issA || line.Initiator != "admin:ops" || line.ValueSHA256 != want {
		t.Errorf("log line: got %+v; want revocation stored, jti, %s, admin:ops, %s", line, issA, want)
	}
}

func TestAdminMethods(t *testing.T) {
	f := newFixture(t, nil)
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions, "BREW"} {
		w := serve(t, f.admin, newRequest(method, "/admin/revocations", tokOps, "application/json", `{"sub":"alice"}`))
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: got %d; want 405", method, w.Code)
		}
		if got := w.Header().Get("Allow"); got != "GET, POST" {
			t.Errorf("%s: Allow: got %q; want GET, POST", method, got)
		}
	}
	if n := len(f.stored(t)); n != 0 {
		t.Errorf("stored entries: got %d; want 0", n)
	}
}

type listBody struct {
	Entries    []cache.Entry `json:"entries"`
	NextCursor *string       `json:"next_cursor"`
}

func decodeList(t *testing.T, w *httptest.ResponseRecorder) listBody {
	t.Helper()
	var l listBody
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
		t.Fatalf("list body %q: %v", w.Body.String(), err)
	}
	if l.Entries == nil || l.NextCursor == nil {
		t.Fatalf("list body %q: want entries and next_cursor present", w.Body.String())
	}
	return l
}

func TestAdminList(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Lifetimes = map[string]time.Duration{issA: time.Hour, issB: time.Hour} })
	bodies := []string{
		`{"sub":"alice","issuer":"` + issA + `"}`,
		`{"sub":"bob","issuer":"` + issA + `"}`,
		`{"sub":"alice","issuer":"` + issB + `"}`,
		`{"jti":"j-1","issuer":"` + issB + `"}`,
		`{"session":"gw-1"}`,
	}
	for _, b := range bodies {
		if w := f.post(t, b); w.Code != http.StatusCreated {
			t.Fatalf("%s: got %d; want 201", b, w.Code)
		}
	}
	t.Run("pages", func(t *testing.T) {
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			l := decodeList(t, f.get(t, "limit=2&cursor="+cursor))
			pages++
			if len(l.Entries) > 2 {
				t.Fatalf("page %d: got %d entries; want at most 2", pages, len(l.Entries))
			}
			for _, e := range l.Entries {
				k := e.Issuer + " " + string(e.Kind) + " " + e.Value
				if seen[k] {
					t.Errorf("entry %s listed twice", k)
				}
				seen[k] = true
			}
			if cursor = *l.NextCursor; cursor == "" {
				break
			}
			if pages > len(bodies) {
				t.Fatalf("more than %d pages", len(bodies))
			}
		}
		if len(seen) != len(bodies) || pages != 3 {
			t.Errorf("got %d entries on %d pages; want %d on 3", len(seen), pages, len(bodies))
		}
	})
	filters := []struct {
		query string
		want  int
	}{
		{"", 5},
		{"kind=sub", 3},
		{"kind=sub&issuer=" + issA, 2},
		{"issuer=" + issB, 2},
		{"value=alice", 2},
		{"kind=session", 1},
		{"kind=client", 0},
		{"limit=1000", 5},
	}
	for _, tt := range filters {
		t.Run("filter "+tt.query, func(t *testing.T) {
			w := f.get(t, tt.query)
			if w.Code != http.StatusOK {
				t.Fatalf("got %d; want 200 (%s)", w.Code, w.Body)
			}
			if got := decodeList(t, w).Entries; len(got) != tt.want {
				t.Errorf("got %d entries; want %d", len(got), tt.want)
			}
		})
	}
}

func TestAdminListBadParameters(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct{ query, wantDesc string }{
		{"kind=user", "kind: not one of jti, sid, sub, client, session, key"},
		{"kind=client_id", "kind: not one of jti, sid, sub, client, session, key"},
		{"limit=0", "limit: not an integer from 1 to 1000"},
		{"limit=-1", "limit: not an integer from 1 to 1000"},
		{"limit=1001", "limit: not an integer from 1 to 1000"},
		{"limit=abc", "limit: not an integer from 1 to 1000"},
		{"limit=99999999999999999999999", "limit: not an integer from 1 to 1000"},
		{"limit=", "limit: not an integer from 1 to 1000"},
		{"limit=1&limit=2", "limit: given more than once"},
		{"user=alice", `unknown parameter "user"`},
		{"sub=%zz", "query is not valid"},
		{"value=" + strings.Repeat("v", cache.MaxValueLen+1), "value: longer than 1024 bytes"},
		{"issuer=" + strings.Repeat("i", cache.MaxValueLen+1), "issuer: longer than 1024 bytes"},
		{"cursor=" + strings.Repeat("c", maxCursorLen+1), "cursor: not valid"},
		{"cursor=not-a-cursor", "cursor: not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.query[:min(len(tt.query), 40)], func(t *testing.T) {
			w := f.get(t, tt.query)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("got %d; want 400 (%s)", w.Code, w.Body)
			}
			if e := decodeError(t, w); e.Error != "invalid_request" || e.Description != tt.wantDesc {
				t.Errorf("got %q %q; want invalid_request %q", e.Error, e.Description, tt.wantDesc)
			}
		})
	}
}

type failingListStore struct{ Store }

func (failingListStore) List(context.Context, cache.ListOptions) ([]cache.Entry, string, error) {
	return nil, "", errors.New("backend down")
}

func TestAdminListStoreFailure(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Store = failingListStore{c.Store} })
	w := f.get(t, "")
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("got %d; want 500", w.Code)
	}
	if e := decodeError(t, w); e.Error != "server_error" {
		t.Errorf("error: got %q; want server_error", e.Error)
	}
}

func TestAdminNilBody(t *testing.T) {
	f := newFixture(t, nil)
	r := newRequest(http.MethodPost, "/admin/revocations", tokOps, "application/json", "")
	r.Body = nil
	if w := serve(t, f.admin, r); w.Code != http.StatusBadRequest {
		t.Errorf("got %d; want 400", w.Code)
	}
}

func TestAdminDeclaredLengthTooLarge(t *testing.T) {
	f := newFixture(t, nil)
	r := newRequest(http.MethodPost, "/admin/revocations", tokOps, "application/json", `{"sub":"alice"}`)
	r.ContentLength = maxRevokeBody + 1
	if w := serve(t, f.admin, r); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d; want 413", w.Code)
	}
}

func TestAdminBrokenClockIsServerError(t *testing.T) {
	broken := clocktest.New(t0)
	broken.Set(time.Time{})
	f := newFixture(t, func(c *Config) { c.Clock = broken })
	w := f.post(t, `{"sub":"alice"}`)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("got %d; want 500 (%s)", w.Code, w.Body)
	}
	if n := len(f.stored(t)); n != 0 {
		t.Errorf("stored entries: got %d; want 0", n)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestAdminUnreadableBody(t *testing.T) {
	f := newFixture(t, nil)
	r := newRequest(http.MethodPost, "/admin/revocations", tokOps, "application/json", "")
	r.Body = io.NopCloser(errReader{})
	w := serve(t, f.admin, r)
	if e := decodeError(t, w); w.Code != http.StatusBadRequest || e.Description != "body could not be read" {
		t.Errorf("got %d %q; want 400 body could not be read", w.Code, e.Description)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"}, // é is 2 bytes: cut before it, never inside
		{"ééé", 3, "é…"},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d): got %q; want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
