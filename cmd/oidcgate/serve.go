package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
)

// shutdownGrace is how long in-flight requests may take to finish after
// SIGTERM before their connections are closed.
const shutdownGrace = 30 * time.Second

// storeFile is the bbolt file of the embedded store inside data_dir.
const storeFile = "revocations.db"

// gatewayApp is one running gateway: both listeners and what they serve.
type gatewayApp struct {
	log      *slog.Logger
	store    *cache.Store
	verifier *introspect.Verifier
	public   *http.Server
	internal *http.Server
	publicLn net.Listener
	intLn    net.Listener
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

	a.store, err = cache.Open(cache.Config{
		Path:      filepath.Join(cfg.DataDir, storeFile),
		ClockSkew: *cfg.ClockSkew,
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("revocation store: %w", err)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "oidcgate_revocation_entries",
		Help: "Revocation entries currently enforced by this replica.",
	}, func() float64 { return float64(a.store.Len()) }))

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
	gw, err := gateway.New(gateway.Config{
		Routes:   cfg.Routes,
		Verifier: a.verifier,
		Logger:   log,
		Metrics:  reg,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	lifetimes := make(map[string]time.Duration, len(cfg.Issuers))
	for _, iss := range cfg.Issuers {
		lifetimes[iss.Issuer] = iss.MaxTokenLifetime
	}
	admin, err := logout.NewAdmin(logout.Config{
		Admin:         cfg.Admin,
		Lifetimes:     lifetimes,
		SessionMaxAge: cfg.Session.MaxAge,
		ClockSkew:     *cfg.ClockSkew,
		Store:         a.store,
		Logger:        log,
		Metrics:       reg,
	})
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}

	internal := http.NewServeMux()
	internal.Handle("/admin/revocations", admin)
	internal.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	internal.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
	internal.HandleFunc("/readyz", a.ready)

	a.public = newServer(gw, log)
	a.internal = newServer(internal, log)
	if a.publicLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if a.intLn, err = net.Listen("tcp", cfg.InternalListen); err != nil {
		return nil, fmt.Errorf("internal_listen: %w", err)
	}
	return a, nil
}

func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Large enough for a 16 KiB bearer token plus cookies; the gateway
		// refuses an oversize Authorization header itself (RFC 6750 §3.1).
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ready answers /readyz: 200 only when the store is open and every
// issuer's keys are loaded, so a load balancer never sends traffic to a
// replica that could only answer 503.
func (a *gatewayApp) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.verifier.Ready(ctx); err != nil {
		writeStatus(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	writeStatus(w, http.StatusOK, "ready", "")
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}{status, reason})
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
	g.Go(func() error { return serve(a.public, a.publicLn) })
	g.Go(func() error { return serve(a.internal, a.intLn) })
	a.log.Info("oidcgate serving", "listen", a.publicLn.Addr().String(), "internal_listen", a.intLn.Addr().String())

	select {
	case <-ctx.Done():
		a.log.Info("shutting down: draining in-flight requests", "grace", shutdownGrace.String())
	case <-gctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	errs := []error{a.public.Shutdown(sctx), a.internal.Shutdown(sctx)}
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
	for _, ln := range []net.Listener{a.publicLn, a.intLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Error("closing revocation store", "err", err)
		}
	}
}
