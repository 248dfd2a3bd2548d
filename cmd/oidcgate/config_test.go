package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/gateway"
)

// testToken is a valid admin token (32+ visible ASCII characters).
const testToken = "0123456789abcdef0123456789abcdef-test"

// configText renders a valid config; each extra is inserted verbatim at
// its level (top-level keys, keys of issuers[0], keys of routes[0]).
func configText(top, issuer, route string) string {
	return `listen: 127.0.0.1:8080
internal_listen: 127.0.0.1:9091
data_dir: /var/lib/oidcgate
issuers:
  - issuer: https://idp.example.com
    audiences: [api]
    max_token_lifetime: 1h
` + indent(issuer, "    ") + `routes:
  - path_prefix: /
    upstream: http://127.0.0.1:3000
` + indent(route, "    ") + `admin:
  tokens:
    - name: ops
      token: ${ADMIN_TOKEN}
` + top
}

func indent(s, by string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return by + strings.Join(lines, "\n"+by) + "\n"
}

// envOf returns a lookupEnv over m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

var defaultEnv = map[string]string{"ADMIN_TOKEN": testToken}

// wantLines checks that err has, for each want, a line starting with it.
func wantLines(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error; want lines starting with %q", want)
	}
	for _, w := range want {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(w)).MatchString(err.Error()) {
			t.Errorf("error lacks a line starting with %q; got:\n%v", w, err)
		}
	}
}

func TestParseConfigValid(t *testing.T) {
	cfg, err := parseConfig([]byte(configText("", "", "")), envOf(defaultEnv))
	if err != nil {
		t.Fatalf("got %v; want a valid config", err)
	}
	if got := string(cfg.Admin.Tokens[0].Token); got != testToken {
		t.Errorf("admin token: got %q; want the expanded ADMIN_TOKEN", got)
	}
}

func TestParseConfigEnv(t *testing.T) {
	long := strings.Repeat("x", 32)
	for _, tc := range []struct {
		name     string
		text     string
		env      map[string]string
		wantErr  []string // line prefixes; nil means valid
		wantUp   string   // routes[0].upstream when valid
		wantData string   // data_dir when valid
	}{
		{
			name: "set", text: configText("", "", ""), env: defaultEnv,
			wantUp: "http://127.0.0.1:3000", wantData: "/var/lib/oidcgate",
		},
		{
			name: "inside a value",
			text: strings.Replace(configText("", "", ""), "http://127.0.0.1:3000", "http://127.0.0.1:${PORT}/base", 1),
			env:  map[string]string{"ADMIN_TOKEN": testToken, "PORT": "4000"}, wantUp: "http://127.0.0.1:4000/base", wantData: "/var/lib/oidcgate",
		},
		{
			name: "$VAR without braces is literal",
			text: strings.Replace(configText("", "", ""), "/var/lib/oidcgate", "/data/$HOME", 1),
			env:  defaultEnv, wantUp: "http://127.0.0.1:3000", wantData: "/data/$HOME",
		},
		{
			name: "a value is not expanded twice",
			text: strings.Replace(configText("", "", ""), "/var/lib/oidcgate", "${DIR}", 1),
			env:  map[string]string{"ADMIN_TOKEN": testToken, "DIR": "/d/${ADMIN_TOKEN}"}, wantUp: "http://127.0.0.1:3000", wantData: "/d/${ADMIN_TOKEN}",
		},
		{
			name: "unset", text: configText("", "", ""), env: map[string]string{},
			wantErr: []string{"admin.tokens[0].token: environment variable ADMIN_TOKEN is not set"},
		},
		{
			name:    "several unset, each named",
			text:    strings.Replace(configText("public_url: ${PUBLIC_URL}\n", "", ""), "/var/lib/oidcgate", "${DATA_DIR}", 1),
			env:     map[string]string{"ADMIN_TOKEN": testToken},
			wantErr: []string{"public_url: environment variable PUBLIC_URL is not set", "data_dir: environment variable DATA_DIR is not set"},
		},
		{
			name: "set but empty is not unset", text: configText("", "", ""), env: map[string]string{"ADMIN_TOKEN": ""},
			wantErr: []string{"admin.tokens[0].token: shorter than 32 characters"},
		},
		{
			name: "the expanded value is validated", text: configText("", "", ""), env: map[string]string{"ADMIN_TOKEN": "short"},
			wantErr: []string{"admin.tokens[0].token: shorter than 32 characters"},
		},
		{
			name: "inside a list", text: configText("", "", "required_scopes:\n  - ${SCOPE}"), env: map[string]string{"ADMIN_TOKEN": long},
			wantErr: []string{"routes[0].required_scopes[0]: environment variable SCOPE is not set"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig([]byte(tc.text), envOf(tc.env))
			if tc.wantErr != nil {
				wantLines(t, err, tc.wantErr...)
				return
			}
			if err != nil {
				t.Fatalf("got %v; want no error", err)
			}
			if got := cfg.Routes[0].Upstream; got != tc.wantUp {
				t.Errorf("routes[0].upstream: got %q; want %q", got, tc.wantUp)
			}
			if cfg.DataDir != tc.wantData {
				t.Errorf("data_dir: got %q; want %q", cfg.DataDir, tc.wantData)
			}
		})
	}
}

func TestParseConfigUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want []string
	}{
		{"top level", configText("listn: :80\n", "", ""), []string{"listn: unknown key (line 15)"}},
		{"in a route", configText("", "", "upstrem: http://x\n"), []string{"routes[0].upstrem: unknown key (line 11)"}},
		{"in an issuer", configText("", "foo: bar\n", ""), []string{"issuers[0].foo: unknown key (line 8)"}},
		{"in a mapping", configText("store:\n  backnd: memory\n", "", ""), []string{"store.backnd: unknown key"}},
		{"in a list of mappings", strings.Replace(configText("", "", ""), "token: ${ADMIN_TOKEN}", "token: ${ADMIN_TOKEN}\n      tokn: x", 1),
			[]string{"admin.tokens[0].tokn: unknown key"}},
		{"several at once", configText("listn: :80\n", "foo: bar\n", "upstrem: http://x\n"),
			[]string{"listn: unknown key", "routes[0].upstrem: unknown key", "issuers[0].foo: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.text), envOf(defaultEnv))
			wantLines(t, err, tc.want...)
		})
	}
	t.Run("header names are free keys", func(t *testing.T) {
		if _, err := parseConfig([]byte(configText("", "", "headers: {X-Anything: sub, X-Tenant: tid}")), envOf(defaultEnv)); err != nil {
			t.Errorf("got %v; want no error", err)
		}
	})
}

func TestParseConfigSSF(t *testing.T) {
	text := configText("ssf:\n  public: true\n  transmitters:\n    - {issuer: https://ssf.example.com, jwks_uri: https://ssf.example.com/jwks, audience: gw, authorization_header: '${SSF_AUTH}', issuers: [https://idp.example.com]}\n", "", "")
	env := map[string]string{"ADMIN_TOKEN": defaultEnv["ADMIN_TOKEN"], "SSF_AUTH": "Bearer push-secret"}
	cfg, err := parseConfig([]byte(text), envOf(env))
	if err != nil {
		t.Fatalf("got %v; want a valid config", err)
	}
	if tr := cfg.SSF.Transmitters; !cfg.SSF.Public || len(tr) != 1 || tr[0].Audience != "gw" || string(tr[0].AuthorizationHeader) != "Bearer push-secret" {
		t.Errorf("got %+v; want the public transmitter with the expanded header", cfg.SSF)
	}
	bad := configText("ssf:\n  transmitters:\n    - {issuer: http://ssf.example.com, audience: gw}\n    - {issuer: http://ssf.example.com, jwks_uri: https://x/jwks, audience: gw, authorisation: x}\n    - {issuer: https://t.example.com, jwks_uri: https://x/jwks, audience: gw, issuers: [https://idp.example.com, https://other.example.com]}\n", "", "")
	_, err = parseConfig([]byte(bad), envOf(defaultEnv))
	wantLines(t, err,
		"ssf.transmitters[1].authorisation: unknown key",
		"ssf.transmitters[0].issuer: must use https",
		"ssf.transmitters[0].jwks_uri: required",
		"ssf.transmitters[1].issuer: duplicate of transmitters[0]",
		"ssf.transmitters[0].issuers: required: the transmitter is not a configured issuer",
		"ssf.transmitters[2].issuers[1]: not a configured issuer",
	)
	_, err = parseConfig([]byte(configText("ssf: {public: true}\n", "", "")), envOf(defaultEnv))
	wantLines(t, err, "ssf.transmitters: at least one transmitter is required")
}

