package logout

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/introspect"
)

// KeysPath is where the key admin API is mounted (and every path under
// it).
const KeysPath = "/admin/keys"

// Audit events of API keys. Revoking a key (DELETE, /revoke, a client
// revocation's reach, max_idle) is a "revocation" record of kind key.
const (
	EventKeyCreated = "key_created"
	EventKeyRotated = "key_rotated"
	EventKeyExpired = "key_expired"
)

// Defaults of KeysConfig.
const (
	DefaultKeyLifetime    = 90 * 24 * time.Hour
	DefaultKeyMaxLifetime = 365 * 24 * time.Hour
	DefaultKeysPerOwner   = 100
	DefaultKeysTotal      = 100_000
	// maxKeyGrace bounds a rotation's grace.
	maxKeyGrace = 30 * 24 * time.Hour
	// keySweepInterval paces the expiry and max_idle sweep.
	keySweepInterval = time.Minute
	// maxKeyBody bounds the body of POST /admin/keys and rotate.
	maxKeyBody = 16 << 10
	// keyAuditTimeout bounds the write of one key audit record.
	keyAuditTimeout = 10 * time.Second
)

// KeysConfig is the YAML key `api_keys` as far as this package is
// concerned (the gateway takes `header`).
type KeysConfig struct {
	// MaxLifetime caps a key's expires_in; 0 means 365 days.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// MaxIdle, when positive, disables (revokes, audited) a key unused for
	// that long; 0 means never.
	MaxIdle time.Duration `yaml:"max_idle"`
	// MaxPerOwner and MaxTotal cap the key records stored (revoked and
	// expired ones count until their record is forgotten, 7 days after
	// expiry); 0 means 100 and 100,000.
	MaxPerOwner int `yaml:"max_per_owner"`
	MaxTotal    int `yaml:"max_total"`
}

// Validate reports every problem of c at once, paths relative to
// `api_keys`.
func (c KeysConfig) Validate() error {
	var errs []error
	if c.MaxLifetime < 0 {
		errs = append(errs, errors.New("max_lifetime: must not be negative"))
	}
	if c.MaxIdle < 0 {
		errs = append(errs, errors.New("max_idle: must not be negative"))
	}
	if c.MaxPerOwner < 0 || c.MaxTotal < 0 {
		errs = append(errs, errors.New("max_per_owner, max_total: must not be negative"))
	}
	return errors.Join(errs...)
}

func (c KeysConfig) withDefaults() KeysConfig {
	c.MaxLifetime = cmp.Or(c.MaxLifetime, DefaultKeyMaxLifetime)
	c.MaxPerOwner = cmp.Or(c.MaxPerOwner, DefaultKeysPerOwner)
	c.MaxTotal = cmp.Or(c.MaxTotal, DefaultKeysTotal)
	return c
}

// KeyRecords is the part of the store that keeps API key records;
// *cache.Store and *cache.Redis satisfy it.
type KeyRecords interface {
	PutKey(ctx context.Context, k cache.KeyRecord) error
	Key(id string) (cache.KeyRecord, bool)
	Keys(owner string) ([]cache.KeyRecord, int)
	CheckKey(c *cache.KeyCheck) cache.KeyState
	Scheduled(issuer string, kind cache.Kind, value string) (cache.Entry, bool)
}

var (
	_ KeyRecords = (*cache.Store)(nil)
	_ KeyRecords = (*cache.Redis)(nil)
)

// KeyAdminConfig configures NewKeyAdmin.
type KeyAdminConfig struct {
	// Config supplies Admin (the tokens), Store (revocations: pass an
	// *audit.Store to audit them), Lifetimes (the issuers whose client
	// revocations reach keys), Replays (so that one replica audits an
	// expiry), Now, Logger and Metrics.
	Config Config
	Keys   KeysConfig
	// Records keeps the key records. Required.
	Records KeyRecords
	// Audit receives key_created, key_rotated and key_expired. Nil
	// writes none.
	Audit *audit.Log
	// Routes are the names a key's routes may list; nil accepts any.
	Routes []string
}

// KeyAdmin serves /admin/keys and, in Run, disables idle keys and audits
// expired ones. It is safe for concurrent use.
type KeyAdmin struct {
	auth    *Authenticator
	keys    KeysConfig
	store   Store
	records KeyRecords
	audit   *audit.Log
	replays Replays
	issuers []string
	routes  []string
	now     func() time.Time
	clk     clock.Clock
	log     *slog.Logger
}

