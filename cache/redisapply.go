package cache

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// How replicas report themselves and what they applied, in Redis.
//
// Heartbeat: the hash {prefix}:replicas has one field per replica id whose
// value is a heartbeatRecord (JSON), written every heartbeat interval. A
// replica is up when its last heartbeat is at most livenessFactor of its
// own intervals old (by the reader's clock) and it has not recorded a
// graceful stop. Fields silent for replicaForget are removed.
//
// Acknowledgements: the hash {prefix}:a:<entry key> has one field per
// replica id whose value is the entry's revoked_at and the time the
// replica first applied that version, each as 20 sortable digits. The
// hash expires with the entry. Acks are queued (bounded) and written in
// pipelines by ackLoop, off the Revoke and follower paths; after every
// (re)synchronisation the whole mirror is acknowledged again, so an ack
// lost while Redis was away is written once it is back.
const (
	defaultHeartbeat = 5 * time.Second
	// minHeartbeat bounds the heartbeat's load on Redis.
	minHeartbeat = 10 * time.Millisecond
	// livenessFactor heartbeat intervals without news make a replica down.
	livenessFactor = 3
	// replicaForget is how long a silent replica stays listed (as down).
	replicaForget = 24 * time.Hour
	// pruneEvery heartbeats, a replica looks for forgotten ones.
	pruneEvery = 100
	// maxPendingAcks bounds the queued acks; beyond it they are dropped
	// and the whole mirror is acknowledged again on the next flush.
	maxPendingAcks = 100_000
	// ackDelay gathers acks into fewer pipelines.
	ackDelay = 5 * time.Millisecond
	// maxReplicaText bounds RedisConfig.ReplicaName and ReplicaAddr.
	maxReplicaText = 256
)