func TestParseConfigIntrospectionClients(t *testing.T) {
	text := configText("introspection_clients:\n  - {client_id: app, client_secret: short}\n  - client_id: app\n    client_secret: ${APP_SECRET}\n", "", "")
	_, err := parseConfig([]byte(text), envOf(map[string]string{"ADMIN_TOKEN": defaultEnv["ADMIN_TOKEN"], "APP_SECRET": "0123456789abcdef"}))
	wantLines(t, err,
		"introspection_clients[0].client_secret: at least 16 characters",
		"introspection_clients[1].client_id: duplicate of introspection_clients[0]",
	)
}

func TestParseConfigAllProblemsAtOnce(t *testing.T) {
	text := configText("ssf: {transmitters: [{issuer: x}]}\npublic_url: ${PUBLIC_URL}\n", "foo: bar\n", "upstrem: http://x\n")
	text = strings.Replace(text, "http://127.0.0.1:3000", "not a url", 1)
	text = strings.Replace(text, "data_dir: /var/lib/oidcgate\n", "", 1)
	_, err := parseConfig([]byte(text), envOf(map[string]string{"ADMIN_TOKEN": "short"}))
	wantLines(t, err,
		"ssf.transmitters[0].issuer: not an absolute URL",
		"public_url: environment variable PUBLIC_URL is not set",
		"issuers[0].foo: unknown key",
		"routes[0].upstrem: unknown key",
		"routes[0].upstream: ",
		"data_dir: required",
		"admin.tokens[0].token: shorter than 32 characters",
	)
	if strings.Contains(err.Error(), "short\n") {
		t.Errorf("the error shows the admin token:\n%v", err)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	minimal := `data_dir: /d
issuers:
  - issuer: https://idp.example.com
    audiences: [api]
    max_token_lifetime: 1h
routes:
  - path_prefix: /public
    upstream: http://127.0.0.1:3000
    auth: none
  - upstream: http://127.0.0.1:3000
admin:
  tokens:
    - name: ops
      token: ` + testToken + "\n"
	cfg, err := parseConfig([]byte(minimal), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, defaultListen},
		{"internal_listen", cfg.InternalListen, defaultInternalListen},
		{"clock_skew", *cfg.ClockSkew, 30 * time.Second},
		{"store.backend", cfg.Store.Backend, "memory"},
		{"session.max_age", cfg.Session.MaxAge, 24 * time.Hour},
		{"routes[0].auth (explicit)", cfg.Routes[0].Auth, gateway.AuthNone},
		{"routes[1].auth (omitted)", cfg.Routes[1].Auth, gateway.AuthBearer},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}

	cfg, err = parseConfig([]byte(configText("clock_skew: 0s\n", "", "")), envOf(defaultEnv))
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.ClockSkew != 0 {
		t.Errorf("explicit clock_skew 0s: got %v; want 0 (not the default)", *cfg.ClockSkew)
	}
}