// NewKeyAdmin validates cfg and registers the oidcgate_api_keys gauge.
// It starts nothing.
func NewKeyAdmin(cfg KeyAdminConfig) (*KeyAdmin, error) {
	errs := prefixed("admin.", cfg.Config.Admin.Validate())
	errs = append(errs, prefixed("api_keys.", cfg.Keys.Validate())...)
	if cfg.Config.Store == nil || cfg.Records == nil {
		errs = append(errs, errors.New("store: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	c := cfg.Config.withDefaults()
	a := &KeyAdmin{
		auth:    NewAuthenticator(c.Admin, c.Logger),
		keys:    cfg.Keys.withDefaults(),
		store:   c.Store,
		records: cfg.Records,
		audit:   cfg.Audit,
		replays: c.Replays,
		routes:  cfg.Routes,
		now:     c.Clock.Now,
		clk:     c.Clock,
		log:     c.Logger,
	}
	for iss := range c.Lifetimes {
		a.issuers = append(a.issuers, iss)
	}
	slices.Sort(a.issuers)
	if c.Metrics != nil {
		if err := c.Metrics.Register(keyStates{a}); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("logout: metrics: %w", err)
			}
		}
	}
	return a, nil
}

// keyStates is the oidcgate_api_keys gauge, counted at each scrape.
type keyStates struct{ a *KeyAdmin }

var keyStatesDesc = prometheus.NewDesc("oidcgate_api_keys", "API key records stored, by state (active, rotating, expired, revoked, idle).", []string{"state"}, nil)

func (keyStates) Describe(ch chan<- *prometheus.Desc) { ch <- keyStatesDesc }

func (k keyStates) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{keyActive: 0, keyRotating: 0, keyExpired: 0, keyRevoked: 0, keyIdle: 0}
	recs, _ := k.a.records.Keys("")
	now := k.a.now()
	for _, r := range recs {
		st, _ := k.a.state(r, now)
		counts[st]++
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(keyStatesDesc, prometheus.GaugeValue, float64(n), st)
	}
}

// The states of a key in the API.
const (
	keyActive   = "active"
	keyRotating = "rotating" // active, with a scheduled revocation
	keyExpired  = "expired"
	keyRevoked  = "revoked"
	keyIdle     = "idle"
)

// state judges r at now; the time is when a rotating key dies.
func (a *KeyAdmin) state(r cache.KeyRecord, now time.Time) (string, time.Time) {
	c := cache.KeyCheck{ID: r.ID, Hash: r.Hash, Issuers: a.issuers, MaxIdle: a.keys.MaxIdle, Now: now}
	switch a.records.CheckKey(&c) {
	case cache.KeyExpired:
		return keyExpired, time.Time{}
	case cache.KeyRevoked, cache.KeyUnknown:
		return keyRevoked, time.Time{}
	case cache.KeyIdle:
		return keyIdle, time.Time{}
	}
	if e, ok := a.records.Scheduled("", cache.KindKey, r.ID); ok {
		return keyRotating, e.EffectiveAt
	}
	return keyActive, time.Time{}
}

