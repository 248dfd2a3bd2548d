package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/oidcgate/oidcgate/clock"
)

// Unavailable says what a Redis-backed store does once it has been cut off
// from Redis for longer than RedisConfig.MaxStaleness.
type Unavailable string

const (
	// FailOpen keeps answering from the local mirror: every revocation this
	// replica knew or accepted is still enforced; ones accepted elsewhere
	// during the outage are not, until Redis is back.
	FailOpen Unavailable = "fail_open"
	// FailClosed makes IsRevoked report every credential revoked, so the
	// replica refuses every authenticated request until it is in sync again.
	FailClosed Unavailable = "fail_closed"
)

// RedisOptions says how to reach Redis (the `store.redis` YAML section).
// Addr is a single node. Addrs is a list: with MasterName, the Sentinels;
// with several addresses, or Cluster, the seeds of a Redis Cluster; one
// address alone is a single node. Exactly one of Addr and Addrs is set.
type RedisOptions struct {
	Addr     string   `yaml:"addr"`
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	// Password is never logged (see LogValue).
	Password string `yaml:"password"`
	// DB selects the database of a single node or Sentinel master; 0 is the
	// default database. Cluster has only database 0.
	DB int `yaml:"db"`
	// TLS connects with TLS 1.2 or later, verifying the server against the
	// system roots (RedisConfig.TLSConfig overrides this).
	TLS bool `yaml:"tls"`
	// MasterName is the Sentinel master name; "" means no Sentinel.
	MasterName string `yaml:"master_name"`
	// Cluster forces Cluster mode with a single seed address.
	Cluster bool `yaml:"cluster"`
	// KeyPrefix namespaces the keys, so that several deployments can share a
	// Redis; "" means "oidcgate". Every key carries it as a hash tag
	// ({prefix}), which puts them in one Cluster slot: each write updates
	// an entry and the stream atomically.
	KeyPrefix string `yaml:"key_prefix"`
	// StreamMaxLen bounds the revocation stream (trimmed approximately);
	// 0 means 1,000,000. A replica that falls further behind than this
	// resynchronises with a full scan, so it bounds memory, not correctness.
	StreamMaxLen int64 `yaml:"stream_max_len"`
	// Timeout bounds each Redis command and dial; 0 means 2 seconds.
	Timeout time.Duration `yaml:"timeout"`
}

// LogValue redacts the password.
func (o RedisOptions) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", o.Addr),
		slog.Any("addrs", o.Addrs),
		slog.String("username", o.Username),
		slog.Bool("password_set", o.Password != ""),
		slog.Int("db", o.DB),
		slog.Bool("tls", o.TLS),
		slog.String("master_name", o.MasterName),
		slog.String("key_prefix", o.KeyPrefix),
	)
}

// Validate reports every problem of o at once, with YAML paths relative to
// the `redis` section. It does no I/O.
func (o RedisOptions) Validate() error {
	var errs []error
	switch {
	case o.Addr == "" && len(o.Addrs) == 0:
		errs = append(errs, errors.New("addr: required (or addrs, for Sentinel or Cluster)"))
	case o.Addr != "" && len(o.Addrs) > 0:
		errs = append(errs, errors.New("addrs: give addr or addrs, not both"))
	}
	if host, port, err := net.SplitHostPort(o.Addr); o.Addr != "" && (err != nil || host == "" || port == "") {
		errs = append(errs, errors.New("addr: not a host:port address"))
	}
	for i, a := range o.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("addrs[%d]: not a host:port address", i))
		}
	}
	if o.DB < 0 {
		errs = append(errs, errors.New("db: must not be negative"))
	}
	if o.DB != 0 && (o.Cluster || (len(o.Addrs) > 1 && o.MasterName == "")) {
		errs = append(errs, errors.New("db: Redis Cluster has only database 0"))
	}
	if strings.ContainsAny(o.KeyPrefix, "{}*?[]\\ \r\n") {
		errs = append(errs, errors.New("key_prefix: must not contain braces, glob characters or spaces"))
	}
	if o.StreamMaxLen < 0 {
		errs = append(errs, errors.New("stream_max_len: must not be negative"))
	}
	if o.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// RedisConfig configures OpenRedis.