func TestParseConfigDurations(t *testing.T) {
	cfg, err := parseConfig([]byte(configText("clock_skew: 90s\nsession:\n  max_age: 2h30m\n", "", "")), envOf(defaultEnv))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *cfg.ClockSkew, 90*time.Second; got != want {
		t.Errorf("clock_skew: got %v; want %v", got, want)
	}
	if got, want := cfg.Session.MaxAge, 150*time.Minute; got != want {
		t.Errorf("session.max_age: got %v; want %v", got, want)
	}
	if got, want := cfg.Issuers[0].MaxTokenLifetime, time.Hour; got != want {
		t.Errorf("issuers[0].max_token_lifetime: got %v; want %v", got, want)
	}

	for _, tc := range []struct {
		name, top string
		want      string
	}{
		{"not a duration", "clock_skew: ten seconds\n", "config: "},
		{"bare number", "clock_skew: 30\n", "config: "},
		{"skew above 5m", "clock_skew: 10m\n", "clock_skew: must be between 0 and 5m0s"},
		{"negative skew", "clock_skew: -1s\n", "clock_skew: must be between"},
		{"negative max_age", "session:\n  max_age: -1h\n", "session.max_age: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(configText(tc.top, "", "")), envOf(defaultEnv))
			wantLines(t, err, tc.want)
		})
	}
}

func TestParseConfigValidate(t *testing.T) {
	base := configText("", "", "")
	for _, tc := range []struct {
		name string
		text string
		want []string
	}{
		{"listen equals internal_listen", strings.Replace(base, "127.0.0.1:9091", "127.0.0.1:8080", 1),
			[]string{"internal_listen: must differ from listen"}},
		{"listen without port", strings.Replace(base, "listen: 127.0.0.1:8080", "listen: 8080", 1),
			[]string{"listen: not a host:port address"}},
		{"redis without addr", base + "store:\n  backend: redis\n", []string{"store.redis.addr: required"}},
		{"redis addr and addrs", base + "store:\n  backend: redis\n  redis:\n    addr: r:6379\n    addrs: [a:1, b:2]\n",
			[]string{"store.redis.addrs: give addr or addrs, not both (line 19)"}},
		{"redis problems with paths and lines", base + `store:
  backend: redis
  redis:
    addrs: [a:1, nope]
    db: -1
    key_prefix: "a{b}"
    stream_max_len: -5
    timeout: -1s
  on_unavailable: maybe
  max_staleness: -1s
`, []string{
			"store.redis.addrs[1]: not a host:port address (line 18)",
			"store.redis.db: must not be negative (line 19)",
			"store.redis.key_prefix: must not contain braces, glob characters or spaces (line 20)",
			"store.redis.stream_max_len: must not be negative (line 21)",
			"store.redis.timeout: must not be negative (line 22)",
			`store.on_unavailable: "maybe" is not one of fail_open, fail_closed (line 23)`,
			"store.max_staleness: must not be negative (line 24)",
		}},
		{"redis keys with backend memory", base + "store:\n  redis:\n    addr: r:6379\n  on_unavailable: fail_closed\n",
			[]string{"store.redis: only used with backend: redis (line 16)", "store.on_unavailable: only used with backend: redis"}},
		{"redis unknown key", base + "store:\n  backend: redis\n  redis:\n    addr: r:6379\n    adress: x\n",
			[]string{"store.redis.adress: unknown key (line 19)"}},
		{"unknown backend", base + "store:\n  backend: etcd\n", []string{`store.backend: "etcd" is not one of memory, redis`}},
		{"public_url not absolute", base + "public_url: /x\n", []string{"public_url: not an absolute URL"}},
		{"short session secret", base + "session:\n  secret: short\n", []string{"session.secret: shorter than 32 characters"}},
		{"http public_url for a remote host with browser routes", strings.Replace(base, "upstream: http://127.0.0.1:3000", "upstream: http://127.0.0.1:3000\n    auth: browser", 1) +
			"public_url: http://gw.example.com\nsession:\n  secret: " + testToken + "\n",
			[]string{"public_url: must be https with browser or either routes (http only for a loopback host)"}},
		{"duplicate issuer", strings.Replace(base, "routes:", `  - issuer: https://idp.example.com
    audiences: [api]
    max_token_lifetime: 1h
routes:`, 1), []string{"issuers[1].issuer: duplicate of issuers[0]"}},
		{"no issuers, no routes", `data_dir: /d
admin:
  tokens:
    - name: ops
      token: ` + testToken + "\n", []string{"issuers: at least one issuer is required", "routes: at least one route is required"}},
		{"route problems keep their path", strings.Replace(base, "path_prefix: /", "path_prefix: api", 1),
			[]string{`routes[0].path_prefix: must start with "/"`}},
		{"admin without tokens", strings.Replace(base, "admin:\n  tokens:\n    - name: ops\n      token: ${ADMIN_TOKEN}\n", "", 1),
			[]string{"admin.tokens: at least one token is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.text), envOf(defaultEnv))
			wantLines(t, err, tc.want...)
		})
	}
}

