package logout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
)

// StatusPath is where the CLI mounts StatusHandler, on the internal
// listener only.
const StatusPath = "/admin/revocations/status"

// Applier reports which replicas have applied an entry. *cache.Store (one
// replica) and *cache.Redis (every replica sharing the Redis) implement it.
type Applier interface {
	Applied(ctx context.Context, issuer string, kind cache.Kind, value string) (cache.ApplyStatus, error)
}

var (
	_ Applier = (*cache.Store)(nil)
	_ Applier = (*cache.Redis)(nil)
)

// Verdict sums up where a revocation is applied.
type Verdict string

// The verdicts, from best to worst for a revocation that exists.
const (
	// VerdictAppliedEverywhere: every known replica applied the entry.
	VerdictAppliedEverywhere Verdict = "applied_everywhere"
	// VerdictPending: replicas that are up have not applied it yet (they
	// are expected to within moments); RevocationStatus.Pending names them.
	VerdictPending Verdict = "pending"
	// VerdictDown: replicas that are down have not applied it;
	// RevocationStatus.Down names them. Each resynchronises before it
	// serves again, but until someone checks, nobody has proof.
	VerdictDown Verdict = "not_applied_on_down_replicas"
	// VerdictNotRevoked: there is no entry under the key.
	VerdictNotRevoked Verdict = "not_revoked"
)

// RevocationStatus is the JSON answer of GET /admin/revocations/status.
type RevocationStatus struct {
	Verdict Verdict `json:"verdict"`
	// Entry is the revocation; nil with VerdictNotRevoked.
	Entry *cache.Entry `json:"entry"`
	// Replicas lists every known replica.
	Replicas []ReplicaStatus `json:"replicas"`
	// Pending and Down are the ids of the replicas that have not applied
	// the entry, up and down; never null.
	Pending []string `json:"pending"`
	Down    []string `json:"down"`
	// AppLogouts are the app logout calls this replica made for sessions
	// the revocation ended, from its audit log (absent without one); other
	// replicas' calls are in their own logs.
	AppLogouts []audit.AppLogout `json:"app_logouts,omitempty"`
	// Targets lists everything the revocation must reach: each replica,
	// each app logout call above, each session authority call (and,
	// later, other outbound targets); never null.
	Targets []TargetStatus `json:"targets"`
	// Complete reports whether every target is done or unsupported: only
	// then has the revocation reached everything it can.
	Complete bool `json:"complete"`
}

// ReplicaStatus is one replica in a RevocationStatus.
type ReplicaStatus struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Addr string `json:"addr,omitempty"`
	Up   bool   `json:"up"`
	// LastSeen is the last heartbeat; nil when the replica never sent one.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Applied  bool       `json:"applied"`
	// AppliedAt is when it applied the entry; nil when it has not.
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// StatusOf judges st: VerdictDown when a replica that is down has not
// applied the entry (even if others are only pending), else VerdictPending
// when one that is up has not, else VerdictAppliedEverywhere.
func StatusOf(st cache.ApplyStatus) RevocationStatus {
	out := RevocationStatus{Verdict: VerdictNotRevoked, Replicas: []ReplicaStatus{}, Pending: []string{}, Down: []string{}}
	for _, r := range st.Replicas {
		rs := ReplicaStatus{ID: r.ID, Name: r.Name, Addr: r.Addr, Up: r.Up, Applied: r.Applied()}
		if !r.LastSeen.IsZero() {
			rs.LastSeen = &r.LastSeen
		}
		if r.Applied() {
			rs.AppliedAt = &r.AppliedAt
		}
		out.Replicas = append(out.Replicas, rs)
		switch {
		case !st.Found || r.Applied():
		case r.Up:
			out.Pending = append(out.Pending, r.ID)
		default:
			out.Down = append(out.Down, r.ID)
		}
	}
	if !st.Found {
		return out
	}
	e := st.Entry
	out.Entry = &e
	switch {
	case len(out.Down) > 0:
		out.Verdict = VerdictDown
	case len(out.Pending) > 0:
		out.Verdict = VerdictPending
	default:
		out.Verdict = VerdictAppliedEverywhere
	}
	return out
}