type RedisConfig struct {
	Redis RedisOptions
	// Local configures the mirror. Path is required: it holds the mirror
	// (reloaded at start, so a replica restarted while Redis is down still
	// enforces what it knew) and the outbox of revocations not yet in Redis.
	Local Config
	// OnUnavailable applies once the replica has been out of sync for longer
	// than MaxStaleness; "" means FailOpen.
	OnUnavailable Unavailable
	// MaxStaleness is how long the replica may be out of sync before
	// OnUnavailable applies; 0 means 30 seconds.
	MaxStaleness time.Duration
	// TLSConfig, when not nil, is used instead of the one Redis.TLS builds.
	TLSConfig *tls.Config
	// Metrics registers the store's metrics; nil registers none.
	Metrics prometheus.Registerer
	// HeartbeatInterval is how often the replica records itself as alive
	// in Redis (see Applied); 0 means 5 seconds, and it must not be less
	// than 10ms. A replica silent for 3 of its intervals counts as down.
	HeartbeatInterval time.Duration
	// ReplicaName and ReplicaAddr describe this replica in its heartbeat
	// (e.g. the host name and the internal listener's address), so that
	// operators can tell replicas apart; "" means not given. Each is at
	// most 256 bytes.
	ReplicaName, ReplicaAddr string
}

// Validate reports every problem of c at once. It does no I/O.
func (c RedisConfig) Validate() error {
	errs := []error{c.Local.Validate()}
	for _, err := range splitJoined(c.Redis.Validate()) {
		errs = append(errs, fmt.Errorf("redis.%w", err))
	}
	if c.Local.Path == "" {
		errs = append(errs, errors.New("path: required with redis (the outbox of undelivered revocations is kept there)"))
	}
	switch c.OnUnavailable {
	case "", FailOpen, FailClosed:
	default:
		errs = append(errs, fmt.Errorf("on_unavailable: %q is not one of fail_open, fail_closed", c.OnUnavailable))
	}
	if c.MaxStaleness < 0 {
		errs = append(errs, errors.New("max_staleness: must not be negative"))
	}
	if c.HeartbeatInterval < 0 || (c.HeartbeatInterval > 0 && c.HeartbeatInterval < minHeartbeat) {
		errs = append(errs, fmt.Errorf("heartbeat_interval: must be 0 (the default, 5s) or at least %s", minHeartbeat))
	}
	if len(c.ReplicaName) > maxReplicaText || len(c.ReplicaAddr) > maxReplicaText {
		errs = append(errs, fmt.Errorf("replica name and address: longer than %d bytes", maxReplicaText))
	}
	return errors.Join(errs...)
}

func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

const (
	defaultKeyPrefix    = "oidcgate"
	defaultStreamMaxLen = 1_000_000
	defaultRedisTimeout = 2 * time.Second
	defaultMaxStaleness = 30 * time.Second
)

// outboxBucket holds, by entry key, the revocations accepted here and not
// yet known to be in Redis.
var outboxBucket = []byte("redis-outbox")

