package logout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// Store is the part of the revocation store this package uses.
// *cache.Store satisfies it.
type Store interface {
	// Revoke stores e; a nil error means the entry is durable. It returns
	// the entry as stored (a repeated revocation keeps the later times).
	Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error)
	// List returns one page of entries and the cursor of the next page
	// ("" after the last).
	List(ctx context.Context, o cache.ListOptions) ([]cache.Entry, string, error)
	// Get returns the entry stored for (issuer, kind, value), if any.
	Get(issuer string, kind cache.Kind, value string) (cache.Entry, bool)
}

var _ Store = (*cache.Store)(nil)

// Values of the result label of oidcgate_admin_revocations_total (and
// resultForbidden, shared with oidcgate_universal_logout_total).
const (
	resultOK           = "ok"
	resultInvalid      = "invalid"
	resultUnauthorized = "unauthorized"
	resultError        = "error"
)

// kindUnknown labels a request refused before its kind was known.
const kindUnknown = "unknown"

// realm is the WWW-Authenticate realm of the admin API.
const realm = "oidcgate-admin"

// Admin serves the admin revocation API: POST revokes, GET lists. It is
// safe for concurrent use. It answers every path it is mounted at; the CLI
// mounts it at /admin/revocations on the internal listener only.
type Admin struct {
	auth        *Authenticator
	issuers     []string
	retention   retention
	store       Store
	now         func() time.Time
	clk         clock.Clock
	log         *slog.Logger
	revocations *prometheus.CounterVec
	// targetSrc and plan list a revocation's targets (see SetTargets).
	targetSrc TargetSource
	plan      TargetPlanner
	// applier answers ?wait=replicas (see SetApplier).
	applier Applier
}

// NewAdmin validates cfg, applies its defaults and registers the metrics.
func NewAdmin(cfg Config) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	cfg = cfg.withDefaults()
	revocations, err := registerCounter(cfg.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_admin_revocations_total",
		Help: "Revocation requests to the admin API, by entry kind and result (ok, invalid, unauthorized, forbidden, error).",
	}, []string{"kind", "result"}))
	if err != nil {
		return nil, err
	}
	for _, k := range cache.Kinds {
		revocations.WithLabelValues(string(k), resultOK)
		revocations.WithLabelValues(string(k), resultError)
	}
	return &Admin{
		auth:        NewAuthenticator(cfg.Admin, cfg.Logger),
		issuers:     slices.Sorted(maps.Keys(cfg.Lifetimes)),
		retention:   cfg.retention(),
		store:       cfg.Store,
		now:         cfg.Clock.Now,
		clk:         cfg.Clock,
		log:         cfg.Logger,
		revocations: revocations,
	}, nil
}

// registerCounter registers c with reg, or returns the collector of the
// same name registered before. A nil reg registers nothing.
// resultCounter registers a counter of one label, result, with each of
// results present at zero.
func resultCounter(reg prometheus.Registerer, name, help string, results ...string) (*prometheus.CounterVec, error) {
	c, err := registerCounter(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	for _, r := range results {
		c.WithLabelValues(r)
	}
	return c, nil
}

func registerCounter(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("logout: metrics: %w", err)
	}
	return c, nil
}

// ServeHTTP authenticates the request, then serves POST (revoke, role
// revoke) or GET (list, role read). Every answer is JSON and not
// cacheable.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := a.auth.Authenticate(w, r)
	if !ok {
		if r.Method == http.MethodPost {
			a.count(kindUnknown, resultUnauthorized)
		}
		return
	}
	switch r.Method {
	case http.MethodPost:
		if !a.auth.Permit(w, r, p, RoleRevoke) {
			a.count(kindUnknown, resultForbidden)
			return
		}
		a.revoke(w, r, "admin:"+p.Name)
	case http.MethodGet:
		if !a.auth.Permit(w, r, p, RoleRead) {
			return
		}
		a.list(w, r)
	default:
		// RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
	}
}

// Authenticator is the Admin's check of admin credentials and roles,
// for other admin endpoints of the same credentials (the console).
func (a *Admin) Authenticator() *Authenticator { return a.auth }

