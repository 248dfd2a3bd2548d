package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/console"
	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
	"github.com/oidcgate/oidcgate/propagate"
)

// shutdownGrace is how long in-flight requests may take to finish after
// SIGTERM before their connections are closed.
const shutdownGrace = 30 * time.Second

// storeFile is the bbolt file of the embedded store inside data_dir.
const storeFile = "revocations.db"

// revocationStore is what the gateway's parts need of the revocation
// store; both backends provide it.
type revocationStore interface {
	introspect.Revocations
	logout.Store
	logout.Applier
	Len() int
	Subscribe(fn func(cache.Entry)) (cancel func())
	FirstSeen(ctx context.Context, key string, until time.Time) (bool, error)
	logout.LiveSIDs
	gateway.LiveSIDs
	gateway.UserIDs
	logout.EmailDirectory
	gateway.EmailDirectory
	logout.KeyRecords
	introspect.KeyStore
	Run(ctx context.Context) error
	Close() error
	propagate.Store
	logout.TargetSource
}

var (
	_ revocationStore = (*cache.Store)(nil)
	_ revocationStore = (*cache.Redis)(nil)
)

// gatewayApp is one running gateway: both listeners and what they serve.
type gatewayApp struct {
	log      *slog.Logger
	store    revocationStore
	redis    *cache.Redis // the store, with backend redis; else nil
	verifier *introspect.Verifier
	keys     *introspect.APIKeys
	keyAdmin *logout.KeyAdmin
	gw       *gateway.Gateway
	public   *http.Server
	internal *http.Server
	publicLn net.Listener
	intLn    net.Listener
	// The ext_authz gRPC service; nil without forward_auth.grpc_listen.
	grpc   *grpc.Server
	grpcLn net.Listener
	audit  *audit.Log  // nil without audit.path
	feed   *audit.Feed // nil without audit.path
	// worker ends revoked users at their session authorities; nil when no
	// issuer names one.
	worker *propagate.Worker
	// tx pushes SETs to ssf.receivers; nil without receivers.
	tx *propagate.Transmitter
}