// StatusHandler serves GET /admin/revocations/status?kind=K&value=V
// [&issuer=ISS]: the RevocationStatus of the entry (issuer, kind, value),
// asked of store. It authenticates exactly like the Admin API and needs
// the role read. The issuer
// is resolved as for a revocation: required when several issuers are
// configured, the only one when one is, and absent for kind session. A
// store that cannot answer yields 503 (the verdict would be a guess).
func (a *Admin) StatusHandler(store Applier, au *audit.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.auth.Authorize(w, r, RoleRead); !ok {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
			return
		}
		q, err := a.parseStatus(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		st, err := store.Applied(r.Context(), q.Issuer, q.Kind, q.Value)
		if err != nil {
			a.log.LogAttrs(r.Context(), slog.LevelError, "revocation status unavailable", slog.String("kind", string(q.Kind)), slog.String("value_sha256", digestPrefix(q.Value)), slog.Any("error", err))
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the revocation store could not be asked")
			return
		}
		out := StatusOf(st)
		if au != nil && st.Found {
			if out.AppLogouts, err = appLogoutsFor(r.Context(), au, st.Entry); err != nil {
				// Without the app logout outcomes the verdict could say
				// done when an app still holds a session.
				a.log.LogAttrs(r.Context(), slog.LevelError, "revocation status: audit log unreadable", slog.Any("error", err))
				writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the audit log could not be read")
				return
			}
		}
		if err := a.judgeTargets(r.Context(), &out); err != nil {
			a.log.LogAttrs(r.Context(), slog.LevelError, "revocation targets unavailable", slog.String("kind", string(q.Kind)), slog.String("value_sha256", digestPrefix(q.Value)), slog.Any("error", err))
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the revocation's targets could not be read")
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// appLogoutsFor returns the app logout calls of au that ended a session
// e revoked: records of event app_logout since e was revoked (less a
// minute of clock difference) naming e's issuer and value, all of them
// (audit.Log.AppLogouts filters before it counts). A session, jti or
// client entry names no app logout record.
func appLogoutsFor(ctx context.Context, au *audit.Log, e cache.Entry) ([]audit.AppLogout, error) {
	if e.Kind != cache.KindSub && e.Kind != cache.KindSID {
		return nil, nil
	}
	return au.AppLogouts(ctx, audit.Target{Issuer: e.Issuer, Kind: e.Kind, Value: e.Value}, e.RevokedAt.Add(-time.Minute))
}

// StatusQuery names the entry whose status is asked.
type StatusQuery struct {
	Kind  cache.Kind
	Value string
	// Issuer may be empty when the gateway has one issuer; it must be
	// empty for KindSession.
	Issuer string
}

func (a *Admin) parseStatus(rawQuery string) (StatusQuery, error) {
	v, err := url.ParseQuery(rawQuery)
	if err != nil {
		return StatusQuery{}, badRequest("query is not valid")
	}
	var q StatusQuery
	for name, vals := range v {
		if len(vals) != 1 {
			return StatusQuery{}, badRequest("%s: given more than once", truncate(name, 32))
		}
		switch name {
		case "kind":
			q.Kind = cache.Kind(vals[0])
		case "value":
			q.Value = vals[0]
		case "issuer":
			q.Issuer = vals[0]
		default:
			return StatusQuery{}, badRequest("unknown parameter %q", truncate(name, 32))
		}
	}
	switch {
	case !q.Kind.Valid():
		return StatusQuery{}, badRequest("kind: not one of jti, sid, sub, client, session")
	case q.Value == "":
		return StatusQuery{}, badRequest("value: required")
	case len(q.Value) > cache.MaxValueLen || len(q.Issuer) > cache.MaxValueLen:
		return StatusQuery{}, badRequest("value and issuer: at most %d bytes", cache.MaxValueLen)
	}
	if q.Kind == cache.KindSession {
		if q.Issuer != "" {
			return StatusQuery{}, badRequest("issuer: must be empty for kind session")
		}
		q.Value = cache.SessionDigest(q.Value)
		return q, nil
	}
	switch {
	case q.Issuer != "":
		if _, ok := a.retention.lifetimes[q.Issuer]; !ok {
			return StatusQuery{}, badRequest("issuer: not a configured issuer")
		}
	case len(a.issuers) == 1:
		q.Issuer = a.issuers[0]
	default:
		return StatusQuery{}, badRequest("issuer: required when several issuers (or none) are configured")
	}
	return q, nil
}

// StatusRemote asks the admin API under baseURL (the internal listener's
// base URL) for the status of the entry q names, authenticating with the
// bearer token. Any answer but 200 is a *RemoteError; redirects are not
// followed. Server-supplied replica names, addresses and ids are stripped
// of non-printable characters. client must not be nil.
func StatusRemote(ctx context.Context, client *http.Client, baseURL, token string, q StatusQuery) (RevocationStatus, error) {
	if client == nil {
		return RevocationStatus{}, errors.New("logout: StatusRemote: nil *http.Client")
	}
	endpoint, err := revocationsURL(baseURL)
	if err != nil {
		return RevocationStatus{}, err
	}
	u, _ := url.Parse(endpoint) // revocationsURL built it
	u = u.JoinPath("status")
	v := url.Values{"kind": {string(q.Kind)}, "value": {q.Value}}
	if q.Issuer != "" {
		v.Set("issuer", q.Issuer)
	}
	u.RawQuery = v.Encode()
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("logout: %w", err)
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("Authorization", "Bearer "+token)
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(hr)
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("logout: status: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("logout: status: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var er errorResponse
		_ = json.Unmarshal(data, &er)
		return RevocationStatus{}, &RemoteError{StatusCode: resp.StatusCode, Code: printable(er.Error), Description: printable(er.Description)}
	}
	var st RevocationStatus
	if err := json.Unmarshal(data, &st); err != nil {
		return RevocationStatus{}, fmt.Errorf("logout: status: the answer is not a status: %w", err)
	}
	for i := range st.Replicas {
		r := &st.Replicas[i]
		r.ID, r.Name, r.Addr = printable(r.ID), printable(r.Name), printable(r.Addr)
	}
	for i := range st.Pending {
		st.Pending[i] = printable(st.Pending[i])
	}
	for i := range st.Down {
		st.Down[i] = printable(st.Down[i])
	}
	for i := range st.Targets {
		t := &st.Targets[i]
		t.Kind, t.Name, t.LastError, t.Note = printable(t.Kind), printable(t.Name), printable(t.LastError), printable(t.Note)
		t.State = cache.TargetState(printable(string(t.State)))
	}
	return st, nil
}