// Redis is a revocation store shared through Redis. Redis holds every entry
// (a string per entry, expiring at ExpiresAt) and a stream of changes; each
// replica keeps a local mirror (a Store) that answers every lookup, applies
// the stream as it arrives, and resynchronises on (re)connect so that no
// entry is missed. See README.md, "Several replicas", for the design and
// its failure analysis. Its methods are safe for concurrent use.
type Redis struct {
	local   *Store
	client  redis.UniversalClient
	log     *slog.Logger
	now     func() time.Time
	clk     clock.Clock
	keys    keyspace
	timeout time.Duration
	// epoch is the Redis data set the mirror last synchronised with; only
	// the follower uses it after OpenRedis.
	epoch string

	failClosed bool
	maxStale   time.Duration

	// refuse is FailClosed in force: IsRevoked's only extra cost.
	refuse atomic.Bool
	// healthy: resynchronised and tailing the stream without error.
	healthy atomic.Bool
	// down: the last Redis call failed; Revoke then queues without waiting.
	down atomic.Bool
	// synced: a full resynchronisation has completed since Open.
	synced atomic.Bool
	// lastContact is the last time (Unix ns) the mirror was known in sync.
	lastContact atomic.Int64
	queued      atomic.Int64
	// inflight counts Revokes writing to Redis themselves: their outbox
	// records need no delivery unless the write fails.
	inflight   atomic.Int64
	reconnects atomic.Uint64
	resyncs    atomic.Uint64
	badRecords atomic.Uint64
	lastErr    atomic.Pointer[string]

	lag prometheus.Histogram // nil without Metrics

	// heartbeat is the heartbeat interval; name and addr describe this
	// replica in it; beaten: a heartbeat was written.
	heartbeat  time.Duration
	name, addr string
	beaten     atomic.Bool
	// applied queues the acks of applied entries for Redis.
	applied ackQueue

	wake    chan struct{} // wakes the deliverer after a failed write
	ackMu   sync.Mutex
	acks    []ack // delivered by Revoke; the deliverer dequeues them
	persist persister

	running   sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}
}

// ack is an outbox record known to be in Redis: it is deleted if the
// outbox still holds exactly that value.
type ack struct{ key, value []byte }

// OpenRedis validates cfg, applies defaults, opens the local mirror (loading
// what it held) and registers the metrics. It does not contact Redis: Run
// does, and until it has resynchronised, Status().Synced is false.
func OpenRedis(cfg RedisConfig) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	o := cfg.Redis
	if o.Addr != "" {
		o.Addrs = []string{o.Addr}
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = defaultKeyPrefix
	}
	if o.StreamMaxLen == 0 {
		o.StreamMaxLen = defaultStreamMaxLen
	}
	if o.Timeout == 0 {
		o.Timeout = defaultRedisTimeout
	}
	if cfg.MaxStaleness == 0 {
		cfg.MaxStaleness = defaultMaxStaleness
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = defaultHeartbeat
	}
	tlsConfig := cfg.TLSConfig
	if tlsConfig == nil && o.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	local, err := Open(cfg.Local)
	if err != nil {
		return nil, err
	}
	r := &Redis{
		local:      local,
		log:        local.log,
		now:        local.now,
		clk:        local.clk,
		keys:       newKeyspace(o.KeyPrefix, o.StreamMaxLen),
		timeout:    o.Timeout,
		failClosed: cfg.OnUnavailable == FailClosed,
		maxStale:   cfg.MaxStaleness,
		heartbeat:  cfg.HeartbeatInterval,
		name:       cfg.ReplicaName,
		addr:       cfg.ReplicaAddr,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	r.persist.init()
	r.applied.init()
	r.lastContact.Store(r.now().UnixNano())
	if err := local.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(outboxBucket)
		if err != nil {
			return err
		}
		r.queued.Store(int64(b.Stats().KeyN))
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		r.epoch = string(meta.Get(epochKey))
		return nil
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("cache: open %s: outbox: %w", cfg.Local.Path, err), local.Close())
	}
	if err := r.register(cfg.Metrics); err != nil {
		return nil, errors.Join(err, local.Close())
	}
	r.client = redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:           o.Addrs,
		Username:        o.Username,
		Password:        o.Password,
		DB:              o.DB,
		MasterName:      o.MasterName,
		IsClusterMode:   o.Cluster,
		TLSConfig:       tlsConfig,
		DialTimeout:     o.Timeout,
		ReadTimeout:     o.Timeout,
		WriteTimeout:    o.Timeout,
		PoolTimeout:     o.Timeout,
		MaxRetries:      1,
		DisableIdentity: true,
	})
	r.log.Info("revocation store: redis backend", "redis", o, "queued", r.queued.Load(), "on_unavailable", string(cfg.OnUnavailable))
	return r, nil
}

