package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/propagate"
)

// sessionAuthorityKey is issuers[].session_authority: introspect.Issuer
// does not know it (introspect never imports the outbound room), so the
// config reads it apart, into Config.SessionAuthorities.
const sessionAuthorityKey = "session_authority"

var (
	issuerType           = reflect.TypeOf(introspect.Issuer{})
	sessionAuthorityType = reflect.TypeOf(propagate.Config{})
)

// extraKey returns the type of a key that t does not declare but the
// config reads apart.
func extraKey(t reflect.Type, key string) (reflect.Type, bool) {
	if t == issuerType && key == sessionAuthorityKey {
		return sessionAuthorityType, true
	}
	return nil, false
}

// decodeSessionAuthorities returns issuers[i].session_authority of doc,
// indexed like issuers (nil where an issuer names none).
func decodeSessionAuthorities(doc *yaml.Node) ([]*propagate.Config, []error) {
	var issuers *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "issuers" {
			issuers = doc.Content[i+1]
		}
	}
	if issuers == nil || issuers.Kind != yaml.SequenceNode {
		return nil, nil
	}
	out := make([]*propagate.Config, len(issuers.Content))
	var errs []error
	for i, is := range issuers.Content {
		if is.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(is.Content); j += 2 {
			if is.Content[j].Value != sessionAuthorityKey {
				continue
			}
			var sa propagate.Config
			if err := is.Content[j+1].Decode(&sa); err != nil {
				errs = append(errs, fmt.Errorf("issuers[%d].%s: %w", i, sessionAuthorityKey, err))
				continue
			}
			out[i] = &sa
		}
	}
	return out, errs
}

// validateSessionAuthorities reports the problems of every
// session_authority with its YAML path.
func (c *Config) validateSessionAuthorities() []error {
	var errs []error
	for i, sa := range c.SessionAuthorities {
		if sa != nil {
			errs = append(errs, prefixed(fmt.Sprintf("issuers[%d].%s", i, sessionAuthorityKey), sa.Validate())...)
		}
	}
	return errs
}

// userIDClaims maps each issuer whose session authority names users by
// another claim than sub (user_id_claim; entra: oid by default) to that
// claim: the gateway learns sub → user id from its verified tokens and
// logins (issue 12).
func (c *Config) userIDClaims() map[string]string {
	m := map[string]string{}
	for i, sa := range c.SessionAuthorities {
		if sa == nil {
			continue
		}
		if claim := sa.WithDefaults().UserIDClaim; claim != "sub" {
			m[c.Issuers[i].Issuer] = claim
		}
	}
	return m
}

// newTransmitter builds the SSF transmitter of ssf.receivers, its signing
// key in data_dir; nil without receivers. A key file that cannot be used
// is logged, never fatal: /readyz reports it and the SETs wait for it.
func newTransmitter(cfg *Config, log *slog.Logger) (*propagate.Transmitter, error) {
	if len(cfg.SSF.Receivers) == 0 {
		return nil, nil
	}
	keys, err := propagate.OpenKeyRing(filepath.Join(cfg.DataDir, propagate.KeyFile), nil)
	if err != nil {
		log.Error("ssf transmitter: signing key unusable; SETs wait until it is fixed (see /readyz)", "error", err)
	}
	return propagate.NewTransmitter(propagate.TransmitterConfig{
		Issuer: cfg.PublicURL, Receivers: cfg.SSF.Receivers, Keys: keys, Logger: log,
	})
}

// newPropagation builds the worker that ends revoked users' sessions at
// their issuers' session authorities and pushes SETs to ssf.receivers
// (tx); nil when there is neither.
func newPropagation(cfg *Config, tx *propagate.Transmitter, store propagate.Store, au *audit.Log, log *slog.Logger, reg prometheus.Registerer) (*propagate.Worker, error) {
	var bs []propagate.Binding
	for i, sa := range cfg.SessionAuthorities {
		if sa == nil {
			continue
		}
		auth, err := propagate.New(*sa, &http.Client{}, log)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d].%s: %w", i, sessionAuthorityKey, err)
		}
		bs = append(bs, propagate.Binding{Issuer: cfg.Issuers[i].Issuer, Config: *sa, Authority: auth})
	}
	if len(bs) == 0 && tx == nil {
		return nil, nil
	}
	wc := propagate.WorkerConfig{Store: store, Authorities: bs, SSF: tx, Metrics: reg, Logger: log}
	if au != nil {
		wc.Audit = targetAudit{au}
	}
	return propagate.NewWorker(wc)
}

// targetAudit writes a target's outcome to the audit log.
type targetAudit struct{ log *audit.Log }

func (a targetAudit) Target(ctx context.Context, t cache.Target) error {
	return a.log.Append(ctx, audit.RecordOfTarget(t))
}