// ackSource records one replica's ack of an entry version: it keeps the
// later version and, for one version, the earlier applied time; then it
// makes the hash live at least until the entry expires.
//
// KEYS[1] ack hash; ARGV[1] replica id, ARGV[2] sortable revoked_at then
// sortable applied_at (40 bytes), ARGV[3] expires_at (Unix ms).
const ackSource = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
if not old or string.len(old) ~= 40 or string.sub(new, 1, 20) > string.sub(old, 1, 20)
  or (string.sub(new, 1, 20) == string.sub(old, 1, 20) and string.sub(new, 21, 40) < string.sub(old, 21, 40)) then
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 0
`

var ackScript = redis.NewScript(ackSource)

// heartbeatRecord is a replica's field in the replicas hash.
type heartbeatRecord struct {
	Name string `json:"name,omitempty"`
	Addr string `json:"addr,omitempty"`
	// Seen is the heartbeat's time, Unix ms; Every the interval, ms.
	Seen  int64 `json:"seen"`
	Every int64 `json:"every"`
	// Stopped is set by a graceful Close.
	Stopped bool `json:"stopped,omitempty"`
}

// up reports whether the replica counts as alive at now (Unix ms).
func (h heartbeatRecord) up(now int64) bool {
	return !h.Stopped && h.Every > 0 && now-h.Seen <= livenessFactor*h.Every
}

// appliedAck is a queued ack of an entry version.
type appliedAck struct{ revokedAt, expiresAt, appliedAt int64 }

// ackQueue holds the acks not yet written, by encoded entry key.
type ackQueue struct {
	mu      sync.Mutex
	pending map[string]appliedAck
	// all: acknowledge the whole mirror on the next flush (after a
	// resynchronisation, or when acks were dropped).
	all  bool
	kick chan struct{}
}

func (q *ackQueue) init() {
	q.pending = make(map[string]appliedAck)
	q.kick = make(chan struct{}, 1)
}

// add queues acks of rows applied at at (Unix ns).
func (q *ackQueue) add(rows []row, at int64) {
	q.mu.Lock()
	for _, r := range rows {
		q.put(string(encodeKey(r.kind, r.issuer, r.value)), appliedAck{r.revokedAt, r.expiresAt, at})
	}
	q.mu.Unlock()
	q.wake()
}

// put merges a into the queue like ackSource does; q.mu is held.
func (q *ackQueue) put(k string, a appliedAck) {
	old, ok := q.pending[k]
	switch {
	case !ok && len(q.pending) >= maxPendingAcks:
		q.all = true
		return
	case !ok, a.revokedAt > old.revokedAt:
	case a.revokedAt < old.revokedAt:
		return
	default:
		a.appliedAt = min(a.appliedAt, old.appliedAt)
		a.expiresAt = max(a.expiresAt, old.expiresAt)
	}
	q.pending[k] = a
}

// requeue puts back acks that could not be written, and the all flag.
func (q *ackQueue) requeue(acks map[string]appliedAck, all bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.all = q.all || all
	for k, a := range acks {
		q.put(k, a)
	}
}

func (q *ackQueue) take() (map[string]appliedAck, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var acks map[string]appliedAck
	if len(q.pending) > 0 {
		// The caller owns the map it gets; the queue starts a new one.
		acks, q.pending = q.pending, make(map[string]appliedAck)
	}
	all := q.all
	q.all = false
	return acks, all
}

// wakeIfPending wakes the writer when acks are waiting.
func (q *ackQueue) wakeIfPending() {
	q.mu.Lock()
	waiting := len(q.pending) > 0 || q.all
	q.mu.Unlock()
	if waiting {
		q.wake()
	}
}

func (q *ackQueue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// ackAll makes the next flush acknowledge the whole mirror.
func (r *Redis) ackAll() {
	r.applied.mu.Lock()
	r.applied.all = true
	r.applied.mu.Unlock()
	r.applied.wake()
}

// ackLoop writes queued acks whenever woken, until ctx is done. A failed
// write is kept for the next wake (a heartbeat, a resynchronisation).
func (r *Redis) ackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.applied.kick:
		}
		r.sleep(ctx, ackDelay)
		acks, all := r.applied.take()
		if len(acks) == 0 && !all {
			continue
		}
		if r.down.Load() {
			r.applied.requeue(acks, all)
			continue
		}
		if err := r.writeAcks(ctx, acks, all); err != nil {
			r.applied.requeue(acks, all)
			if ctx.Err() == nil {
				r.log.Warn("revocation store: recording applied revocations in redis failed; retrying", "entries", len(acks), "err", err)
			}
		}
	}
}

// writeAcks writes acks, then, with all, an ack of every live mirror
// entry applied now (the script keeps earlier applied times).
func (r *Redis) writeAcks(ctx context.Context, acks map[string]appliedAck, all bool) error {
	if err := ackScript.Load(ctx, r.client).Err(); err != nil {
		return err
	}
	type item struct {
		key string
		a   appliedAck
	}
	items := make([]item, 0, len(acks))
	for k, a := range acks {
		items = append(items, item{k, a})
	}
	if all {
		now := r.now().UnixNano()
		for _, rw := range r.local.liveRows(now) {
			items = append(items, item{string(encodeKey(rw.kind, rw.issuer, rw.value)), appliedAck{rw.revokedAt, rw.expiresAt, now}})
		}
	}
	for len(items) > 0 {
		n := min(len(items), publishBatch)
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		_, err := r.client.Pipelined(cctx, func(p redis.Pipeliner) error {
			for _, it := range items[:n] {
				v := string(appendSortable(appendSortable(make([]byte, 0, 40), it.a.revokedAt), it.a.appliedAt))
				pxat := (it.a.expiresAt + int64(time.Millisecond) - 1) / int64(time.Millisecond)
				ackScript.EvalSha(cctx, p, []string{r.keys.acks + it.key}, r.local.id, v, pxat)
			}
			return nil
		})
		cancel()
		if err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// heartbeatLoop records this replica as alive every heartbeat interval
// until ctx is done, and wakes the ack writer when acks wait.
func (r *Redis) heartbeatLoop(ctx context.Context) {
	t, tick := r.clk.NewTicker(r.heartbeat)
	defer t.Stop()
	for beats := 0; ; beats++ {
		if !r.down.Load() {
			if err := r.beat(ctx, false); err != nil && ctx.Err() == nil {
				r.log.Debug("revocation store: heartbeat failed", "err", err)
			}
			if beats%pruneEvery == 0 {
				if err := r.pruneReplicas(ctx); err != nil && ctx.Err() == nil {
					r.log.Debug("revocation store: pruning silent replicas failed", "err", err)
				}
			}
		}
		r.applied.wakeIfPending()
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// beat writes this replica's heartbeat; stopped marks a graceful stop.
func (r *Redis) beat(ctx context.Context, stopped bool) error {
	b, err := json.Marshal(heartbeatRecord{
		Name: r.name, Addr: r.addr,
		Seen: r.now().UnixMilli(), Every: r.heartbeat.Milliseconds(),
		Stopped: stopped,
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.HSet(cctx, r.keys.replicas, r.local.id, b).Err(); err != nil {
		return err
	}
	r.beaten.Store(true)
	return nil
}

// pruneReplicas removes the replicas silent for longer than replicaForget
// and the fields that do not decode.
func (r *Redis) pruneReplicas(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	all, err := r.client.HGetAll(cctx, r.keys.replicas).Result()
	if err != nil {
		return err
	}
	limit := r.now().Add(-replicaForget).UnixMilli()
	var gone []string
	for id, v := range all {
		var h heartbeatRecord
		if json.Unmarshal([]byte(v), &h) != nil || h.Seen < limit {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return r.client.HDel(cctx, r.keys.replicas, gone...).Err()
}

// ReplicaID is Store.ReplicaID of the mirror: this replica's id in Redis.
func (r *Redis) ReplicaID() string { return r.local.id }

// Applied reports the state of the entry (issuer, kind, value) on every
// replica known to Redis: the entry (Redis's and the mirror's merged),
// each replica's liveness from its heartbeat, and when it applied the
// entry's current version from its acknowledgement. A replica applied an
// entry when it accepted it or received it from Redis; its ack reaches
// Redis a few milliseconds later, so a fresh entry may show as not yet
// applied. Liveness is judged by this replica's clock against the others'
// heartbeat times. It returns an error wrapping ErrInvalidEntry for an
// unknown kind, or the Redis error when Redis cannot be asked (the answer
// would be a guess).
func (r *Redis) Applied(ctx context.Context, issuer string, kind Kind, value string) (ApplyStatus, error) {
	c := codeOf(kind)
	if c == 0 {
		return ApplyStatus{}, fmt.Errorf("cache: applied: %w: unknown kind %q", ErrInvalidEntry, kind)
	}
	k := string(encodeKey(c, issuer, value))
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var get *redis.StringCmd
	var acks, beats *redis.MapStringStringCmd
	_, err := r.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		get = p.Get(cctx, r.keys.entry+k)
		acks = p.HGetAll(cctx, r.keys.acks+k)
		beats = p.HGetAll(cctx, r.keys.replicas)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return ApplyStatus{}, fmt.Errorf("cache: applied: redis: %w", err)
	}
	var st ApplyStatus
	var found row
	if v, err := get.Result(); err == nil {
		if rw, ok := r.decode(k, v); ok {
			found, st.Found = rw, true
		}
	}
	if e, ok := r.local.Get(issuer, kind, value); ok {
		if st.Found {
			found = merge(found, rowOf(e))
		} else {
			found, st.Found = rowOf(e), true
		}
	}
	if st.Found {
		st.Entry = found.entry()
	}
	now := r.now().UnixMilli()
	byID := make(map[string]*ReplicaApply)
	for id, v := range beats.Val() {
		var h heartbeatRecord
		if !validReplicaID(id) || json.Unmarshal([]byte(v), &h) != nil {
			continue
		}
		byID[id] = &ReplicaApply{
			ID: id, Name: h.Name, Addr: h.Addr, Up: h.up(now),
			LastSeen: time.UnixMilli(h.Seen).UTC(),
		}
	}
	if _, ok := byID[r.local.id]; !ok {
		// Not yet heartbeat (just started): it is running, since it answers.
		byID[r.local.id] = &ReplicaApply{ID: r.local.id, Name: r.name, Addr: r.addr, Up: true}
	}
	for id, v := range acks.Val() {
		if !validReplicaID(id) || len(v) != 40 {
			continue
		}
		rev, err1 := parseSortable(v[:20])
		at, err2 := parseSortable(v[20:])
		if err1 != nil || err2 != nil || !st.Found || rev < found.revokedAt {
			continue
		}
		ra, ok := byID[id]
		if !ok {
			ra = &ReplicaApply{ID: id}
			byID[id] = ra
		}
		ra.AppliedAt = time.Unix(0, at).UTC()
	}
	for _, ra := range byID {
		st.Replicas = append(st.Replicas, *ra)
	}
	slices.SortFunc(st.Replicas, func(a, b ReplicaApply) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Addr, b.Addr), strings.Compare(a.ID, b.ID))
	})
	return st, nil
}