// KeyView is a key record as the API shows it: never the key or its hash.
type KeyView struct {
	ID          string    `json:"id"`
	Owner       string    `json:"owner"`
	Scopes      []string  `json:"scopes"`
	Routes      []string  `json:"routes,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	LastUsedAt  time.Time `json:"last_used_at"`
	// State is active, rotating, expired, revoked or idle.
	State string `json:"state"`
	// RevokesAt is when a rotating key dies.
	RevokesAt time.Time `json:"revokes_at,omitzero"`
}

func (a *KeyAdmin) view(r cache.KeyRecord, now time.Time) KeyView {
	st, at := a.state(r, now)
	return KeyView{
		ID: r.ID, Owner: r.Owner, Scopes: nonNil(r.Scopes), Routes: r.Routes, Description: r.Description,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt,
		State: st, RevokesAt: at,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CreatedKey is the answer to a create or rotate: the key, shown once.
type CreatedKey struct {
	Key    string  `json:"key"`
	Record KeyView `json:"record"`
}

// ServeHTTP authenticates the request, then serves POST /admin/keys
// (create), GET /admin/keys?owner= (list), POST /admin/keys/{id}/rotate
// and DELETE /admin/keys/{id}, each with the role keys. Every answer is
// JSON and not cacheable.
func (a *KeyAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := a.auth.Authorize(w, r, RoleKeys)
	if !ok {
		return
	}
	initiator := "admin:" + p.Name
	rest, _ := strings.CutPrefix(r.URL.Path, KeysPath)
	switch parts := strings.Split(strings.TrimPrefix(rest, "/"), "/"); {
	case rest == "" || rest == "/":
		switch r.Method {
		case http.MethodPost:
			a.create(w, r, initiator)
		case http.MethodGet:
			a.list(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
		}
	case len(parts) == 1:
		if r.Method != http.MethodDelete {
			w.Header().Set("Allow", "DELETE")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
			return
		}
		a.revoke(w, r, parts[0], initiator)
	case len(parts) == 2 && parts[1] == "rotate":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
			return
		}
		a.rotate(w, r, parts[0], initiator)
	default:
		writeError(w, http.StatusNotFound, "not_found", "")
	}
}

// CreateKeyRequest is the body of POST /admin/keys.
type CreateKeyRequest struct {
	Owner  string   `json:"owner"`
	Scopes []string `json:"scopes"`
	// ExpiresIn is a Go duration; "" means 90 days (at most max_lifetime).
	ExpiresIn   string   `json:"expires_in"`
	Description string   `json:"description"`
	Routes      []string `json:"routes"`
}

// RotateKeyRequest is the body of POST /admin/keys/{id}/rotate.
type RotateKeyRequest struct {
	// Grace is how long the old key keeps working (a Go duration); "" or
	// "0s" ends it at once.
	Grace string `json:"grace"`
}

// decodeStrict decodes one JSON object with only v's fields into v; a
// problem is a requestError naming the field when it can.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if r.ContentLength == 0 && optional {
		return nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return badRequest("Content-Type must be application/json")
	}
	body, problem := readLimited(w, r, maxKeyBody)
	if problem != "" {
		return badRequest("%s", problem)
	}
	if !utf8.Valid(body) {
		return badRequest("body: not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return badRequest("%s: not a %s", truncate(te.Field, 32), te.Type.Kind())
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("unknown field %s", truncate(strings.TrimPrefix(err.Error(), "json: unknown field "), 34))
		}
		return badRequest("body: not a JSON object")
	}
	if dec.More() {
		return badRequest("body: data after the JSON object")
	}
	return nil
}

func (a *KeyAdmin) create(w http.ResponseWriter, r *http.Request, initiator string) {
	var req CreateKeyRequest
	if err := decodeStrict(w, r, &req, false); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	now := a.now().UTC()
	life, err := a.lifetime(req.ExpiresIn)
	if err == nil {
		err = a.checkFields(req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	rec := cache.KeyRecord{
		Owner: req.Owner, Scopes: req.Scopes, Routes: req.Routes, Description: req.Description,
		CreatedBy: initiator, CreatedAt: now, ExpiresAt: now.Add(life),
	}
	key, ok := a.issue(w, r, &rec)
	if !ok {
		return
	}
	a.record(r.Context(), audit.Record{
		Event: EventKeyCreated, Trigger: audit.TriggerAdmin, Initiator: initiator,
		Reason:  "owner " + rec.Owner,
		Targets: []audit.Target{{Kind: cache.KindKey, Value: rec.ID}},
	})
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "api key created", slog.String("key_id", rec.ID), slog.String("owner", rec.Owner), slog.String("initiator", initiator))
	writeJSON(w, http.StatusCreated, CreatedKey{Key: key, Record: a.view(rec, now)})
}

// lifetime parses expires_in, defaulting to 90 days capped by
// max_lifetime.
func (a *KeyAdmin) lifetime(s string) (time.Duration, error) {
	if s == "" {
		return min(DefaultKeyLifetime, a.keys.MaxLifetime), nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, badRequest("expires_in: not a duration such as 720h")
	case d <= 0:
		return 0, badRequest("expires_in: must be positive")
	case d > a.keys.MaxLifetime:
		return 0, badRequest("expires_in: longer than api_keys.max_lifetime (%s)", a.keys.MaxLifetime)
	}
	return d, nil
}

// checkFields judges the record fields of req with the store's bounds,
// naming the field.
func (a *KeyAdmin) checkFields(req CreateKeyRequest) error {
	probe := cache.KeyRecord{ID: "x", Owner: "x", CreatedAt: time.Unix(0, 0), ExpiresAt: time.Unix(1, 0)}
	for _, f := range []struct {
		name string
		set  func(*cache.KeyRecord)
	}{
		{"owner", func(k *cache.KeyRecord) { k.Owner = req.Owner }},
		{"scopes", func(k *cache.KeyRecord) { k.Scopes = req.Scopes }},
		{"routes", func(k *cache.KeyRecord) { k.Routes = req.Routes }},
		{"description", func(k *cache.KeyRecord) { k.Description = req.Description }},
	} {
		k := probe
		f.set(&k)
		if err := k.Validate(); err != nil {
			return badRequest("%s: %s", f.name, strings.TrimPrefix(err.Error(), cache.ErrInvalidKey.Error()+": "+f.name+": "))
		}
	}
	if a.routes != nil {
		for _, rt := range req.Routes {
			if !slices.Contains(a.routes, rt) {
				return badRequest("routes: %q is not the name of a route", truncate(rt, 64))
			}
		}
	}
	return nil
}

// issue checks the caps, makes a key for rec and stores rec; on failure
// it has answered.
func (a *KeyAdmin) issue(w http.ResponseWriter, r *http.Request, rec *cache.KeyRecord) (string, bool) {
	mine, total := a.records.Keys(rec.Owner)
	switch {
	case len(mine) >= a.keys.MaxPerOwner:
		writeError(w, http.StatusConflict, "too_many_keys", fmt.Sprintf("owner: already holds %d keys (api_keys.max_per_owner); revoked and expired keys count until 7 days after they expire", len(mine)))
		return "", false
	case total >= a.keys.MaxTotal:
		writeError(w, http.StatusConflict, "too_many_keys", fmt.Sprintf("the store already holds %d keys (api_keys.max_total)", total))
		return "", false
	}
	key, id, hash, err := introspect.NewAPIKey()
	if err == nil {
		rec.ID, rec.Hash = id, hash
		err = a.records.PutKey(r.Context(), *rec)
	}
	if err != nil {
		a.log.LogAttrs(r.Context(), slog.LevelError, "api key not stored", slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "server_error", "key not stored")
		return "", false
	}
	return key, true
}

// record appends rec to the audit log, if any; a failure is logged (the
// key exists whatever the audit says).
func (a *KeyAdmin) record(ctx context.Context, rec audit.Record) {
	if a.audit == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keyAuditTimeout)
	defer cancel()
	if err := a.audit.Append(actx, rec); err != nil {
		a.log.LogAttrs(ctx, slog.LevelError, "api key audit record not written", slog.String("event", rec.Event), slog.Any("error", err))
	}
}

// KeyList is the answer to GET /admin/keys.
type KeyList struct {
	Keys []KeyView `json:"keys"`
}

func (a *KeyAdmin) list(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "query: not valid")
		return
	}
	for name, vals := range q {
		if name != "owner" {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("unknown parameter %q", truncate(name, 32)))
			return
		}
		if len(vals) != 1 {
			writeError(w, http.StatusBadRequest, "invalid_request", "owner: given more than once")
			return
		}
	}
	owner := q.Get("owner")
	if len(owner) > cache.MaxKeyOwnerLen {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("owner: longer than %d bytes", cache.MaxKeyOwnerLen))
		return
	}
	recs, _ := a.records.Keys(owner)
	slices.SortFunc(recs, func(x, y cache.KeyRecord) int {
		return cmp.Or(x.CreatedAt.Compare(y.CreatedAt), strings.Compare(x.ID, y.ID))
	})
	now := a.now()
	out := KeyList{Keys: make([]KeyView, 0, len(recs))}
	for _, rec := range recs {
		out.Keys = append(out.Keys, a.view(rec, now))
	}
	writeJSON(w, http.StatusOK, out)
}

// find returns the record of id or answers 404.
func (a *KeyAdmin) find(w http.ResponseWriter, id string) (cache.KeyRecord, bool) {
	rec, ok := a.records.Key(id)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no key has this id")
	}
	return rec, ok
}

// revokeEntry is the key entry revoking rec at now (scheduled at
// effective when not zero), kept until its record is forgotten.
func revokeEntry(rec cache.KeyRecord, now, effective time.Time, reason, initiator string) cache.Entry {
	exp := rec.ExpiresAt.Add(cache.KeyRetention)
	if !exp.After(now) {
		exp = now.Add(cache.KeyRetention)
	}
	if exp.Before(effective) {
		exp = effective.Add(cache.KeyRetention)
	}
	return cache.Entry{Kind: cache.KindKey, Value: rec.ID, RevokedAt: now, EffectiveAt: effective, ExpiresAt: exp, Reason: reason, Initiator: initiator}
}

func (a *KeyAdmin) revoke(w http.ResponseWriter, r *http.Request, id, initiator string) {
	rec, ok := a.find(w, id)
	if !ok {
		return
	}
	now := a.now().UTC()
	if _, err := a.store.Revoke(r.Context(), revokeEntry(rec, now, time.Time{}, "admin", initiator)); err != nil {
		a.log.LogAttrs(r.Context(), slog.LevelError, "api key revocation not stored", slog.String("key_id", id), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "server_error", "revocation not stored")
		return
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "api key revoked", slog.String("key_id", id), slog.String("initiator", initiator))
	writeJSON(w, http.StatusOK, a.view(rec, now))
}

func (a *KeyAdmin) rotate(w http.ResponseWriter, r *http.Request, id, initiator string) {
	old, ok := a.find(w, id)
	if !ok {
		return
	}
	var req RotateKeyRequest
	if err := decodeStrict(w, r, &req, true); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	var grace time.Duration
	if req.Grace != "" {
		d, err := time.ParseDuration(req.Grace)
		if err != nil || d < 0 || d > maxKeyGrace {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("grace: not a duration from 0s to %s", maxKeyGrace))
			return
		}
		grace = d
	}
	now := a.now().UTC()
	if st, _ := a.state(old, now); st != keyActive && st != keyRotating {
		writeError(w, http.StatusConflict, "key_not_active", "the key is "+st+"; create a new one instead")
		return
	}
	life := min(old.ExpiresAt.Sub(old.CreatedAt), a.keys.MaxLifetime)
	rec := cache.KeyRecord{
		Owner: old.Owner, Scopes: old.Scopes, Routes: old.Routes, Description: old.Description,
		CreatedBy: initiator, CreatedAt: now, ExpiresAt: now.Add(life),
	}
	key, ok := a.issue(w, r, &rec)
	if !ok {
		return
	}
	var effective time.Time
	if grace > 0 {
		effective = now.Add(grace)
	}
	if _, err := a.store.Revoke(r.Context(), revokeEntry(old, now, effective, "rotated to "+rec.ID, initiator)); err != nil {
		// The new key exists; the old one still works. Say so.
		a.log.LogAttrs(r.Context(), slog.LevelError, "rotated api key not revoked", slog.String("key_id", id), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "server_error", "new key "+rec.ID+" created but the old key's revocation was not stored; revoke it")
		return
	}
	a.record(r.Context(), audit.Record{
		Event: EventKeyRotated, Trigger: audit.TriggerAdmin, Initiator: initiator,
		Reason:  "grace " + grace.String(),
		Targets: []audit.Target{{Kind: cache.KindKey, Value: old.ID}, {Kind: cache.KindKey, Value: rec.ID}},
	})
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "api key rotated", slog.String("key_id", id), slog.String("new_key_id", rec.ID), slog.Duration("grace", grace))
	writeJSON(w, http.StatusCreated, CreatedKey{Key: key, Record: a.view(rec, now)})
}

// Run sweeps the keys every minute until ctx is done: it revokes (reason
// max_idle) the keys unused for api_keys.max_idle and audits each key's
// expiry once across replicas. It returns nil.
func (a *KeyAdmin) Run(ctx context.Context) error {
	t, tick := a.clk.NewTicker(keySweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			a.Sweep(ctx)
		}
	}
}

// Sweep is one round of Run.
func (a *KeyAdmin) Sweep(ctx context.Context) {
	recs, _ := a.records.Keys("")
	now := a.now().UTC()
	for _, rec := range recs {
		switch st, _ := a.state(rec, now); st {
		case keyIdle:
			if !a.once(ctx, "key-idle:"+rec.ID, rec) {
				continue
			}
			if _, err := a.store.Revoke(ctx, revokeEntry(rec, now, time.Time{}, "max_idle", "oidcgate:max_idle")); err != nil {
				a.log.LogAttrs(ctx, slog.LevelError, "idle api key not revoked", slog.String("key_id", rec.ID), slog.Any("error", err))
			}
		case keyExpired:
			if a.once(ctx, "key-expired:"+rec.ID, rec) {
				a.record(ctx, audit.Record{
					Event: EventKeyExpired, Initiator: "oidcgate:expiry", Reason: "owner " + rec.Owner,
					Targets: []audit.Target{{Kind: cache.KindKey, Value: rec.ID}},
				})
			}
		}
	}
}

// once reports whether this replica is the first to act on key (the
// shared replay cache decides); without one it always is.
func (a *KeyAdmin) once(ctx context.Context, key string, rec cache.KeyRecord) bool {
	if a.replays == nil {
		return true
	}
	first, err := a.replays.FirstSeen(ctx, key, rec.ExpiresAt.Add(cache.KeyRetention))
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelWarn, "api key sweep: replay cache failed", slog.String("key_id", rec.ID), slog.Any("error", err))
		return false
	}
	return first
}