func TestParseConfigRedis(t *testing.T) {
	text := configText(`store:
  backend: redis
  redis:
    addr: redis.internal:6380
    username: oidcgate
    password: ${REDIS_PASSWORD}
    db: 2
    tls: true
    key_prefix: prod
    stream_max_len: 5000
    timeout: 1500ms
  on_unavailable: fail_closed
  max_staleness: 45s
`, "", "")
	cfg, err := parseConfig([]byte(text), envOf(map[string]string{"ADMIN_TOKEN": testToken, "REDIS_PASSWORD": "s3cret"}))
	if err != nil {
		t.Fatalf("got %v; want a valid config", err)
	}
	rc := cfg.Store.redisConfig(cfg.DataDir)
	for _, c := range []struct {
		name string
		got  any
		want any
	}{
		{"backend", cfg.Store.Backend, "redis"},
		{"addr", rc.Redis.Addr, "redis.internal:6380"},
		{"username", rc.Redis.Username, "oidcgate"},
		{"password", rc.Redis.Password, "s3cret"},
		{"db", rc.Redis.DB, 2},
		{"tls", rc.Redis.TLS, true},
		{"key_prefix", rc.Redis.KeyPrefix, "prod"},
		{"stream_max_len", rc.Redis.StreamMaxLen, int64(5000)},
		{"timeout", rc.Redis.Timeout, 1500 * time.Millisecond},
		{"on_unavailable", rc.OnUnavailable, cache.FailClosed},
		{"max_staleness", rc.MaxStaleness, 45 * time.Second},
		{"mirror path", rc.Local.Path, filepath.Join("/var/lib/oidcgate", storeFile)},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
	sentinel := configText("store:\n  backend: redis\n  redis:\n    addrs: [s1:26379, s2:26379]\n    master_name: mymaster\n", "", "")
	if _, err := parseConfig([]byte(sentinel), envOf(defaultEnv)); err != nil {
		t.Errorf("sentinel config: got %v; want valid", err)
	}
}

func TestParseConfigNotAConfig(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "", "config is empty"},
		{"a list", "- a\n- b\n", "line 1: the config must be a mapping of keys"},
		{"not YAML", "listen: [\n", "not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.text), envOf(nil))
			wantLines(t, err, tc.want)
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadConfig(filepath.Join(dir, "missing.yaml")); !os.IsNotExist(err) {
		t.Errorf("missing file: got %v; want a not-exist error", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxConfigBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversize file: got %v; want a size error", err)
	}
}

// TestParseConfigSessionLifetime: a browser session must not outlive the
// revocations of its issuer's sid and sub; by default it is capped.
func TestParseConfigSessionLifetime(t *testing.T) {
	browser := "client_id: gw\nclient_secret: gw-secret\n"
	route := "auth: browser\n"
	session := "public_url: https://gw.example.com\nsession:\n  secret: 0123456789abcdef0123456789abcdef\n"
	cfg, err := parseConfig([]byte(configText(session, browser, route)), envOf(defaultEnv))
	if err != nil {
		t.Fatalf("default max_age: %v", err)
	}
	if cfg.Session.MaxAge != time.Hour || cfg.Session.Issuer != "https://idp.example.com" {
		t.Errorf("defaults: got max_age %s, issuer %q; want 1h (the issuer's max_token_lifetime), https://idp.example.com", cfg.Session.MaxAge, cfg.Session.Issuer)
	}
	_, err = parseConfig([]byte(configText(session+"  max_age: 2h\n", browser, route)), envOf(defaultEnv))
	wantLines(t, err, "session.max_age: longer than issuers[0].max_token_lifetime (1h0m0s), for which revocations are kept")
}

func TestConfigWarnings(t *testing.T) {
	for _, tc := range []struct {
		internal string
		warn     bool
	}{
		{"127.0.0.1:9091", false},
		{"10.0.0.5:9091", false},
		{"[::1]:9091", false},
		{":9091", true},
		{"0.0.0.0:9091", true},
		{"[::]:9091", true},
	} {
		c, err := parseConfig([]byte(strings.Replace(configText("", "", ""), "127.0.0.1:9091", `"`+tc.internal+`"`, 1)), envOf(defaultEnv))
		if err != nil {
			t.Fatalf("%s: %v", tc.internal, err)
		}
		w := c.Warnings()
		if got := slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "internal_listen") }); got != tc.warn {
			t.Errorf("internal_listen %s: warnings %q; want an internal_listen warning: %v", tc.internal, w, tc.warn)
		}
	}
	// A token without roles has every role (issue 17): valid, with a
	// warning naming its path; one with roles has none.
	c, err := parseConfig([]byte(configText("", "", "")), envOf(defaultEnv))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], `admin.tokens[0].roles: not set, so "ops" has every role`) {
		t.Errorf("token without roles: warnings %q; want one admin.tokens[0].roles warning", w)
	}
	c, err = parseConfig([]byte(strings.Replace(configText("", "", ""), "token: ${ADMIN_TOKEN}", "token: ${ADMIN_TOKEN}\n      roles: [read, audit]", 1)), envOf(defaultEnv))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("token with roles: warnings %q; want none", w)
	}
	_, err = parseConfig([]byte(strings.Replace(configText("", "", ""), "token: ${ADMIN_TOKEN}", "token: ${ADMIN_TOKEN}\n      roles: [read, root]", 1)), envOf(defaultEnv))
	wantLines(t, err, `admin.tokens[0].roles[1]: "root" is not one of revoke, keys, read, audit`)
}

