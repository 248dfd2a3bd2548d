package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"

	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
	"github.com/oidcgate/oidcgate/propagate"
)

// maxConfigBytes bounds the config file; anything larger is refused unread.
const maxConfigBytes = 4 << 20

// Defaults applied by load when a key is absent.
const (
	defaultListen         = ":8080"
	defaultInternalListen = "127.0.0.1:9091"
	defaultClockSkew      = 30 * time.Second
	maxClockSkew          = 5 * time.Minute
	defaultSessionMaxAge  = 24 * time.Hour
)

// Config is the YAML file, key for key (DESIGN.md, "The contract"). Each
// section is the owning package's own Config type, so a key is declared
// once, where it is used.
type Config struct {
	Listen         string                `yaml:"listen"`
	InternalListen string                `yaml:"internal_listen"`
	PublicURL      string                `yaml:"public_url"`
	DataDir        string                `yaml:"data_dir"`
	Issuers        []introspect.Issuer   `yaml:"issuers"`
	ClockSkew      *time.Duration        `yaml:"clock_skew"`
	Store          StoreConfig           `yaml:"store"`
	Session        gateway.SessionConfig `yaml:"session"`
	Routes         []gateway.Route       `yaml:"routes"`
	// ForwardAuth configures /oauth2/auth and the ext_authz service.
	ForwardAuth gateway.ForwardAuthConfig `yaml:"forward_auth"`
	// APIKeys configures API keys (/admin/keys, routes[].api_keys).
	APIKeys APIKeysConfig      `yaml:"api_keys"`
	Admin   logout.AdminConfig `yaml:"admin"`
	// IntrospectionClients may call /introspect and /revoke on the
	// internal listener; none means nobody may.
	IntrospectionClients []introspect.Client `yaml:"introspection_clients"`
	// Audit is the tamper-evident audit log; without audit.path nothing
	// is audited.
	Audit audit.Config `yaml:"audit"`
	// SSF is the Shared Signals receiver; without transmitters it is off.
	SSF SSFConfig `yaml:"ssf"`
	// Console configures the operator console at /admin/ui/.
	Console ConsoleConfig `yaml:"console"`
	// SessionAuthorities is issuers[i].session_authority, indexed like
	// Issuers (nil where an issuer names none); read apart from Issuers
	// (see decodeSessionAuthorities).
	SessionAuthorities []*propagate.Config `yaml:"-"`
}