// register adds the store's metrics to reg (nil: none).
func (r *Redis) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	r.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "oidcgate_revocation_propagation_seconds",
		Help:    "Time from a revocation's acceptance on some replica (its revoked_at) to its application here, for revocations received from Redis.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, c := range []prometheus.Collector{
		r.lag,
		gauge("oidcgate_store_queue_depth", "Revocations accepted here and not yet delivered to Redis.", func() float64 { return float64(r.queued.Load()) }),
		gauge("oidcgate_store_staleness_seconds", "How long this replica's mirror has been out of sync with Redis; 0 when in sync.", func() float64 { return r.Staleness().Seconds() }),
		gauge("oidcgate_store_degraded", "1 when this replica is out of sync with Redis or has undelivered revocations.", func() float64 { return b2f(r.Status().Degraded()) }),
		gauge("oidcgate_store_refusing", "1 when on_unavailable is fail_closed and max_staleness has passed: every credential counts as revoked.", func() float64 { return b2f(r.refuse.Load()) }),
		counter("oidcgate_store_reconnects_total", "Times this replica got back in sync with Redis after losing it.", r.reconnects.Load),
		counter("oidcgate_store_resyncs_total", "Full scans of Redis into the mirror (at start, and when the stream lost entries).", r.resyncs.Load),
		counter("oidcgate_store_bad_records_total", "Records read from Redis that did not decode and were ignored.", r.badRecords.Load),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cache: metrics: %w", err)
		}
	}
	return nil
}

// Revoke applies e to the mirror and, in the same fsync'd transaction,
// queues it in the outbox: when Revoke returns nil the entry is enforced
// here and will reach Redis. It then writes it to Redis (bounded by the
// Redis timeout) unless Redis is known to be down; a failed write leaves
// it queued for the deliverer and is not an error. Errors are those of
// Store.Revoke.
func (r *Redis) Revoke(ctx context.Context, e Entry) (Entry, error) {
	var q queuedRow
	stored, err := r.local.revoke(ctx, e, q.queue)
	if err != nil {
		return Entry{}, err
	}
	r.publishQueued(ctx, rowOf(stored), q)
	return stored, nil
}

// queuedRow notes what queue put in the outbox.
type queuedRow struct {
	fresh bool
	value []byte
}

// queue puts a row in the outbox in the transaction that stores it.
func (q *queuedRow) queue(tx *bolt.Tx, k []byte, in row) error {
	b := tx.Bucket(outboxBucket)
	q.fresh = b.Get(k) == nil
	q.value = encodeValue(in)
	return b.Put(k, q.value)
}

// publishQueued writes a row stored and queued here to Redis (bounded by
// the Redis timeout) unless Redis is known to be down; a failed write
// leaves it queued for the deliverer.
func (r *Redis) publishQueued(ctx context.Context, in row, q queuedRow) {
	if q.fresh {
		r.queued.Add(1)
	}
	r.applied.add([]row{in}, r.now().UnixNano())
	if r.down.Load() {
		r.signal()
		return
	}
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	// The write outlives a caller that hangs up: the entry is queued anyway,
	// and delivering it now saves the deliverer a round.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	err := r.keys.publish(pctx, r.client, in)
	cancel()
	if err != nil {
		r.setDown(err)
		r.signal()
		return
	}
	r.ackMu.Lock()
	r.acks = append(r.acks, ack{encodeKey(in.kind, in.issuer, in.value), q.value})
	r.ackMu.Unlock()
}

// IsRevoked is Store.IsRevoked on the mirror, except that while FailClosed
// is in force (out of sync for longer than MaxStaleness) it reports every
// credential revoked. It does no I/O and does not allocate.
func (r *Redis) IsRevoked(c *Credential) bool {
	if r.refuse.Load() {
		return true
	}
	return r.local.IsRevoked(c)
}

// Get is Store.Get on the mirror.
func (r *Redis) Get(issuer string, kind Kind, value string) (Entry, bool) {
	return r.local.Get(issuer, kind, value)
}