// newGateway opens the store, builds every component and binds both
// listeners, so that the addresses are known (and port clashes reported)
// before anything is served.
func newGateway(cfg *Config, log *slog.Logger) (_ *gatewayApp, err error) {
	a := &gatewayApp{log: log}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err = prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if a.store, a.redis, err = openStore(cfg, log, reg); err != nil {
		return nil, fmt.Errorf("revocation store: %w", err)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "oidcgate_revocation_entries",
		Help: "Revocation entries currently enforced by this replica.",
	}, func() float64 { return float64(a.store.Len()) }))

	// revoker is the store as the revocation sources see it: with
	// audit.path, every Revoke writes its audit record before returning.
	var revoker revocationStore = a.store
	var observer gateway.AppLogoutObserver
	if cfg.Audit.Path != "" {
		if revoker, observer, err = a.openAudit(cfg.Audit, log, reg); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
	}

	a.verifier, err = introspect.New(introspect.Config{
		Issuers:     cfg.Issuers,
		ClockSkew:   *cfg.ClockSkew,
		Revocations: a.store,
		Logger:      log,
		Metrics:     reg,
	})
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	issuers := make([]string, len(cfg.Issuers))
	for i, iss := range cfg.Issuers {
		issuers[i] = iss.Issuer
	}
	a.keys, err = introspect.NewAPIKeys(introspect.KeysConfig{
		Store:   a.store,
		Issuers: issuers,
		MaxIdle: cfg.APIKeys.MaxIdle,
		Logger:  log,
		Metrics: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	login, _ := cfg.login()
	a.gw, err = gateway.New(gateway.Config{
		Routes:      cfg.Routes,
		ForwardAuth: cfg.ForwardAuth,
		PublicURL:   cfg.PublicURL,
		Session:     cfg.Session,
		Login:       login,
		ClockSkew:   *cfg.ClockSkew,
		Verifier:    a.verifier,
		IDTokens:    a.verifier,
		Sessions:    revoker,
		LiveSIDs:    a.store,
		Emails:      a.store,
		Logger:      log,
		Metrics:     reg,

		UserIDs:      a.store,
		UserIDClaims: cfg.userIDClaims(),

		AppLogoutObserver: observer,

		APIKeys:                           a.keys,
		APIKeyHeader:                      cfg.APIKeys.Header,
		InsecureEmailWithoutEmailVerified: unverifiedEmailIssuers(cfg.Issuers),
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	lifetimes := make(map[string]time.Duration, len(cfg.Issuers))
	var frontchannelOff []string
	for _, iss := range cfg.Issuers {
		lifetimes[iss.Issuer] = iss.MaxTokenLifetime
		if iss.FrontchannelLogout != nil && !*iss.FrontchannelLogout {
			frontchannelOff = append(frontchannelOff, iss.Issuer)
		}
	}
	var frontchannelWithoutISS string
	if _, at := cfg.login(); at >= 0 && cfg.Issuers[at].FrontchannelLogoutWithoutISS {
		frontchannelWithoutISS = cfg.Issuers[at].Issuer
	}
	lcfg := logout.Config{
		Admin:           cfg.Admin,
		FrontchannelOff: frontchannelOff,
		Lifetimes:       lifetimes,
		SessionMaxAge:   cfg.Session.MaxAge,
		ClockSkew:       *cfg.ClockSkew,
		Store:           revoker,
		Verifier:        a.verifier,
		Replays:         a.store,
		LiveSIDs:        a.store,
		Logger:          log,
		Metrics:         reg,

		KeyMaxLifetime: cfg.APIKeys.MaxLifetime,

		Assertions: a.verifier,
		PublicURL:  cfg.PublicURL,
		Emails:     a.store,

		FrontchannelWithoutISS: frontchannelWithoutISS,
	}
	admin, err := logout.NewAdmin(lcfg)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	routeNames := make([]string, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routeNames[i] = r.Name()
	}
	a.keyAdmin, err = logout.NewKeyAdmin(logout.KeyAdminConfig{
		Config:  lcfg,
		Keys:    cfg.APIKeys.keys(),
		Records: a.store,
		Audit:   a.audit,
		Routes:  routeNames,
	})
	if err != nil {
		return nil, fmt.Errorf("key admin API: %w", err)
	}
	if a.tx, err = newTransmitter(cfg, log); err != nil {
		return nil, fmt.Errorf("ssf transmitter: %w", err)
	}
	if a.worker, err = newPropagation(cfg, a.tx, a.store, a.audit, log, reg); err != nil {
		return nil, fmt.Errorf("session authorities: %w", err)
	}
	if a.worker != nil {
		admin.SetTargets(a.store, a.worker.Plan)
	} else {
		admin.SetTargets(a.store, nil)
	}
	admin.SetApplier(a.store)
	backchannel, err := logout.NewBackchannel(lcfg)
	if err != nil {
		return nil, fmt.Errorf("back-channel logout: %w", err)
	}
	frontchannel, err := logout.NewFrontchannel(lcfg)
	if err != nil {
		return nil, fmt.Errorf("front-channel logout: %w", err)
	}
	ssf, err := newSSF(cfg, lcfg, log, reg)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	// The logout receivers sit in front of the gateway, which answers 404
	// for every other /oauth2/ path.
	public := http.NewServeMux()
	public.Handle(logout.BackchannelPath, backchannel)
	if len(frontchannelOff) < len(cfg.Issuers) {
		// With front-channel logout off for every issuer the path is
		// not mounted: 404 like any unknown /oauth2/ path.
		public.Handle(logout.FrontchannelPath, frontchannel)
	}
	if ssf != nil && cfg.SSF.Public {
		public.Handle(logout.SSFPath, ssf)
	}
	if cfg.PublicURL != "" {
		// Without public_url the endpoint has no URL for its JWTs' aud:
		// not mounted, 404 like any unknown /oauth2/ path.
		universal, err := logout.NewUniversalLogout(lcfg)
		if err != nil {
			return nil, fmt.Errorf("universal logout: %w", err)
		}
		public.Handle(logout.UniversalLogoutPath, universal)
	}
	if a.tx != nil {
		// Receivers verify the gateway's SETs with these (SSF 1.0 §7).
		public.Handle(propagate.ConfigurationPath, a.tx.ConfigurationHandler())
		public.Handle(propagate.JWKSPath, a.tx.JWKSHandler())
	}
	public.Handle("/", a.gw)

	introspection, err := introspect.NewServer(introspect.ServerConfig{
		Clients:  cfg.IntrospectionClients,
		Verifier: a.verifier,
		Keys:     a.keys,
		Store:    revoker,
		Logger:   log,
		Metrics:  reg,
	})
	if err != nil {
		return nil, fmt.Errorf("introspection endpoints: %w", err)
	}

	internal := http.NewServeMux()
	internal.HandleFunc("/introspect", introspection.ServeIntrospect)
	internal.HandleFunc("/revoke", introspection.ServeRevoke)
	internal.Handle("/admin/revocations", admin)
	internal.Handle(logout.KeysPath, a.keyAdmin)
	internal.Handle(logout.KeysPath+"/", a.keyAdmin)
	if ssf != nil && !cfg.SSF.Public {
		internal.Handle(logout.SSFPath, ssf)
	}
	if a.audit != nil {
		internal.Handle("/admin/audit", admin.AuditHandler(a.audit))
	}
	status := admin.StatusHandler(a.store, a.audit)
	internal.Handle(logout.StatusPath, status)
	con, err := newConsole(cfg, admin, status, a.keyAdmin, a.audit, a.store, reg, log)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	internal.Handle(console.Prefix, con)
	internal.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	internal.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
	internal.HandleFunc("/readyz", a.ready)

	a.public = newServer(public, publicReadTimeout, log)
	a.internal = newServer(internal, internalReadTimeout, log)
	for _, w := range cfg.Warnings() {
		log.Warn("config: " + w)
	}
	if a.publicLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if a.intLn, err = net.Listen("tcp", cfg.InternalListen); err != nil {
		return nil, fmt.Errorf("internal_listen: %w", err)
	}
	if cfg.ForwardAuth.GRPCListen != "" {
		if a.grpcLn, err = net.Listen("tcp", cfg.ForwardAuth.GRPCListen); err != nil {
			return nil, fmt.Errorf("forward_auth.grpc_listen: %w", err)
		}
		a.grpc = newGRPCServer()
		authv3.RegisterAuthorizationServer(a.grpc, a.gw.AuthorizationServer())
	}
	return a, nil
}

// newConsole builds the operator console on the admin API's handlers. Its
// cookie key derives from session.secret when one is set (so that every
// replica opens every replica's cookies), else from a random secret of
// this process (sessions end with it).
func newConsole(cfg *Config, admin *logout.Admin, status http.Handler, keys *logout.KeyAdmin, au *audit.Log, store revocationStore, reg *prometheus.Registry, log *slog.Logger) (*console.Console, error) {
	secret := string(cfg.Session.Secret)
	if secret == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		secret = hex.EncodeToString(b)
	}
	issuers := make([]string, len(cfg.Issuers))
	for i, iss := range cfg.Issuers {
		issuers[i] = iss.Issuer
	}
	ccfg := console.Config{
		Auth:        admin.Authenticator(),
		Secret:      "console:" + secret,
		TTL:         cfg.Console.SessionTTL,
		Revocations: admin,
		Status:      status,
		Keys:        keys,
		Store:       store,
		Metrics:     reg,
		Issuers:     issuers,
		Audit:       au,
		Logger:      log,
	}
	return console.New(ccfg)
}

// newSSF builds the Shared Signals receiver on lcfg; nil when no
// transmitter is configured (then /ssf/events is not mounted).
func newSSF(cfg *Config, lcfg logout.Config, log *slog.Logger, reg prometheus.Registerer) (*logout.SSF, error) {
	if len(cfg.SSF.Transmitters) == 0 {
		return nil, nil
	}
	sets, err := introspect.NewSETVerifier(introspect.SETConfig{
		Transmitters: cfg.SSF.Transmitters,
		ClockSkew:    *cfg.ClockSkew,
		Logger:       log,
		Metrics:      reg,
	})
	if err != nil {
		return nil, err
	}
	lcfg.SETs = sets
	return logout.NewSSF(lcfg)
}

// openStore opens the configured revocation store; with backend redis it
// also returns it as a *cache.Redis (for /readyz) and registers its
// metrics on reg.
func openStore(cfg *Config, log *slog.Logger, reg prometheus.Registerer) (revocationStore, *cache.Redis, error) {
	local := cache.Config{
		Path:      filepath.Join(cfg.DataDir, storeFile),
		ClockSkew: *cfg.ClockSkew,
		Logger:    log,
	}
	if cfg.Store.Backend != "redis" {
		s, err := cache.Open(local)
		if err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	rc := cfg.Store.redisConfig(cfg.DataDir)
	rc.Local = local
	rc.Metrics = reg
	// Operators tell replicas apart in `oidcgate verify-revocation` by
	// host name and internal listener.
	rc.ReplicaName, _ = os.Hostname()
	rc.ReplicaAddr = cfg.InternalListen
	r, err := cache.OpenRedis(rc)
	if err != nil {
		return nil, nil, err
	}
	return r, r, nil
}

// The listeners' limits (README, "Limits of the listeners").
const (
	// serverReadHeaderTimeout bounds reading a request's header
	// (slowloris).
	serverReadHeaderTimeout = 10 * time.Second
	// publicReadTimeout bounds reading a whole request, body included, on
	// the public listener: uploads must finish within it. It does not
	// bound responses (streams, long polls) or WebSocket tunnels (a
	// hijacked connection drops its deadlines).
	publicReadTimeout = 5 * time.Minute
	// internalReadTimeout is the same on the internal listener, whose
	// requests are small.
	internalReadTimeout = 30 * time.Second
	// serverIdleTimeout closes keep-alive connections idle this long.
	serverIdleTimeout = 2 * time.Minute
	// serverMaxHeaderBytes is large enough for a 16 KiB bearer token plus
	// cookies; the gateway refuses an oversize Authorization header itself
	// (RFC 6750 §3.1). A larger header gets 431.
	serverMaxHeaderBytes = 64 << 10
)

func newServer(h http.Handler, readTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    serverMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// newGRPCServer is the ext_authz server: bounded messages and streams,
// handshakes and idle connections time out.
func newGRPCServer() *grpc.Server {
	return grpc.NewServer(
		grpc.MaxRecvMsgSize(1<<20),
		grpc.MaxConcurrentStreams(1024),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	)
}

// ready answers /readyz: 200 only when the store is open and every
// issuer's keys are loaded, so a load balancer never sends traffic to a
// replica that could only answer 503. With backend redis it is 503 until
// the first synchronisation and while fail_closed refuses; 200 with
// status "degraded" while the replica enforces but is out of sync or has
// revocations not yet delivered to Redis.
func (a *gatewayApp) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var store *storeStatus
	if a.redis != nil {
		st := a.redis.Status()
		store = &storeStatus{
			Backend: "redis", InSync: st.InSync, Reachable: st.Reachable, Queued: st.Queued,
			StalenessSeconds: st.Staleness.Seconds(), Refusing: st.Refusing, LastError: st.LastError,
		}
		switch {
		case !st.Synced:
			writeReady(w, http.StatusServiceUnavailable, readyBody{"unavailable", "revocation store: not yet synchronised with redis", store})
			return
		case st.Refusing:
			writeReady(w, http.StatusServiceUnavailable, readyBody{"unavailable", "revocation store: out of sync with redis for longer than max_staleness (fail_closed)", store})
			return
		}
	}
	if err := a.verifier.Ready(ctx); err != nil {
		writeReady(w, http.StatusServiceUnavailable, readyBody{"unavailable", err.Error(), store})
		return
	}
	if store != nil && (!store.InSync || store.Queued > 0) {
		writeReady(w, http.StatusOK, readyBody{"degraded", "revocation store: out of sync with redis or revocations queued", store})
		return
	}
	if a.tx != nil {
		if err := a.tx.Keys().Err(); err != nil {
			// The gateway enforces every revocation; only the SETs to
			// ssf.receivers wait (their targets stay pending).
			writeReady(w, http.StatusOK, readyBody{"degraded", "ssf transmitter: " + err.Error(), store})
			return
		}
	}
	writeReady(w, http.StatusOK, readyBody{Status: "ok", Store: store})
}

// readyBody is /readyz's JSON.
type readyBody struct {
	Status string       `json:"status"`
	Reason string       `json:"reason,omitempty"`
	Store  *storeStatus `json:"store,omitempty"`
}

// storeStatus is the shared store's health in /readyz.
type storeStatus struct {
	Backend          string  `json:"backend"`
	InSync           bool    `json:"in_sync"`
	Reachable        bool    `json:"reachable"`
	Queued           int64   `json:"queued"`
	StalenessSeconds float64 `json:"staleness_seconds"`
	Refusing         bool    `json:"refusing"`
	LastError        string  `json:"last_error,omitempty"`
}

func writeReady(w http.ResponseWriter, code int, body readyBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	writeReady(w, code, readyBody{Status: status, Reason: reason})
}

// run serves until ctx is cancelled, then drains in-flight requests (up to
// shutdownGrace), stops background work and closes the store.
func (a *gatewayApp) run(ctx context.Context) error {
	defer a.close()
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { return a.store.Run(gctx) })
	g.Go(func() error { return a.verifier.Run(gctx) })
	g.Go(func() error { return a.gw.Run(gctx) })
	g.Go(func() error { return a.keys.Run(gctx) })
	g.Go(func() error { return a.keyAdmin.Run(gctx) })
	if a.worker != nil {
		g.Go(func() error { return a.worker.Run(gctx) })
	}
	g.Go(func() error { return serve(a.public, a.publicLn) })
	g.Go(func() error { return serve(a.internal, a.intLn) })
	if a.grpc != nil {
		g.Go(func() error { return a.grpc.Serve(a.grpcLn) })
		a.log.Info("ext_authz gRPC serving", "grpc_listen", a.grpcLn.Addr().String())
	}
	a.log.Info("oidcgate serving", "listen", a.publicLn.Addr().String(), "internal_listen", a.intLn.Addr().String())

	select {
	case <-ctx.Done():
		a.log.Info("shutting down: draining in-flight requests", "grace", shutdownGrace.String())
	case <-gctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	errs := []error{a.public.Shutdown(sctx), a.internal.Shutdown(sctx)}
	if a.grpc != nil {
		stopped := make(chan struct{})
		go func() {
			a.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-sctx.Done():
			a.grpc.Stop()
		}
	}
	stopBG()
	errs = append(errs, g.Wait())
	return errors.Join(errs...)
}

func serve(s *http.Server, ln net.Listener) error {
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// close releases what newGateway acquired; safe on a partial gatewayApp.
func (a *gatewayApp) close() {
	if a.grpc != nil {
		a.grpc.Stop()
	}
	for _, ln := range []net.Listener{a.publicLn, a.intLn, a.grpcLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.gw != nil {
		// Drains the app logout calls still queued.
		a.gw.Close()
	}
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Error("closing revocation store", "err", err)
		}
	}
	if a.feed != nil {
		a.feed.Close()
	}
	if a.audit != nil {
		if err := a.audit.Close(); err != nil {
			a.log.Error("closing audit log", "err", err)
		}
	}
}

// unverifiedEmailIssuers lists the issuers with
// insecure_email_without_email_verified.
func unverifiedEmailIssuers(issuers []introspect.Issuer) []string {
	var out []string
	for _, is := range issuers {
		if is.InsecureEmailWithoutEmailVerified {
			out = append(out, is.Issuer)
		}
	}
	return out
}
