package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
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
	Listen         string              `yaml:"listen"`
	InternalListen string              `yaml:"internal_listen"`
	PublicURL      string              `yaml:"public_url"`
	DataDir        string              `yaml:"data_dir"`
	Issuers        []introspect.Issuer `yaml:"issuers"`
	ClockSkew      *time.Duration      `yaml:"clock_skew"`
	Store          StoreConfig         `yaml:"store"`
	Session        SessionConfig       `yaml:"session"`
	Routes         []gateway.Route     `yaml:"routes"`
	Admin          logout.AdminConfig  `yaml:"admin"`
}

// StoreConfig selects the revocation store backend.
type StoreConfig struct {
	// Backend is "memory" (the default: in-process, persisted to data_dir).
	// "redis" comes with the shared-store issue and is refused until then.
	Backend string `yaml:"backend"`
}

// SessionConfig holds the browser-session settings. Browser routes come
// with the back-channel logout issue; today only max_age is used (it bounds
// how long an admin revocation of kind session is kept).
type SessionConfig struct {
	CookieName      string              `yaml:"cookie_name"`
	Secret          introspect.Secret   `yaml:"secret"`
	PreviousSecrets []introspect.Secret `yaml:"previous_secrets"`
	MaxAge          time.Duration       `yaml:"max_age"`
}

// laterKeys are contract keys whose features have not landed yet. Naming
// them gives a clearer error than "unknown key", and refusing them is safer
// than accepting a setting that would do nothing.
var laterKeys = map[string]string{
	"introspection_clients": "the /introspect and /revoke endpoints",
	"ssf":                   "the Shared Signals receiver",
	"audit":                 "the audit log",
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
	var errs []error
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if what, ok := laterKeys[doc.Content[i].Value]; ok {
			errs = append(errs, fmt.Errorf("%s: not supported yet (%s has not landed)", doc.Content[i].Value, what))
			doc.Content = append(doc.Content[:i], doc.Content[i+2:]...)
			i -= 2
		}
	}
	errs = append(errs, checkKeys(doc, reflect.TypeOf(Config{}), "")...)
	errs = append(errs, expandEnv(doc, "", lookupEnv)...)
	// Decode ignores the unknown keys reported above, so Validate still
	// runs and every problem of the file is reported at once.
	var cfg Config
	if err := doc.Decode(&cfg); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("config: %w", err))...)
	}
	cfg.applyDefaults()
	errs = append(errs, prefixed("", cfg.Validate())...)
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
	if c.Session.MaxAge == 0 {
		c.Session.MaxAge = defaultSessionMaxAge
	}
	for i := range c.Issuers {
		c.Issuers[i] = c.Issuers[i].WithDefaults()
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
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("public_url: not an absolute http(s) URL"))
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: required (the revocation store persists there)"))
	}
	if c.ClockSkew != nil && (*c.ClockSkew < 0 || *c.ClockSkew > maxClockSkew) {
		errs = append(errs, fmt.Errorf("clock_skew: must be between 0 and %s", maxClockSkew))
	}
	switch c.Store.Backend {
	case "memory":
	case "redis":
		errs = append(errs, errors.New("store.backend: redis is not supported yet (the shared-store issue has not landed)"))
	default:
		errs = append(errs, fmt.Errorf("store.backend: %q is not one of memory, redis", c.Store.Backend))
	}
	if c.Session.Secret != "" && len(c.Session.Secret) < 32 {
		errs = append(errs, errors.New("session.secret: shorter than 32 characters"))
	}
	for i, s := range c.Session.PreviousSecrets {
		if len(s) < 32 {
			errs = append(errs, fmt.Errorf("session.previous_secrets[%d]: shorter than 32 characters", i))
		}
	}
	if c.Session.MaxAge < 0 {
		errs = append(errs, errors.New("session.max_age: must not be negative"))
	}
	if len(c.Issuers) == 0 {
		errs = append(errs, errors.New("issuers: at least one issuer is required"))
	}
	seen := map[string]int{}
	for i, iss := range c.Issuers {
		add(fmt.Sprintf("issuers[%d]", i), iss.Validate())
		if j, dup := seen[iss.Issuer]; dup && iss.Issuer != "" {
			errs = append(errs, fmt.Errorf("issuers[%d].issuer: duplicate of issuers[%d]", i, j))
		}
		seen[iss.Issuer] = i
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("routes: at least one route is required"))
	}
	add("", gateway.Config{Routes: c.Routes}.Validate())
	add("admin", c.Admin.Validate())
	return errors.Join(errs...)
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