// Len is Store.Len on the mirror.
func (r *Redis) Len() int { return r.local.Len() }

// List is Store.List on the mirror.
func (r *Redis) List(ctx context.Context, o ListOptions) ([]Entry, string, error) {
	return r.local.List(ctx, o)
}

// Sweep is Store.Sweep on the mirror; Redis expires its keys itself.
func (r *Redis) Sweep() int { return r.local.Sweep() }

// Staleness is how long the mirror has been out of sync with Redis: 0 while
// it follows the stream, else the time since it last did (or since Open).
func (r *Redis) Staleness() time.Duration {
	if r.healthy.Load() {
		return 0
	}
	return max(0, time.Duration(r.now().UnixNano()-r.lastContact.Load()))
}

// RedisStatus is a snapshot of a Redis store's health.
type RedisStatus struct {
	// InSync: resynchronised and following the stream.
	InSync bool
	// Reachable is false when the last Redis call failed.
	Reachable bool
	// Synced: a full resynchronisation has completed since Open.
	Synced bool
	// Refusing: FailClosed is in force.
	Refusing   bool
	Staleness  time.Duration
	Queued     int64
	Reconnects uint64
	Resyncs    uint64
	BadRecords uint64
	// LastError is the last Redis error, "" if none; it names no secret.
	LastError string
}

// Degraded reports whether the replica is out of sync or has revocations
// not yet delivered to Redis.
func (s RedisStatus) Degraded() bool { return !s.InSync || s.Queued > 0 }

// Status returns a snapshot of the store's health.
func (r *Redis) Status() RedisStatus {
	s := RedisStatus{
		InSync:     r.healthy.Load(),
		Reachable:  !r.down.Load(),
		Synced:     r.synced.Load(),
		Refusing:   r.refuse.Load(),
		Staleness:  r.Staleness(),
		Queued:     r.queued.Load(),
		Reconnects: r.reconnects.Load(),
		Resyncs:    r.resyncs.Load(),
		BadRecords: r.badRecords.Load(),
	}
	if p := r.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// Run follows Redis, delivers the outbox, persists what arrives and sweeps
// the mirror, until ctx is done or the store is closed; then it returns
// nil.
func (r *Redis) Run(ctx context.Context) error {
	select {
	case <-r.done:
		return nil
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	r.running.Add(6)
	go func() { defer r.running.Done(); r.follow(ctx) }()
	go func() { defer r.running.Done(); r.heartbeatLoop(ctx) }()
	go func() { defer r.running.Done(); r.ackLoop(ctx) }()
	go func() { defer r.running.Done(); r.deliver(ctx) }()
	go func() { defer r.running.Done(); r.persistLoop(ctx) }()
	go func() { defer r.running.Done(); r.watchStaleness(ctx) }()
	err := r.local.Run(ctx)
	cancel()
	r.running.Wait()
	return err
}

// Close stops Run, writes what the mirror has not persisted yet, records
// in Redis that this replica stopped (when it had heartbeat and Redis is
// reachable; bounded by the Redis timeout), and closes the Redis client
// and the mirror. It is idempotent; afterwards the Store.Close rules apply
// (IsRevoked keeps answering from memory).
func (r *Redis) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.done)
		r.running.Wait()
		r.flushPersist()
		if r.beaten.Load() && !r.down.Load() {
			if err := r.beat(context.Background(), true); err != nil {
				r.log.Warn("revocation store: recording this replica's stop in redis failed", "err", err)
			}
		}
		err = errors.Join(r.client.Close(), r.local.Close())
	})
	return err
}

// signal wakes the deliverer.
func (r *Redis) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// setDown records a failed Redis call.
func (r *Redis) setDown(err error) {
	msg := err.Error()
	r.lastErr.Store(&msg)
	if !r.down.Swap(true) {
		r.log.Warn("revocation store: redis unreachable; enforcing locally and queueing", "err", err)
	}
}