// APIKeysConfig is the YAML key `api_keys`: header (the request field
// that may carry a key besides Authorization; default X-API-Key),
// max_lifetime, max_idle, max_per_owner and max_total.
type APIKeysConfig struct {
	Header      string        `yaml:"header"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	MaxIdle     time.Duration `yaml:"max_idle"`
	MaxPerOwner int           `yaml:"max_per_owner"`
	MaxTotal    int           `yaml:"max_total"`
}

// keys is the part logout takes.
func (c APIKeysConfig) keys() logout.KeysConfig {
	return logout.KeysConfig{MaxLifetime: c.MaxLifetime, MaxIdle: c.MaxIdle, MaxPerOwner: c.MaxPerOwner, MaxTotal: c.MaxTotal}
}

// SSFConfig is the YAML key `ssf`: the Shared Signals (RFC 8935 push)
// receiver at /ssf/events.
type SSFConfig struct {
	// Transmitters are the trusted SET transmitters; none means the
	// receiver is off and /ssf/events is not mounted.
	Transmitters []introspect.Transmitter `yaml:"transmitters"`
	// Public mounts /ssf/events on the public listener (for transmitters
	// on the internet) instead of the internal one.
	Public bool `yaml:"public"`
	// Receivers are the apps the gateway pushes its own SETs to (the
	// transmitter); none means it transmits nothing and publishes no
	// /.well-known/ssf-configuration.
	Receivers []propagate.Receiver `yaml:"receivers"`
}

// StoreConfig selects the revocation store backend.
type StoreConfig struct {
	// Backend is "memory" (the default: in-process, persisted to data_dir)
	// or "redis" (shared by every replica through Redis, mirrored in
	// data_dir; the other keys apply only to it).
	Backend string `yaml:"backend"`
	// Redis says how to reach Redis: `addr`, or `addrs` for Sentinel or
	// Cluster, and `username`, `password`, `db`, `tls`, `master_name`,
	// `cluster`, `key_prefix`, `stream_max_len`, `timeout`.
	Redis cache.RedisOptions `yaml:"redis"`
	// OnUnavailable is fail_open (the default) or fail_closed: what the
	// replica does once cut off from Redis for longer than MaxStaleness.
	OnUnavailable cache.Unavailable `yaml:"on_unavailable"`
	// MaxStaleness is how long a replica may be out of sync; 0 means 30s.
	MaxStaleness time.Duration `yaml:"max_staleness"`
	// HeartbeatInterval is how often a replica records itself as alive in
	// Redis, for `oidcgate verify-revocation`; a replica silent for three
	// intervals counts as down. 0 means 5s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
}

// redisConfig is the cache configuration of the redis backend, the mirror
// in dataDir.
func (c StoreConfig) redisConfig(dataDir string) cache.RedisConfig {
	return cache.RedisConfig{
		Redis:             c.Redis,
		Local:             cache.Config{Path: filepath.Join(dataDir, storeFile)},
		OnUnavailable:     c.OnUnavailable,
		MaxStaleness:      c.MaxStaleness,
		HeartbeatInterval: c.HeartbeatInterval,
	}
}

// validate reports the store section's problems, YAML paths relative to
// the file.
func (c StoreConfig) validate(dataDir string) []error {
	switch c.Backend {
	case "memory":
		var errs []error
		if c.Redis.Addr != "" || len(c.Redis.Addrs) > 0 {
			errs = append(errs, errors.New("store.redis: only used with backend: redis"))
		}
		if c.OnUnavailable != "" || c.MaxStaleness != 0 {
			errs = append(errs, errors.New("store.on_unavailable: only used with backend: redis (as is max_staleness)"))
		}
		if c.HeartbeatInterval != 0 {
			errs = append(errs, errors.New("store.heartbeat_interval: only used with backend: redis"))
		}
		return errs
	case "redis":
		return prefixed("store", c.redisConfig(dataDir).Validate())
	}
	return []error{fmt.Errorf("store.backend: %q is not one of memory, redis", c.Backend)}
}

// loadConfig reads, expands and decodes path, then validates the result.
// It returns every problem it finds, joined, each prefixed with its YAML path.
func loadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxConfigBytes)
	}
	return parseConfig(data, os.LookupEnv)
}

// parseConfig is loadConfig without the file: lookupEnv resolves ${VAR}.
func parseConfig(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if root.Kind == 0 {
		return nil, errors.New("config is empty")
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the config must be a mapping of keys", doc.Line)
	}
	errs := checkKeys(doc, reflect.TypeOf(Config{}), "")
	errs = append(errs, expandEnv(doc, "", lookupEnv)...)
	// Decode ignores the unknown keys reported above, so Validate still
	// runs and every problem of the file is reported at once.
	var cfg Config
	if err := doc.Decode(&cfg); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("config: %w", err))...)
	}
	authorities, decodeErrs := decodeSessionAuthorities(doc)
	errs = append(errs, decodeErrs...)
	cfg.SessionAuthorities = authorities
	cfg.applyDefaults()
	for _, err := range prefixed("", cfg.Validate()) {
		errs = append(errs, withLine(doc, err, "store."))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// checkKeys reports every mapping key that t does not declare, with its
// YAML path and line, so a typo is never silently ignored.
func checkKeys(n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				ft, ok = extraKey(t, k.Value)
			}
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d)", p, k.Line))
				continue
			}
			errs = append(errs, checkKeys(v, ft, p)...)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			errs = append(errs, checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
	}
	return errs
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in every scalar value (never in keys). An unset
// variable is an error: an empty secret must not pass for a configured one.
func expandEnv(n *yaml.Node, path string, lookupEnv func(string) (string, bool)) []error {
	var errs []error
	switch n.Kind {
	case yaml.ScalarNode:
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := lookupEnv(name)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: environment variable %s is not set", path, name))
			}
			return v
		})
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, expandEnv(n.Content[i+1], join(path, n.Content[i].Value), lookupEnv)...)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, expandEnv(c, fmt.Sprintf("%s[%d]", path, i), lookupEnv)...)
		}
	}
	return errs
}

// withLine appends the line of the YAML node an error's path names, for
// errors whose path starts with prefix; others are returned as they are.
func withLine(doc *yaml.Node, err error, prefix string) error {
	path, _, ok := strings.Cut(err.Error(), ": ")
	if !ok || !strings.HasPrefix(path, prefix) {
		return err
	}
	if line := lineAt(doc, path); line > 0 {
		return fmt.Errorf("%w (line %d)", err, line)
	}
	return err
}

var (
	pathPart  = regexp.MustCompile(`^([^.\[]+)((?:\[\d+\])*)$`)
	indexPart = regexp.MustCompile(`\d+`)
)

// lineAt returns the line of the key (or list item) a YAML path such as
// store.redis.addrs[1] names, or 0.
func lineAt(n *yaml.Node, path string) int {
	line := 0
	for _, part := range strings.Split(path, ".") {
		m := pathPart.FindStringSubmatch(part)
		if m == nil || n.Kind != yaml.MappingNode {
			return 0
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == m[1] {
				next, line = n.Content[i+1], n.Content[i].Line
			}
		}
		if next == nil {
			return 0
		}
		n = next
		for _, idx := range indexPart.FindAllString(m[2], -1) {
			i, _ := strconv.Atoi(idx)
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return 0
			}
			n = n.Content[i]
			line = n.Line
		}
	}
	return line
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.InternalListen == "" {
		c.InternalListen = defaultInternalListen
	}
	if c.ClockSkew == nil {
		d := defaultClockSkew
		c.ClockSkew = &d
	}
	if c.Store.Backend == "" {
		c.Store.Backend = "memory"
	}
	if c.Session.Issuer == "" {
		// The one issuer the gateway has a client at logs browsers in.
		var withClient []string
		for _, is := range c.Issuers {
			if is.ClientID != "" {
				withClient = append(withClient, is.Issuer)
			}
		}
		if len(withClient) == 1 {
			c.Session.Issuer = withClient[0]
		}
	}
	for i := range c.Issuers {
		c.Issuers[i] = c.Issuers[i].WithDefaults()
	}
	if c.Session.MaxAge == 0 {
		c.Session.MaxAge = defaultSessionMaxAge
		if _, at := c.login(); at >= 0 {
			c.Session.MaxAge = min(c.Session.MaxAge, c.Issuers[at].MaxTokenLifetime)
		}
	}
	for i := range c.Routes {
		if c.Routes[i].Auth == "" {
			c.Routes[i].Auth = gateway.AuthBearer
		}
	}
}

// Validate reports every problem of the whole file at once, each with its
// YAML path. It does no I/O.
func (c *Config) Validate() error {
	var errs []error
	add := func(prefix string, err error) {
		errs = append(errs, prefixed(prefix, err)...)
	}
	if err := validAddr(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if err := validAddr(c.InternalListen); err != nil {
		errs = append(errs, fmt.Errorf("internal_listen: %w", err))
	}
	if c.Listen == c.InternalListen {
		errs = append(errs, errors.New("internal_listen: must differ from listen (the admin API must never share the public listener)"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: required (the revocation store persists there)"))
	}
	if c.ClockSkew != nil && (*c.ClockSkew < 0 || *c.ClockSkew > maxClockSkew) {
		errs = append(errs, fmt.Errorf("clock_skew: must be between 0 and %s", maxClockSkew))
	}
	errs = append(errs, c.Store.validate(c.DataDir)...)
	add("", introspect.ValidateIssuers(c.Issuers))
	errs = append(errs, c.validateSessionAuthorities()...)
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("routes: at least one route is required"))
	}
	login, at := c.login()
	if c.Session.Issuer != "" && at < 0 {
		errs = append(errs, fmt.Errorf("session.issuer: %q is not one of the configured issuers", c.Session.Issuer))
	}
	if at >= 0 && c.Issuers[at].MaxTokenLifetime > 0 && c.Session.MaxAge > c.Issuers[at].MaxTokenLifetime {
		// Revocations of the issuer's sid and sub are kept for its
		// max_token_lifetime: a session living longer would come back
		// once the entry that killed it expired.
		errs = append(errs, fmt.Errorf("session.max_age: longer than issuers[%d].max_token_lifetime (%s), for which revocations are kept", at, c.Issuers[at].MaxTokenLifetime))
	}
	errs = append(errs, c.validateFrontchannelWithoutISS(at)...)
	if l := c.ForwardAuth.GRPCListen; l != "" && (l == c.Listen || l == c.InternalListen) {
		errs = append(errs, errors.New("forward_auth.grpc_listen: must differ from listen and internal_listen"))
	}
	gw := gateway.Config{Routes: c.Routes, PublicURL: c.PublicURL, Session: c.Session, Login: login, ForwardAuth: c.ForwardAuth, APIKeyHeader: c.APIKeys.Header}
	if c.ClockSkew != nil {
		gw.ClockSkew = *c.ClockSkew
	}
	for _, err := range prefixed("", gw.Validate()) {
		// The login client is the session issuer's client_id and secret.
		msg := err.Error()
		if at >= 0 && strings.HasPrefix(msg, "login.client_") {
			err = fmt.Errorf("issuers[%d].%s (session.issuer logs browsers in with it)", at, strings.TrimPrefix(msg, "login."))
		}
		if at < 0 && strings.HasPrefix(msg, "login.") {
			continue
		}
		errs = append(errs, err)
	}
	add("admin", c.Admin.Validate())
	add("api_keys", c.APIKeys.keys().Validate())
	add("console", c.Console.Validate())
	if c.Audit.Path != "" || c.Audit.MaxBytes != 0 {
		add("audit", c.Audit.Validate())
	}
	add("", introspect.ServerConfig{Clients: c.IntrospectionClients}.Validate())
	if len(c.SSF.Transmitters) > 0 || c.SSF.Public {
		add("ssf", introspect.SETConfig{Transmitters: c.SSF.Transmitters}.Validate())
		configured := make([]string, 0, len(c.Issuers))
		for _, is := range c.Issuers {
			configured = append(configured, is.Issuer)
		}
		for i, t := range c.SSF.Transmitters {
			_, err := t.AllowedIssuers(configured)
			add(fmt.Sprintf("ssf.transmitters[%d]", i), err)
		}
	}
	if len(c.SSF.Receivers) > 0 {
		add("ssf", propagate.ValidateReceivers(c.SSF.Receivers))
		if c.PublicURL == "" {
			errs = append(errs, errors.New("public_url: required with ssf.receivers (it is the iss of the gateway's SETs and the base of its JWKS URL)"))
		}
	}
	return errors.Join(errs...)
}

// validateFrontchannelWithoutISS judges issuers[].frontchannel_logout_without_iss:
// a front-channel logout without iss names a sid of no particular
// issuer, so it is accepted only for the one issuer that logs browsers
// in (issuers[at], session.issuer), with a browser route and its
// front-channel logouts on.
func (c *Config) validateFrontchannelWithoutISS(at int) []error {
	browser := false
	for _, r := range c.Routes {
		browser = browser || r.Auth == gateway.AuthBrowser || r.Auth == gateway.AuthEither
	}
	var errs []error
	for i, is := range c.Issuers {
		if !is.FrontchannelLogoutWithoutISS {
			continue
		}
		p := fmt.Sprintf("issuers[%d].frontchannel_logout_without_iss", i)
		switch {
		case i != at:
			errs = append(errs, fmt.Errorf("%s: only the one issuer that logs browsers in (session.issuer) may set it: a sid without iss must name a session of exactly one issuer", p))
		case !browser:
			errs = append(errs, fmt.Errorf("%s: no route logs browsers in (auth: browser or either)", p))
		case is.FrontchannelLogout != nil && !*is.FrontchannelLogout:
			errs = append(errs, fmt.Errorf("%s: frontchannel_logout is false for this issuer", p))
		}
	}
	return errs
}

// login is the OAuth client that logs browsers in: session.issuer's
// client_id and secret, and that issuer's index (-1 if it is not
// configured).
func (c *Config) login() (gateway.Login, int) {
	for i, is := range c.Issuers {
		if is.Issuer == c.Session.Issuer && is.Issuer != "" {
			return gateway.Login{Issuer: is.Issuer, ClientID: is.ClientID, ClientSecret: is.ClientSecret}, i
		}
	}
	return gateway.Login{}, -1
}

// prefixed splits a joined error into its parts and puts prefix in front
// of each, so nested Validate results read as full YAML paths.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(prefix, e)...)
		}
		return out
	}
	if prefix == "" {
		return []error{err}
	}
	return []error{fmt.Errorf("%s.%w", prefix, err)}
}

// ConsoleConfig is the YAML key `console`.
type ConsoleConfig struct {
	// SessionTTL is how long a console sign-in lasts; 0 means 15 minutes,
	// at most 12 hours.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// Validate reports the problems of c, with paths relative to `console`.
func (c ConsoleConfig) Validate() error {
	if c.SessionTTL < 0 || c.SessionTTL > 12*time.Hour {
		return errors.New("session_ttl: not between 0 and 12h")
	}
	return nil
}

// Warnings lists what is valid but unsafe in c; check-config prints them
// and serve logs them.
func (c *Config) Warnings() []string {
	var out []string
	if host, _, err := net.SplitHostPort(c.InternalListen); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			out = append(out, fmt.Sprintf("internal_listen %q listens on every interface: /metrics, /healthz and /readyz need no authentication there; bind it to 127.0.0.1 or a private address", c.InternalListen))
		}
	}
	for _, w := range c.Admin.Warnings() {
		out = append(out, "admin."+w)
	}
	return out
}

func validAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not a host:port address: %q", addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("bad host in %q", addr)
	}
	if port == "" {
		return fmt.Errorf("missing port in %q", addr)
	}
	return nil
}
