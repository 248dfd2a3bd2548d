package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/logout"
)

// The kinds the forms offer, with the admin API's JSON member of each.
var kinds = []struct{ Kind, Field, Label string }{
	{"sub", "sub", "user (sub)"},
	{"sid", "sid", "session at the IdP (sid)"},
	{"session", "session", "gateway session"},
	{"client", "client_id", "client"},
	{"key", "key", "API key id"},
	{"jti", "jti", "token (jti)"},
}

func fieldOf(kind string) (string, bool) {
	for _, k := range kinds {
		if k.Kind == kind {
			return k.Field, true
		}
	}
	return "", false
}

// Page sizes.
const (
	auditPageSize  = 50
	searchAuditMax = 20
	maxKeysShown   = 200
	chartWindow    = 3 * time.Hour
	chartMinutes   = int(chartWindow / time.Minute)
)

// formValue returns r's single value of name, "" when absent; a value
// repeated, longer than max or not UTF-8 is reported as a problem.
func formValue(vals url.Values, name string, max int) (string, string) {
	vs := vals[name]
	switch {
	case len(vs) == 0:
		return "", ""
	case len(vs) > 1:
		return "", name + ": given more than once"
	case len(vs[0]) > max:
		return "", fmt.Sprintf("%s: longer than %d bytes", name, max)
	case !utf8.ValidString(vs[0]):
		return "", name + ": not valid UTF-8"
	}
	return strings.TrimSpace(vs[0]), ""
}

// overviewData is the data of the overview page.
type overviewData struct {
	Entries    int
	Replicas   []cache.ReplicaApply
	ReplicaErr string
	Metrics    []metricRow
	Head       *audit.Anchor
	Chart      *chart
	ChartErr   string
}

func (c *Console) overview(q *request) {
	var d overviewData
	if q.p.Roles.Has(logout.RoleRead) {
		d.Entries = c.cfg.Store.Len()
		// The replicas come with any key's application state; this
		// key names no entry.
		if st, err := c.cfg.Store.Applied(q.r.Context(), "", cache.KindKey, "console-overview"); err != nil {
			c.log.LogAttrs(q.r.Context(), slog.LevelError, "console: replicas not listed", slog.Any("error", err))
			d.ReplicaErr = "The store could not list the replicas."
		} else {
			d.Replicas = st.Replicas
		}
		d.Metrics = c.metrics()
	}
	if c.cfg.Audit != nil && q.p.Roles.Has(logout.RoleAudit) {
		h := c.cfg.Audit.Head()
		d.Head = &h
		ch, err := c.chart(q)
		if err != nil {
			c.log.LogAttrs(q.r.Context(), slog.LevelError, "console: audit not read for the chart", slog.Any("error", err))
			d.ChartErr = "The audit log could not be read."
		}
		d.Chart = ch
	}
	c.render(q.w, q.r, http.StatusOK, "overview", q, d)
}

// searchData is the data of the search page.
type searchData struct {
	Kinds               any
	Issuers             []string
	Kind, Value, Issuer string
	Searched            bool
	Error               string
	Results             []searchResult
	AuditShown          bool
}

type searchResult struct {
	Issuer  string
	Status  logout.RevocationStatus
	Records []audit.Record
}

