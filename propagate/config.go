package propagate

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/oidcgate/oidcgate/clock"
)

// The session authority types.
const (
	TypeKeycloak = "keycloak"
	TypeOkta     = "okta"
	TypeEntra    = "entra"
	TypeHydra    = "hydra"
)

// Types lists every valid Config.Type.
var Types = []string{TypeKeycloak, TypeOkta, TypeEntra, TypeHydra}

// The triggers Config.On may list: where a revocation came from. Each is
// the YAML spelling of an audit trigger (see Propagates).
const (
	OnAdmin           = "admin"            // the admin API, `oidcgate revoke`
	OnSSF             = "ssf"              // a Shared Signals event
	OnBackchannel     = "backchannel"      // an OIDC back-channel logout
	OnFrontchannel    = "frontchannel"     // an OIDC front-channel logout
	OnRPLogout        = "rp_logout"        // sign-out at the gateway
	OnRevokeEndpoint  = "revoke_endpoint"  // RFC 7009 /revoke
	OnUniversalLogout = "universal_logout" // Universal Logout
)

// Triggers lists every valid entry of Config.On.
var Triggers = []string{OnAdmin, OnSSF, OnBackchannel, OnFrontchannel, OnRPLogout, OnRevokeEndpoint, OnUniversalLogout}

// auditTriggers maps the audit log's trigger names (audit.Trigger) to the
// YAML spelling of Config.On where they differ.
var auditTriggers = map[string]string{
	"backchannel_logout":  OnBackchannel,
	"frontchannel_logout": OnFrontchannel,
	"rfc7009":             OnRevokeEndpoint,
}

// DefaultEntraURL is the Microsoft Graph base URL used when an entra
// authority names none.
const DefaultEntraURL = "https://graph.microsoft.com/v1.0"

// Config is the YAML `issuers[].session_authority`: the system that holds
// the issuer's users' SSO sessions and refresh tokens, and how the gateway
// authenticates to its admin API. Zero values mean the documented default.
type Config struct {
	// Type is keycloak, okta, entra or hydra. Required.
	Type string `yaml:"type"`
	// URL is the authority's base URL: keycloak, the server base (without
	// /realms/...); okta, the org URL; entra, the Microsoft Graph base (""
	// means https://graph.microsoft.com/v1.0); hydra, the admin URL. An
	// https URL (http only on a loopback host) without credentials, query
	// or fragment. Required except for entra.
	URL string `yaml:"url"`
	// Realm is the Keycloak realm of the users. Required for keycloak,
	// refused for the others.
	Realm string `yaml:"realm"`
	// ClientID is the gateway's admin client, which gets its access token
	// with the client_credentials grant (RFC 6749 §4.4) from TokenURL.
	// Required for keycloak and entra; for okta, with PrivateKey instead
	// of APIToken; refused for hydra.
	ClientID string `yaml:"client_id"`
	// ClientSecret goes with ClientID (client_secret_basic, RFC 6749
	// §2.3.1; client_secret_post for entra). Refused for okta.
	ClientSecret Secret `yaml:"client_secret"`
	// TokenURL is where the admin token is requested; "" means, for
	// keycloak, {url}/realms/{realm}/protocol/openid-connect/token.
	// Required for entra (https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token)
	// and for okta with PrivateKey ({url}/oauth2/v1/token, the org
	// authorization server); refused for hydra.
	TokenURL string `yaml:"token_url"`
	// APIToken is a static admin credential: for okta (required), an API
	// token sent as "Authorization: SSWS {token}"; for hydra (optional), a
	// bearer token for whatever guards the admin API (Ory Network's API
	// key). Refused for keycloak and entra.
	APIToken Secret `yaml:"api_token"`
	// PrivateKey is the PEM private key (RSA of 2048 bits or more, or EC
	// P-256; PKCS#8, PKCS#1 or SEC 1) of an Okta service app, which gets
	// its admin token with private_key_jwt (RFC 7523 §2.2), the only
	// client authentication Okta accepts for tokens with Okta scopes. Okta
	// only, with ClientID and TokenURL, instead of APIToken.
	PrivateKey Secret `yaml:"private_key"`
	// PrivateKeyID is the kid of PrivateKey as registered with the app;
	// "" sends none (Okta then tries every key of the app).
	PrivateKeyID string `yaml:"private_key_id"`
	// UserIDClaim is the token claim that names the user at the authority;
	// "" means "sub", or "oid" for entra (Entra's sub is pairwise: it
	// differs per application and is not the user's object id).
	UserIDClaim string `yaml:"user_id_claim"`
	// On lists the triggers whose revocations are propagated to this
	// authority; nil means all of them. Whatever it says, a revocation that
	// the authority itself sent (its back-channel logout, its SSF event) is
	// never sent back to it.
	On []string `yaml:"on"`

	// Clock is the clock of the admin token's lifetime and of Retry-After;
	// nil means the wall clock.
	Clock clock.Clock `yaml:"-"`
}