// TestParseConfigFrontchannelWithoutISS: frontchannel_logout_without_iss
// (Entra) is accepted only on the one issuer that logs browsers in, with
// a browser route and front-channel logout on; check-config says why
// otherwise.
func TestParseConfigFrontchannelWithoutISS(t *testing.T) {
	top := "public_url: https://gw.example.com\nsession:\n  secret: " + testToken + "\n"
	login := "client_id: gw\nclient_secret: gw-secret\nfrontchannel_logout_without_iss: true\n"
	cfg, err := parseConfig([]byte(configText(top, login, "auth: browser\n")), envOf(defaultEnv))
	if err != nil {
		t.Fatalf("on the login issuer: got %v; want valid", err)
	}
	if !cfg.Issuers[0].FrontchannelLogoutWithoutISS {
		t.Error("frontchannel_logout_without_iss not read")
	}
	second := "  - issuer: https://other.example.com\n    audiences: [api]\n    frontchannel_logout_without_iss: true\nroutes:"
	for _, tc := range []struct {
		name string
		text string
		want string
	}{
		{"another issuer", strings.Replace(configText(top, "client_id: gw\nclient_secret: gw-secret\n", "auth: browser\n"), "routes:", second, 1),
			"issuers[1].frontchannel_logout_without_iss: only the one issuer that logs browsers in (session.issuer) may set it"},
		{"no browser route", configText(top, login, ""),
			"issuers[0].frontchannel_logout_without_iss: no route logs browsers in"},
		{"front-channel logout off", configText(top, login+"frontchannel_logout: false\n", "auth: browser\n"),
			"issuers[0].frontchannel_logout_without_iss: frontchannel_logout is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.text), envOf(defaultEnv))
			wantLines(t, err, tc.want)
		})
	}
}