func (c *Console) search(q *request) {
	if !c.need(q, logout.RoleRead) {
		return
	}
	vals := q.r.URL.Query()
	d := searchData{Kinds: kinds, Issuers: c.cfg.Issuers, AuditShown: c.cfg.Audit != nil && q.p.Roles.Has(logout.RoleAudit)}
	var problems []string
	add := func(v, problem string) string {
		if problem != "" {
			problems = append(problems, problem)
		}
		return v
	}
	d.Kind = add(formValue(vals, "kind", 16))
	d.Value = add(formValue(vals, "value", cache.MaxValueLen))
	d.Issuer = add(formValue(vals, "issuer", cache.MaxValueLen))
	if d.Value == "" && len(problems) == 0 {
		c.render(q.w, q.r, http.StatusOK, "search", q, d)
		return
	}
	d.Searched = true
	if _, ok := fieldOf(d.Kind); !ok {
		problems = append(problems, "kind: not one of the kinds offered")
	}
	if d.Value == "" {
		problems = append(problems, "value: required")
	}
	if d.Issuer != "" && !slices.Contains(c.cfg.Issuers, d.Issuer) {
		problems = append(problems, "issuer: not a configured issuer")
	}
	if len(problems) > 0 {
		d.Error = strings.Join(problems, "; ")
		c.render(q.w, q.r, http.StatusBadRequest, "search", q, d)
		return
	}
	issuers := []string{d.Issuer}
	if kind := cache.Kind(d.Kind); kind.Issuerless() {
		issuers = []string{""}
	} else if d.Issuer == "" {
		issuers = c.cfg.Issuers
	}
	for _, iss := range issuers {
		st, status, msg := c.status(q, d.Kind, d.Value, iss)
		if status != http.StatusOK {
			d.Error = msg
			c.render(q.w, q.r, clientStatus(status), "search", q, d)
			return
		}
		if st.Entry == nil {
			continue
		}
		res := searchResult{Issuer: iss, Status: st}
		if d.AuditShown {
			recs, err := c.auditOf(q, *st.Entry)
			if err != nil {
				d.Error = "The audit log could not be read."
			}
			res.Records = recs
		}
		d.Results = append(d.Results, res)
	}
	c.render(q.w, q.r, http.StatusOK, "search", q, d)
}

// clientStatus keeps 4xx and 503 as they are and makes anything else 502:
// the page reports another component's failure.
func clientStatus(status int) int {
	if status >= 400 && status < 500 || status == http.StatusServiceUnavailable {
		return status
	}
	return http.StatusBadGateway
}

// status asks the status handler about (kind, value, issuer).
func (c *Console) status(q *request, kind, value, issuer string) (logout.RevocationStatus, int, string) {
	v := url.Values{"kind": {kind}, "value": {value}}
	if issuer != "" {
		v.Set("issuer", issuer)
	}
	a, err := c.call(q, c.cfg.Status, http.MethodGet, logout.StatusPath+"?"+v.Encode(), nil)
	if err != nil {
		return logout.RevocationStatus{}, http.StatusBadRequest, "The search could not be made."
	}
	if a.status != http.StatusOK {
		return logout.RevocationStatus{}, a.status, a.message()
	}
	var st logout.RevocationStatus
	if json.Unmarshal(a.body.Bytes(), &st) != nil {
		return st, http.StatusBadGateway, "The status answer could not be read."
	}
	return st, http.StatusOK, ""
}

// auditOf returns the newest audit records of entry e (a bounded page).
func (c *Console) auditOf(q *request, e cache.Entry) ([]audit.Record, error) {
	aq := audit.Query{Limit: searchAuditMax}
	if e.Kind == cache.KindSub {
		aq.Sub = e.Value
	} else {
		v := e.Value
		if e.Kind == cache.KindJTI {
			// audit.RecordOf records a jti only as its digest.
			d := sha256.Sum256([]byte(v))
			v = "sha256:" + hex.EncodeToString(d[:])
		}
		aq.Target = &audit.Target{Issuer: e.Issuer, Kind: e.Kind, Value: v}
	}
	pg, err := c.cfg.Audit.Page(q.r.Context(), aq, 0)
	return pg.Records, err
}

// revokeData is the data of the revoke page.
type revokeData struct {
	Kinds                       any
	Issuers                     []string
	Kind, Value, Issuer, Reason string
	Error                       string
}

func (c *Console) revokeForm(q *request) {
	if !c.need(q, logout.RoleRevoke) {
		return
	}
	c.render(q.w, q.r, http.StatusOK, "revoke", q, revokeData{Kinds: kinds, Issuers: c.cfg.Issuers, Kind: "sub"})
}