// Validate reports every problem of c at once, each prefixed with its YAML
// key relative to session_authority (e.g. "url: must use https"); callers
// prefix the path of the entry ("issuers[0].session_authority."). It does
// no I/O.
func (c Config) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	known := slices.Contains(Types, c.Type)
	switch {
	case c.Type == "":
		add("type", fmt.Errorf("required (one of %s)", strings.Join(Types, ", ")))
	case !known:
		add("type", fmt.Errorf("%q is not one of %s", c.Type, strings.Join(Types, ", ")))
	}
	switch {
	case c.URL != "":
		add("url", checkURL(c.URL))
	case c.Type != TypeEntra && known:
		add("url", errors.New("required"))
	}
	if c.TokenURL != "" {
		add("token_url", checkURL(c.TokenURL))
	}

	switch c.Type {
	case TypeKeycloak:
		if c.Realm == "" {
			add("realm", errors.New("required for keycloak"))
		} else {
			add("realm", checkSegment(c.Realm))
		}
	default:
		if c.Realm != "" && known {
			add("realm", errors.New("only for type keycloak"))
		}
	}

	hasCC := c.ClientID != "" || c.ClientSecret != ""
	switch c.Type {
	case TypeKeycloak, TypeEntra:
		add("client_id", required(c.ClientID, "the admin token is requested with the client_credentials grant"))
		add("client_secret", required(string(c.ClientSecret), "the admin token is requested with the client_credentials grant"))
		if c.APIToken != "" {
			add("api_token", errors.New("only for okta and hydra; "+c.Type+" uses client_id and client_secret"))
		}
		if c.Type == TypeEntra && c.TokenURL == "" {
			add("token_url", errors.New("required for entra (https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token)"))
		}
	case TypeOkta:
		switch {
		case c.APIToken != "" && (c.ClientID != "" || c.PrivateKey != ""):
			add("api_token", errors.New("give either api_token or client_id and private_key, not both"))
		case c.APIToken == "" && c.ClientID == "" && c.PrivateKey == "":
			add("api_token", errors.New("required (an Okta API token), unless client_id, private_key and token_url are given"))
		case c.APIToken == "":
			add("client_id", required(c.ClientID, "it goes with private_key"))
			add("private_key", required(string(c.PrivateKey), "okta's service apps authenticate with private_key_jwt"))
			add("token_url", required(c.TokenURL, "the token endpoint of the org authorization server, {url}/oauth2/v1/token"))
		}
		if c.ClientSecret != "" {
			// Okta issues tokens with Okta scopes to service apps only for
			// private_key_jwt
			// (https://developer.okta.com/docs/guides/oauth-for-okta/use-client-credentials-grant-flow/).
			add("client_secret", errors.New("okta's service apps authenticate with private_key_jwt, not a client secret; use private_key"))
		}
		if c.APIToken != "" && c.TokenURL != "" {
			add("token_url", errors.New("unused with api_token"))
		}
		if c.PrivateKey != "" {
			if _, _, err := parsePrivateKey(string(c.PrivateKey)); err != nil {
				add("private_key", err)
			}
		}
	case TypeHydra:
		if hasCC {
			add("client_id", errors.New("hydra's admin API takes no client credentials; use api_token for a bearer token, or guard it by network"))
		}
		if c.TokenURL != "" {
			add("token_url", errors.New("unused for hydra"))
		}
	}

	if c.Type != TypeOkta && known && (c.PrivateKey != "" || c.PrivateKeyID != "") {
		add("private_key", errors.New("only for type okta"))
	}
	if c.UserIDClaim != "" && (strings.TrimSpace(c.UserIDClaim) != c.UserIDClaim || strings.ContainsAny(c.UserIDClaim, " \t\r\n")) {
		add("user_id_claim", errors.New("must be a claim name without spaces"))
	}
	if c.On != nil && len(c.On) == 0 {
		add("on", errors.New("empty list: nothing would reach the authority; omit it for every trigger"))
	}
	for n, t := range c.On {
		switch {
		case !slices.Contains(Triggers, t):
			add(fmt.Sprintf("on[%d]", n), fmt.Errorf("%q is not one of %s", t, strings.Join(Triggers, ", ")))
		case slices.Index(c.On, t) < n:
			add(fmt.Sprintf("on[%d]", n), fmt.Errorf("%q listed twice", t))
		}
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with zero values replaced by their defaults; New
// applies it.
func (c Config) WithDefaults() Config {
	if c.Type == TypeEntra && c.URL == "" {
		c.URL = DefaultEntraURL
	}
	if c.Type == TypeKeycloak && c.TokenURL == "" && c.URL != "" {
		c.TokenURL = strings.TrimSuffix(c.URL, "/") + "/realms/" + url.PathEscape(c.Realm) + "/protocol/openid-connect/token"
	}
	if c.UserIDClaim == "" {
		c.UserIDClaim = "sub"
		if c.Type == TypeEntra {
			c.UserIDClaim = "oid"
		}
	}
	return c
}

// Propagates reports whether a revocation with the given audit trigger
// (audit.Trigger of the entry's initiator, e.g. "backchannel_logout") is
// sent to this authority according to On. It does not know where the
// revocation came from: the caller must still never send an authority's
// own logout back to it.
func (c Config) Propagates(trigger string) bool {
	if c.On == nil {
		return true
	}
	if t, ok := auditTriggers[trigger]; ok {
		trigger = t
	}
	return slices.Contains(c.On, trigger)
}

func required(v, why string) error {
	if v == "" {
		return errors.New("required: " + why)
	}
	return nil
}

// checkSegment accepts a value that is placed in a URL path as one segment.
func checkSegment(s string) error {
	if s == "." || s == ".." || strings.ContainsAny(s, "/\\?#%") || strings.TrimSpace(s) != s {
		return fmt.Errorf("%q is not a realm name", s)
	}
	return nil
}

// checkURL accepts an absolute http(s) URL without credentials, query or
// fragment that uses https unless its host is a loopback address or
// localhost: the admin credentials must not cross a network in clear.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return errors.New("not an absolute URL")
	}
	if u.User != nil {
		return errors.New("must not hold credentials (user:password@)")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return errors.New("must not have a query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("must use https (http only on loopback hosts)")
	}
	return fmt.Errorf("unsupported scheme %q (want https)", u.Scheme)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