func (a *Admin) revoke(w http.ResponseWriter, r *http.Request, initiator string) {
	if !isJSON(r.Header.Get("Content-Type")) {
		a.count(kindUnknown, resultInvalid)
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		a.count(kindUnknown, resultInvalid)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("body larger than %d bytes", maxRevokeBody))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "body could not be read")
		return
	}
	wait, err := a.parseWait(r.URL.RawQuery)
	var e cache.Entry
	if err == nil {
		e, err = parseRevoke(body)
	}
	if err == nil {
		e, err = a.complete(e, initiator)
	}
	var re requestError
	switch {
	case errors.As(err, &re):
		kind := string(e.Kind)
		if kind == "" {
			kind = kindUnknown
		}
		a.count(kind, resultInvalid)
		writeError(w, http.StatusBadRequest, "invalid_request", string(re))
		return
	case err != nil:
		a.count(string(e.Kind), resultError)
		a.log.LogAttrs(r.Context(), slog.LevelError, "revocation not stored", slog.String("kind", string(e.Kind)), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "server_error", "revocation not stored")
		return
	}
	stored, err := a.store.Revoke(r.Context(), e)
	attrs := []slog.Attr{
		slog.String("kind", string(e.Kind)),
		slog.String("issuer", e.Issuer),
		slog.String("initiator", initiator),
		slog.String("value_sha256", digestPrefix(e.Value)),
	}
	if err != nil {
		a.count(string(e.Kind), resultError)
		a.log.LogAttrs(r.Context(), slog.LevelError, "revocation not stored", append(attrs, slog.Any("error", err))...)
		writeError(w, http.StatusInternalServerError, "server_error", "revocation not stored")
		return
	}
	a.count(string(e.Kind), resultOK)
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "revocation stored", attrs...)
	answer := revokeAnswer{Entry: stored}
	if wait > 0 {
		answer.Wait = a.waitReplicas(r.Context(), stored, wait)
	}
	writeJSON(w, http.StatusCreated, answer)
}

// complete resolves e's issuer and fills the times and initiator.
func (a *Admin) complete(e cache.Entry, initiator string) (cache.Entry, error) {
	if !e.Kind.Issuerless() {
		switch {
		case e.Issuer != "":
			if _, ok := a.retention.lifetimes[e.Issuer]; !ok {
				return e, badRequest("issuer: not a configured issuer")
			}
		case len(a.issuers) == 1:
			e.Issuer = a.issuers[0]
		case len(a.issuers) == 0:
			return e, badRequest("issuer: no issuer is configured; only session can be revoked")
		default:
			return e, badRequest("issuer: required when several issuers are configured")
		}
	}
	e.Initiator = initiator
	e.RevokedAt = a.now().UTC()
	if !e.EffectiveAt.IsZero() && e.EffectiveAt.Before(e.RevokedAt) {
		// A time already past: in force at once.
		e.EffectiveAt = e.RevokedAt
	}
	e.ExpiresAt = a.retention.expiresAt(e)
	// Every field was checked above; an invalid entry here means a broken
	// clock or config, which is the server's fault.
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("logout: %w", err)
	}
	return e, nil
}

// listResponse is the body of a GET answer.
type listResponse struct {
	Entries []cache.Entry `json:"entries"`
	// NextCursor is "" after the last page.
	NextCursor string `json:"next_cursor"`
}

func (a *Admin) list(w http.ResponseWriter, r *http.Request) {
	o, err := parseList(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	entries, next, err := a.store.List(r.Context(), o)
	switch {
	case errors.Is(err, cache.ErrInvalidListOptions):
		writeError(w, http.StatusBadRequest, "invalid_request", "cursor: not valid")
		return
	case err != nil:
		a.log.LogAttrs(r.Context(), slog.LevelError, "listing revocations failed", slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, "server_error", "revocations not listed")
		return
	}
	if entries == nil {
		entries = []cache.Entry{}
	}
	writeJSON(w, http.StatusOK, listResponse{Entries: entries, NextCursor: next})
}

func (a *Admin) count(kind, result string) {
	a.revocations.WithLabelValues(kind, result).Inc()
}

// isJSON reports whether a Content-Type is application/json with, if any,
// a UTF-8 charset.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// readBody reads at most maxRevokeBody bytes; a longer body yields an
// *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > maxRevokeBody {
		return nil, &http.MaxBytesError{Limit: maxRevokeBody}
	}
	if r.Body == nil {
		return nil, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxRevokeBody))
}

// digestPrefix identifies a value in logs without revealing it: the first
// 8 bytes of its SHA-256, in hex.
func digestPrefix(v string) string {
	d := sha256.Sum256([]byte(v))
	return hex.EncodeToString(d[:8])
}

// errorResponse is the body of every error answer.
type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, errorResponse{Error: code, Description: description})
}

// writeJSON encodes v before writing anything, so an encoding failure is
// answered 500 rather than with a partial body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