func (c *Console) revoke(q *request) {
	if !c.need(q, logout.RoleRevoke) {
		return
	}
	f := q.r.PostForm
	d := revokeData{Kinds: kinds, Issuers: c.cfg.Issuers}
	var problems []string
	add := func(v, problem string) string {
		if problem != "" {
			problems = append(problems, problem)
		}
		return v
	}
	d.Kind = add(formValue(f, "kind", 16))
	d.Value = add(formValue(f, "value", cache.MaxValueLen))
	d.Issuer = add(formValue(f, "issuer", cache.MaxValueLen))
	d.Reason = add(formValue(f, "reason", cache.MaxTextLen))
	field, ok := fieldOf(d.Kind)
	if !ok {
		problems = append(problems, "kind: not one of the kinds offered")
	}
	if d.Value == "" {
		problems = append(problems, "value: required")
	}
	if d.Reason == "" {
		problems = append(problems, "reason: required")
	}
	if len(problems) > 0 {
		d.Error = strings.Join(problems, "; ")
		c.render(q.w, q.r, http.StatusBadRequest, "revoke", q, d)
		return
	}
	body := map[string]string{field: d.Value, "reason": d.Reason}
	if d.Issuer != "" && !cache.Kind(d.Kind).Issuerless() {
		body["issuer"] = d.Issuer
	}
	a, err := c.call(q, c.cfg.Revocations, http.MethodPost, "/admin/revocations", body)
	if err != nil {
		d.Error = "The revocation could not be sent."
		c.render(q.w, q.r, http.StatusBadRequest, "revoke", q, d)
		return
	}
	if a.status != http.StatusCreated {
		d.Error = a.message()
		c.render(q.w, q.r, clientStatus(a.status), "revoke", q, d)
		return
	}
	var e cache.Entry
	if json.Unmarshal(a.body.Bytes(), &e) != nil {
		d.Error = "The revocation was stored, but its answer could not be read; search for it."
		c.render(q.w, q.r, http.StatusBadGateway, "revoke", q, d)
		return
	}
	if !q.p.Roles.Has(logout.RoleRead) {
		// Following is reading the status: without read, say what was
		// stored and who can follow it.
		c.render(q.w, q.r, http.StatusOK, "follow", q, followData{
			Kind: string(e.Kind), Value: e.Value, Issuer: e.Issuer,
			Status: logout.RevocationStatus{Entry: &e},
			Error:  "Stored. Following its targets needs the read role: ask a holder of it, or run oidcgate verify-revocation with a read token.",
		})
		return
	}
	v := url.Values{"kind": {string(e.Kind)}, "value": {e.Value}}
	if e.Issuer != "" {
		v.Set("issuer", e.Issuer)
	}
	http.Redirect(q.w, q.r, Prefix+"follow?"+v.Encode(), http.StatusSeeOther)
}

// followData is the data of the follow page.
type followData struct {
	Kind, Value, Issuer string
	StatusURL           string
	Status              logout.RevocationStatus
	Error               string
}

func (c *Console) follow(q *request) {
	if !c.need(q, logout.RoleRead) {
		return
	}
	vals := q.r.URL.Query()
	var d followData
	var problems []string
	for name, dst := range map[string]*string{"kind": &d.Kind, "value": &d.Value, "issuer": &d.Issuer} {
		v, problem := formValue(vals, name, cache.MaxValueLen)
		if problem != "" {
			problems = append(problems, problem)
		}
		*dst = v
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		c.fail(q.w, q.r, q, http.StatusBadRequest, strings.Join(problems, "; "))
		return
	}
	st, status, msg := c.status(q, d.Kind, d.Value, d.Issuer)
	if status != http.StatusOK {
		c.fail(q.w, q.r, q, clientStatus(status), msg)
		return
	}
	d.Status = st
	v := url.Values{"kind": {d.Kind}, "value": {d.Value}}
	if d.Issuer != "" {
		v.Set("issuer", d.Issuer)
	}
	d.StatusURL = Prefix + "status.json?" + v.Encode()
	c.render(q.w, q.r, http.StatusOK, "follow", q, d)
}

