package propagate

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/oidcgate/oidcgate/clock"
)

// New returns the Authority that cfg describes. It validates cfg (the
// error lists every problem), applies the defaults and starts nothing: the
// admin token is requested on first use. client makes every call; New
// copies it and makes the copy follow no redirect. A nil client means one
// with a 10s timeout; a nil logger discards. Calls are logged at debug
// level, admin token renewals at info, never with a secret.
func New(cfg Config, client *http.Client, logger *slog.Logger) (Authority, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("propagate: session_authority: %w", err)
	}
	cfg = cfg.WithDefaults()
	if client == nil {
		client = &http.Client{Timeout: defaultCallTimeout}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := clock.Or(cfg.Clock).Now
	name := cfg.Type + " " + strings.TrimSuffix(cfg.URL, "/")
	if cfg.Type == TypeKeycloak {
		name += "/realms/" + cfg.Realm
	}
	logger = logger.With(slog.String("authority", name))

	var cred credential
	switch {
	case cfg.APIToken != "" && cfg.Type == TypeOkta:
		// https://developer.okta.com/docs/api/openapi/okta-management/guides/overview/ (API token authentication).
		cred = staticCredential{header: "SSWS " + cfg.APIToken}
	case cfg.APIToken != "":
		cred = staticCredential{header: "Bearer " + cfg.APIToken}
	case cfg.ClientID != "":
		cc := &clientCredentials{
			tokenURL: cfg.TokenURL,
			clientID: cfg.ClientID,
			secret:   cfg.ClientSecret,
			client:   noRedirects(client),
			now:      now,
			logger:   logger,
			name:     name,
		}
		if cfg.PrivateKey != "" {
			key, alg, err := parsePrivateKey(string(cfg.PrivateKey))
			if err != nil {
				return nil, fmt.Errorf("propagate: session_authority: private_key: %w", err)
			}
			cc.assertion = &privateKeyJWT{clientID: cfg.ClientID, audience: cfg.TokenURL, kid: cfg.PrivateKeyID, key: key, alg: alg}
			// The scopes of EndUser and RevokeClient
			// (https://developer.okta.com/docs/guides/implement-oauth-for-okta-serviceapp/main/).
			cc.scope = "okta.users.manage okta.apps.manage"
		}
		if cfg.Type == TypeEntra {
			// Microsoft's token endpoint documents the secret in the body
			// and needs the Graph scope
			// (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
			cc.post, cc.scope = true, graphScope
		}
		cred = cc
	}
	c := newConn(name, cfg.URL, client, cred, now, logger)
	switch cfg.Type {
	case TypeKeycloak:
		return &keycloak{c: c, realm: url.PathEscape(cfg.Realm)}, nil
	case TypeOkta:
		return &okta{c: c}, nil
	case TypeEntra:
		return &entra{c: c}, nil
	default:
		return &hydra{c: c}, nil
	}
}

// noRedirects returns a copy of client that follows no redirect.
func noRedirects(client *http.Client) *http.Client {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}