// statusJSON passes the status handler's JSON answer through, for the
// follow page's script.
func (c *Console) statusJSON(q *request) {
	if !q.p.Roles.Has(logout.RoleRead) {
		c.cfg.Auth.Refused(q.r, q.p, logout.RoleRead)
		writeJSON(q.w, http.StatusForbidden, []byte(`{"error":"forbidden","missing_role":"read"}`))
		return
	}
	a, err := c.call(q, c.cfg.Status, http.MethodGet, logout.StatusPath+"?"+q.r.URL.RawQuery, nil)
	if err != nil {
		writeJSON(q.w, http.StatusBadRequest, []byte(`{"error":"invalid_request"}`))
		return
	}
	writeJSON(q.w, a.status, a.body.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// auditData is the data of the audit page.
type auditData struct {
	Triggers                   []string
	Sub, Trigger, Since, Until string
	Records                    []audit.Record
	NextURL                    string
	Scanned                    int
	Error                      string
}

func (c *Console) auditPage(q *request) {
	if c.cfg.Audit == nil {
		c.fail(q.w, q.r, q, http.StatusNotFound, "No audit log is configured.")
		return
	}
	if !c.need(q, logout.RoleAudit) {
		return
	}
	vals := q.r.URL.Query()
	d := auditData{Triggers: audit.Triggers}
	// Empty form fields mean "any"; the API's parser wants them absent.
	clean := url.Values{}
	for name, vs := range vals {
		if len(vs) != 1 || vs[0] != "" {
			clean[name] = vs
		}
	}
	d.Sub, d.Trigger, d.Since, d.Until = clean.Get("sub"), clean.Get("trigger"), clean.Get("since"), clean.Get("until")
	clean.Set("limit", fmt.Sprint(auditPageSize))
	aq, before, err := logout.ParseAuditQuery(clean.Encode())
	if err != nil {
		d.Error = err.Error()
		c.render(q.w, q.r, http.StatusBadRequest, "audit", q, d)
		return
	}
	pg, err := c.cfg.Audit.Page(q.r.Context(), aq, before)
	if err != nil {
		c.log.LogAttrs(q.r.Context(), slog.LevelError, "console: audit not read", slog.Any("error", err))
		d.Error = "The audit log could not be read."
		c.render(q.w, q.r, http.StatusServiceUnavailable, "audit", q, d)
		return
	}
	d.Records, d.Scanned = pg.Records, pg.Scanned
	if pg.Next > 0 {
		clean.Del("limit")
		clean.Set("cursor", fmt.Sprint(pg.Next))
		d.NextURL = Prefix + "audit?" + clean.Encode()
	}
	c.render(q.w, q.r, http.StatusOK, "audit", q, d)
}

// verifyData is the data of the verify page.
type verifyData struct {
	Files    int
	Records  int
	LastHash string
	Break    string
	Error    string
}

func (c *Console) verify(q *request) {
	if c.cfg.Audit == nil {
		c.fail(q.w, q.r, q, http.StatusNotFound, "No audit log is configured.")
		return
	}
	if !c.need(q, logout.RoleAudit) {
		return
	}
	var d verifyData
	files, err := audit.RotatedFiles(c.cfg.Audit.Path())
	if err == nil {
		var rep audit.Report
		rep, err = audit.VerifyFiles(append(files, c.cfg.Audit.Path())...)
		d.Files, d.Records, d.LastHash = len(rep.Files), rep.Records, rep.LastHash
		if rep.Break != nil {
			d.Break = rep.Break.String()
		}
	}
	if err != nil {
		c.log.LogAttrs(q.r.Context(), slog.LevelError, "console: audit not verified", slog.Any("error", err))
		d.Error = "The audit log could not be read."
	}
	c.log.LogAttrs(q.r.Context(), slog.LevelInfo, "console: audit chain verified", slog.String("admin", q.p.Name), slog.Int("records", d.Records), slog.Bool("intact", d.Break == "" && d.Error == ""))
	c.render(q.w, q.r, http.StatusOK, "verify", q, d)
}

// keysData is the data of the API keys page.
type keysData struct {
	Owner   string
	Keys    []logout.KeyView
	More    int
	Created *logout.CreatedKey
	Done    string
	Error   string
}

func (c *Console) keysPage(q *request) {
	c.keys(q, http.StatusOK, keysData{})
}

// keys renders the keys page with d, listing the keys (of the owner in
// the query, if any).
func (c *Console) keys(q *request, status int, d keysData) {
	if !c.keysAllowed(q) {
		return
	}
	owner, problem := formValue(q.r.URL.Query(), "owner", cache.MaxKeyOwnerLen)
	if problem != "" {
		d.Error, status = problem, http.StatusBadRequest
	}
	d.Owner = owner
	target := logout.KeysPath
	if owner != "" {
		target += "?" + url.Values{"owner": {owner}}.Encode()
	}
	a, err := c.call(q, c.cfg.Keys, http.MethodGet, target, nil)
	var list logout.KeyList
	switch {
	case err != nil || a.status != http.StatusOK:
		if d.Error == "" {
			d.Error = "The keys could not be listed."
			if a != nil {
				d.Error = a.message()
			}
		}
	case json.Unmarshal(a.body.Bytes(), &list) != nil:
		d.Error = "The keys could not be read."
	}
	// The newest first, at most maxKeysShown: the owner filter finds
	// the rest.
	slices.Reverse(list.Keys)
	if len(list.Keys) > maxKeysShown {
		d.More = len(list.Keys) - maxKeysShown
		list.Keys = list.Keys[:maxKeysShown]
	}
	d.Keys = list.Keys
	c.render(q.w, q.r, status, "keys", q, d)
}

// keysAllowed reports whether the keys page exists and q may use it; if
// not it answers 404 or 403.
func (c *Console) keysAllowed(q *request) bool {
	if c.cfg.Keys == nil {
		c.fail(q.w, q.r, q, http.StatusNotFound, "API keys are not available here.")
		return false
	}
	return c.need(q, logout.RoleKeys)
}

func (c *Console) createKey(q *request) {
	if !c.keysAllowed(q) {
		return
	}
	f := q.r.PostForm
	body := map[string]any{}
	var problems []string
	for _, name := range []string{"owner", "expires_in", "description"} {
		v, problem := formValue(f, name, cache.MaxTextLen)
		if problem != "" {
			problems = append(problems, problem)
		}
		if v != "" {
			body[name] = v
		}
	}
	scopes, problem := formValue(f, "scopes", cache.MaxTextLen)
	if problem != "" {
		problems = append(problems, problem)
	}
	if s := strings.FieldsFunc(scopes, func(r rune) bool { return r == ',' || r == ' ' }); len(s) > 0 {
		body["scopes"] = s
	}
	if len(problems) > 0 {
		c.keys(q, http.StatusBadRequest, keysData{Error: strings.Join(problems, "; ")})
		return
	}
	c.keyAction(q, http.MethodPost, logout.KeysPath, body, http.StatusCreated, "")
}

func (c *Console) rotateKey(q *request) {
	id, ok := c.keyID(q)
	if !ok {
		return
	}
	body := map[string]string{}
	grace, problem := formValue(q.r.PostForm, "grace", 32)
	if problem != "" {
		c.keys(q, http.StatusBadRequest, keysData{Error: problem})
		return
	}
	if grace != "" {
		body["grace"] = grace
	}
	c.keyAction(q, http.MethodPost, logout.KeysPath+"/"+url.PathEscape(id)+"/rotate", body, http.StatusCreated, "")
}

func (c *Console) revokeKey(q *request) {
	id, ok := c.keyID(q)
	if !ok {
		return
	}
	c.keyAction(q, http.MethodDelete, logout.KeysPath+"/"+url.PathEscape(id), nil, http.StatusOK, "Key "+id+" revoked.")
}

// keyID returns the form's key id, or answers the keys page with 400.
func (c *Console) keyID(q *request) (string, bool) {
	if !c.keysAllowed(q) {
		return "", false
	}
	id, problem := formValue(q.r.PostForm, "id", 128)
	if problem == "" && (id == "" || strings.ContainsAny(id, "/?#%")) {
		problem = "id: not a key id"
	}
	if problem != "" {
		c.keys(q, http.StatusBadRequest, keysData{Error: problem})
		return "", false
	}
	return id, true
}

// keyAction calls the keys API and renders the keys page with its
// outcome: the new key (shown this once) or done.
func (c *Console) keyAction(q *request, method, target string, body any, want int, done string) {
	a, err := c.call(q, c.cfg.Keys, method, target, body)
	if err != nil {
		c.keys(q, http.StatusBadRequest, keysData{Error: "The request could not be sent."})
		return
	}
	if a.status != want {
		c.keys(q, clientStatus(a.status), keysData{Error: a.message()})
		return
	}
	d := keysData{Done: done}
	if want == http.StatusCreated {
		var ck logout.CreatedKey
		if json.Unmarshal(a.body.Bytes(), &ck) != nil {
			d.Error = "The key was made, but the answer could not be read."
		} else {
			d.Created = &ck
		}
	}
	c.keys(q, http.StatusOK, d)
}
