package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/oidcgate/oidcgate/clock"
)

// Timings of the Redis follower and deliverer.
const (
	// tailBlock is how long one XREAD waits for new entries; the epoch is
	// checked at least this often, so a Redis that lost its data (restart,
	// FLUSHALL) under a live connection is noticed within it.
	tailBlock = time.Second
	// tailCount is the most stream entries read at once; scanCount, the
	// SCAN batch; publishBatch, the entries written per pipeline.
	tailCount    = 1000
	scanCount    = 1000
	publishBatch = 500
	// minBackoff and maxBackoff bound the wait between reconnection tries.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
	// retryInterval paces the persister after a failure.
	retryInterval = 500 * time.Millisecond
	// deliverPeriod paces the deliverer: it removes the outbox records that
	// Revoke wrote to Redis itself and delivers the others.
	deliverPeriod = 50 * time.Millisecond
	// persistDelay gathers received entries into fewer file commits.
	persistDelay    = 5 * time.Millisecond
	stalenessPeriod = 100 * time.Millisecond
)

// metaBucket holds the Redis epoch this mirror last synchronised with.
var (
	metaBucket = []byte("redis-meta")
	epochKey   = []byte("epoch")
)

// errResync ends tailing when the stream can no longer be trusted to hold
// every change since the last one read (trimmed past it, or Redis lost its
// data): the follower then scans everything again.
var errResync = errors.New("cache: redis: stream no longer complete; resynchronising")

// keyspace names the Redis keys of one deployment. Every key has the hash
// tag {prefix}, so all are in one Cluster slot and the publish script may
// touch an entry and the stream atomically.
type keyspace struct {
	entry  string // prefix of entry keys; the encoded entry key follows
	seen   string // prefix of FirstSeen keys
	live   string // prefix of RecordSID keys
	uid    string // prefix of RecordUserID keys
	email  string // prefix of RecordEmail hashes
	stream string // the stream of changes
	epoch  string // random id set when this Redis's data set began
	// acks prefixes the applied-ack hashes (the encoded entry key
	// follows); replicas is the heartbeat hash.
	acks     string
	replicas string
	maxLen   int64
	script   *redis.Script
}

// publishSource merges an entry into Redis and, if that changed it, adds
// the merged value to the stream, atomically (a script runs alone). Values
// start with revoked_at and expires_at as 20-digit numbers whose string
// order is their numeric order, so the merge is string comparison: the
// later revoked_at wins with its reason and initiator, the later
// expires_at wins with its PXAT. A stored value that is not of this form
// is overwritten.
//
// KEYS[1] entry, KEYS[2] stream; ARGV[1] value, ARGV[2] expires_at (Unix
// ms), ARGV[3] stream max length, ARGV[4] encoded entry key.
const publishSource = `
local new = ARGV[1]
local old = redis.call('GET', KEYS[1])
if old and (string.len(old) < 40 or not string.find(string.sub(old, 1, 40), '^%d+$')) then old = false end
local out, pxat = new, ARGV[2]
if old then
  local rv, notes = string.sub(old, 1, 20), string.sub(old, 41)
  if string.sub(new, 1, 20) > rv then rv, notes = string.sub(new, 1, 20), string.sub(new, 41) end
  local xp = string.sub(old, 21, 40)
  if string.sub(new, 21, 40) > xp then xp = string.sub(new, 21, 40) else pxat = false end
  out = rv .. xp .. notes
  if out == old then return 0 end
end
if pxat then
  redis.call('SET', KEYS[1], out, 'PXAT', pxat)
else
  redis.call('SET', KEYS[1], out, 'KEEPTTL')
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'k', ARGV[4], 'v', out)
return 1
`

func newKeyspace(prefix string, maxLen int64) keyspace {
	tag := "{" + prefix + "}"
	return keyspace{
		entry:    tag + ":e:",
		seen:     tag + ":seen:",
		live:     tag + ":live:",
		uid:      tag + ":uid:",
		email:    tag + ":em:",
		stream:   tag + ":stream",
		epoch:    tag + ":epoch",
		acks:     tag + ":a:",
		replicas: tag + ":replicas",
		maxLen:   maxLen,
		script:   redis.NewScript(publishSource),
	}
}

// publish merges r into Redis (see publishSource).
func (ks keyspace) publish(ctx context.Context, c redis.Scripter, r row) error {
	return ks.publishCmd(ctx, c, r).Err()
}

func (ks keyspace) publishCmd(ctx context.Context, c redis.Scripter, r row) *redis.Cmd {
	k := string(encodeKey(r.kind, r.issuer, r.value))
	// Round up: Redis must not forget an entry before ExpiresAt.
	pxat := (r.expiresAt + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	return ks.script.Run(ctx, c, []string{ks.entry + k, ks.stream},
		redisValue(r), pxat, ks.maxLen, k)
}

// publishAll writes rows in pipelines of publishBatch.
func (ks keyspace) publishAll(ctx context.Context, c redis.UniversalClient, rows []row) error {
	// Load the script once, so that the pipelines' EVALSHA find it.
	if err := ks.script.Load(ctx, c).Err(); err != nil {
		return err
	}
	for len(rows) > 0 {
		n := min(len(rows), publishBatch)
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range rows[:n] {
				ks.script.EvalSha(ctx, p, []string{ks.entry + string(encodeKey(r.kind, r.issuer, r.value)), ks.stream},
					redisValue(r), (r.expiresAt+int64(time.Millisecond)-1)/int64(time.Millisecond), ks.maxLen,
					string(encodeKey(r.kind, r.issuer, r.value)))
			}
			return nil
		})
		if err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// redisValue is r's value in Redis: revoked_at and expires_at as sortable
// 20-digit numbers, then the reason and initiator as in the bbolt record.
func redisValue(r row) string {
	b := make([]byte, 0, 40+4+len(r.reason)+len(r.initiator))
	b = appendSortable(b, r.revokedAt)
	b = appendSortable(b, r.expiresAt)
	return string(append(b, encodeValue(r)[17:]...))
}

// appendSortable appends v, its sign bit flipped, as 20 decimal digits: a
// string whose byte order is v's numeric order.
func appendSortable(b []byte, v int64) []byte {
	s := strconv.FormatUint(uint64(v)^(1<<63), 10)
	for range 20 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

func parseSortable(s string) (int64, error) {
	if len(s) != 20 {
		return 0, corrupt("redis time of %d bytes", len(s))
	}
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, corrupt("redis time %q", s)
	}
	return int64(u ^ (1 << 63)), nil
}

// decodeRedis checks and decodes an entry key and value read from Redis;
// it accepts exactly what redisValue and encodeKey produce for a valid
// entry.
func decodeRedis(key, value string) (row, error) {
	c, iss, val, err := decodeKey([]byte(key))
	if err != nil {
		return row{}, err
	}
	if len(value) < 40 {
		return row{}, corrupt("redis value of %d bytes", len(value))
	}
	rev, err := parseSortable(value[:20])
	if err != nil {
		return row{}, err
	}
	exp, err := parseSortable(value[20:40])
	if err != nil {
		return row{}, err
	}
	if exp <= rev {
		return row{}, corrupt("expires_at not after revoked_at")
	}
	reason, rest, err := text([]byte(value[40:]))
	if err != nil {
		return row{}, err
	}
	initiator, rest, err := text(rest)
	if err != nil {
		return row{}, err
	}
	if len(rest) != 0 {
		return row{}, corrupt("%d trailing bytes", len(rest))
	}
	return row{
		issuer: string(iss), value: string(val), kind: c,
		revokedAt: rev, expiresAt: exp,
		reason: string(reason), initiator: string(initiator),
	}, nil
}

// streamID is a Redis stream id (ms-seq); the zero value is 0-0.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, error) {
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return streamID{}, fmt.Errorf("cache: redis: bad stream id %q", s)
	}
	return streamID{ms, seq}, nil
}

func (id streamID) String() string { return fmt.Sprintf("%d-%d", id.ms, id.seq) }

// streamPos is a follower's place in the stream: the last id read and how
// many entries the stream had been given up to it (XINFO's entries-added).
type streamPos struct {
	id    streamID
	added int64
}

// follow keeps the mirror in sync until ctx is done: synchronise, tail the
// stream, and on any failure mark the store out of sync and try again
// with backoff. A lost connection is resumed from the last id read when
// the stream still holds everything after it; otherwise (first sync,
// stream trimmed past it, Redis lost its data) it scans everything.
func (r *Redis) follow(ctx context.Context) {
	backoff := minBackoff
	var last *streamPos // nil: full scan needed
	wasInSync := false
	for ctx.Err() == nil {
		from, err := r.sync(ctx, last)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			last = nil
			r.setDown(err)
			r.sleep(ctx, backoff)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		if wasInSync {
			r.reconnects.Add(1)
		}
		wasInSync = true
		r.down.Store(false)
		r.healthy.Store(true)
		r.refuse.Store(false)
		r.synced.Store(true)
		r.signal()
		r.ackAll()
		last = &from
		err = r.tail(ctx, last)
		r.lastContact.Store(r.now().UnixNano())
		r.healthy.Store(false)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errResync):
			// last is kept: sync compares it with the stream to tell a
			// trimmed stream from one that went back in time.
			r.log.Warn("revocation store: redis stream incomplete; resynchronising", "err", err)
		default:
			r.setDown(err)
			r.sleep(ctx, backoff)
		}
	}
}

func (r *Redis) sleep(ctx context.Context, d time.Duration) {
	t, fired := r.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-fired:
	}
}

// sync brings the mirror up to date and returns the stream id to tail
// from. With last not nil and the stream still holding everything after
// it, that is all; else it scans every entry. The order makes a full scan
// miss nothing: the stream's last id is read before the scan, so an entry
// written during the scan is either seen by it or read from the stream.
// A changed epoch (Redis restarted empty or was flushed) first makes this
// replica publish its whole mirror again.
func (r *Redis) sync(ctx context.Context, last *streamPos) (streamPos, error) {
	changed, err := r.checkEpoch(ctx)
	if err != nil {
		return streamPos{}, err
	}
	if changed {
		last = nil
	}
	if last != nil {
		info, ok, err := r.streamInfo(ctx)
		if err != nil {
			return streamPos{}, err
		}
		switch {
		case !ok || info.EntriesAdded < last.added:
			// The stream has fewer entries than this replica has read, under
			// the same epoch: Redis went back in time (failover to a lagging
			// replica, restart from an old snapshot), and entries already
			// delivered (gone from every outbox) may be lost there.
			if err := r.rollback(ctx); err != nil {
				return streamPos{}, err
			}
		case info.EntriesAdded-info.Length <= last.added:
			return *last, nil
		}
	}
	return r.fullScan(ctx)
}

// rollback answers Redis losing recent writes while keeping its epoch:
// this replica publishes its whole mirror again and sets a new epoch, so
// that every other replica does the same (each may hold entries this one
// lacks) and no revocation acknowledged anywhere stays lost.
func (r *Redis) rollback(ctx context.Context) error {
	rows := r.local.liveRows(r.now().UnixNano())
	r.log.Warn("revocation store: redis went back in time (fewer stream entries than already read); publishing this replica's entries and starting a new epoch", "entries", len(rows))
	if err := r.keys.publishAll(ctx, r.client, rows); err != nil {
		return err
	}
	fresh := make([]byte, 16)
	_, _ = rand.Read(fresh)
	epoch := hex.EncodeToString(fresh)
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Set(cctx, r.keys.epoch, epoch, 0).Err(); err != nil {
		return err
	}
	return r.recordEpoch(epoch)
}

// recordEpoch remembers, in the file, the epoch this mirror is in sync
// with.
func (r *Redis) recordEpoch(epoch string) error {
	if err := r.local.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(epochKey, []byte(epoch))
	}); err != nil {
		return fmt.Errorf("cache: redis: recording epoch: %w", err)
	}
	r.epoch = epoch
	return nil
}

// checkEpoch reads the epoch, creating it when missing, and compares it
// with the one this mirror last synchronised with (kept in the file, so
// that it survives a restart). On a change it publishes every live mirror
// entry, then records the new epoch; it reports whether it changed.
func (r *Redis) checkEpoch(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	fresh := make([]byte, 16)
	_, _ = rand.Read(fresh)
	if err := r.client.SetNX(cctx, r.keys.epoch, hex.EncodeToString(fresh), 0).Err(); err != nil {
		return false, err
	}
	epoch, err := r.client.Get(cctx, r.keys.epoch).Result()
	if err != nil {
		return false, err
	}
	if epoch == r.epoch {
		return false, nil
	}
	rows := r.local.liveRows(r.now().UnixNano())
	r.log.Warn("revocation store: redis data set is new (first contact, restart or flush); publishing this replica's entries", "entries", len(rows))
	if err := r.keys.publishAll(ctx, r.client, rows); err != nil {
		return false, err
	}
	if err := r.recordEpoch(epoch); err != nil {
		return false, err
	}
	return true, nil
}

// streamComplete reports whether the stream still holds every entry after
// last: nothing after it was trimmed. Entries leave the stream only by
// trimming, oldest first, so entries-added minus length of them are gone
// (XINFO STREAM gives both at once, Redis 7), and none after last is gone
// when that is at most last.added. A trim right after the entries were
// read also fails the check: a needless full scan, never a missed entry.
func (r *Redis) streamComplete(ctx context.Context, last streamPos) (bool, error) {
	info, ok, err := r.streamInfo(ctx)
	if err != nil || !ok {
		// A stream gone after being read means Redis lost data.
		return false, err
	}
	return info.EntriesAdded >= last.added && info.EntriesAdded-info.Length <= last.added, nil
}

// streamInfo is XINFO STREAM; ok is false when the stream does not exist.
func (r *Redis) streamInfo(ctx context.Context) (*redis.XInfoStream, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	info, err := r.client.XInfoStream(cctx, r.keys.stream).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil, false, nil
		}
		return nil, false, err
	}
	return info, true, nil
}

// fullScan reads the stream's position, then every entry key, into the
// mirror.
func (r *Redis) fullScan(ctx context.Context) (streamPos, error) {
	start := r.clk.Now()
	info, ok, err := r.streamInfo(ctx)
	if err != nil {
		return streamPos{}, err
	}
	var from streamPos
	if ok {
		if from.id, err = parseStreamID(info.LastGeneratedID); err != nil {
			return streamPos{}, err
		}
		from.added = info.EntriesAdded
	}
	n := 0
	err = r.scanKeys(ctx, func(c redis.Cmdable, keys []string) error {
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		vals, err := c.MGet(cctx, keys...).Result()
		if err != nil {
			return err
		}
		rows := make([]row, 0, len(keys))
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // expired since SCAN
			}
			if rw, ok := r.decode(strings.TrimPrefix(keys[i], r.keys.entry), s); ok {
				rows = append(rows, rw)
			}
		}
		n += len(rows)
		r.received(rows, false)
		return nil
	})
	if err != nil {
		return streamPos{}, err
	}
	r.resyncs.Add(1)
	r.log.Info("revocation store: synchronised with redis", "entries", n, "duration", clock.Since(r.clk, start))
	return from, nil
}

// scanKeys calls fn with every batch of entry keys, on every master of a
// Cluster (the keys share one slot, but the slot may move).
func (r *Redis) scanKeys(ctx context.Context, fn func(redis.Cmdable, []string) error) error {
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			keys, next, err := c.Scan(cctx, cursor, r.keys.entry+"*", scanCount).Result()
			cancel()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(c, keys); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		var mu sync.Mutex // fn is not safe for concurrent use
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	}
	return scan(ctx, r.client)
}

// decode is decodeRedis that counts and logs (without values) what does
// not decode.
func (r *Redis) decode(key, value string) (row, bool) {
	rw, err := decodeRedis(key, value)
	if err != nil {
		r.badRecords.Add(1)
		r.log.Warn("revocation store: ignoring a redis record that does not decode", "err", err)
		return row{}, false
	}
	return rw, true
}

// received applies rows read from Redis to the mirror, queues the ones
// that changed it for the file and, for stream entries, observes their
// propagation lag.
func (r *Redis) received(rows []row, fromStream bool) {
	// An expired entry revokes nothing any more: applying one (e.g. an old
	// stream entry after Sweep) would only bring it back until the next
	// Sweep.
	now := r.now().UnixNano()
	live := rows[:0]
	for _, rw := range rows {
		if rw.expiresAt > now {
			live = append(live, rw)
		}
	}
	if len(live) == 0 {
		return
	}
	changed := r.local.apply(live)
	if len(changed) == 0 {
		return
	}
	if fromStream {
		// A full scan is followed by an ack of the whole mirror (follow).
		r.applied.add(changed, now)
	}
	if fromStream && r.lag != nil {
		for _, c := range changed {
			r.lag.Observe(max(0, float64(now-c.revokedAt)/1e9))
		}
	}
	r.persist.add(changed)
}

// tail reads the stream from *last until an error, updating *last. Every
// tailBlock without news it checks the epoch; after each batch it checks
// that nothing it had not read was trimmed.
func (r *Redis) tail(ctx context.Context, last *streamPos) error {
	check, checkDue := r.clk.NewTicker(tailBlock)
	defer check.Stop()
	for {
		res, err := r.client.XRead(ctx, &redis.XReadArgs{
			Streams: []string{r.keys.stream, last.id.String()},
			Count:   tailCount,
			Block:   tailBlock,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		before := *last
		for _, s := range res {
			rows := make([]row, 0, len(s.Messages))
			for _, m := range s.Messages {
				id, err := parseStreamID(m.ID)
				if err != nil {
					return err
				}
				last.id = id
				last.added++
				k, _ := m.Values["k"].(string)
				v, _ := m.Values["v"].(string)
				if rw, ok := r.decode(k, v); ok {
					rows = append(rows, rw)
				}
			}
			r.received(rows, true)
		}
		if len(res) > 0 {
			ok, err := r.streamComplete(ctx, before)
			if err != nil {
				return err
			}
			if !ok {
				return errResync
			}
		}
		select {
		case <-checkDue:
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			epoch, err := r.client.Get(cctx, r.keys.epoch).Result()
			cancel()
			if errors.Is(err, redis.Nil) || (err == nil && epoch != r.epoch) {
				return errResync
			}
			if err != nil {
				return err
			}
			// A stream with fewer entries than read went back in time; a
			// quiet one would never show it to XREAD.
			info, ok, err := r.streamInfo(ctx)
			if err != nil {
				return err
			}
			if !ok || info.EntriesAdded < last.added {
				return errResync
			}
		default:
		}
	}
}

// deliver sends the outbox to Redis whenever woken (a failed write, the
// follower back in sync) and every deliverPeriod while it holds records
// that no Revoke is writing itself.
func (r *Redis) deliver(ctx context.Context) {
	t, tick := r.clk.NewTicker(deliverPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tick:
		}
		r.dequeueAcked()
		if r.down.Load() && r.healthy.Load() {
			// A write failed, yet the follower reads the stream: the
			// failure was passing. Without this, one failed write would
			// keep every later revocation in the outbox until the
			// connection broke.
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			if r.client.Ping(cctx).Err() == nil {
				r.down.Store(false)
			}
			cancel()
		}
		if r.queued.Load() <= r.inflight.Load() || r.down.Load() {
			continue
		}
		if err := r.deliverOutbox(ctx); err != nil && ctx.Err() == nil {
			r.setDown(err)
		}
	}
}

// dequeueAcked deletes the outbox records Revoke delivered itself, unless
// a later Revoke of the same key replaced them.
func (r *Redis) dequeueAcked() {
	r.ackMu.Lock()
	acks := r.acks
	r.acks = nil
	r.ackMu.Unlock()
	if len(acks) == 0 {
		return
	}
	if err := r.dequeue(acks); err != nil {
		r.log.Error("revocation store: outbox update failed; entries will be delivered again", "err", err)
	}
}

// dequeue deletes each record whose outbox value is still the one acked.
func (r *Redis) dequeue(acks []ack) error {
	r.local.life.RLock()
	defer r.local.life.RUnlock()
	if r.local.closed {
		return nil
	}
	removed := 0
	err := r.local.db.Update(func(tx *bolt.Tx) error {
		removed = 0
		b := tx.Bucket(outboxBucket)
		for _, a := range acks {
			if v := b.Get(a.key); v != nil && bytes.Equal(v, a.value) {
				if err := b.Delete(a.key); err != nil {
					return err
				}
				removed++
			}
		}
		return nil
	})
	if err == nil {
		r.queued.Add(-int64(removed))
	}
	return err
}

// deliverOutbox publishes the outbox in batches until it is empty.
func (r *Redis) deliverOutbox(ctx context.Context) error {
	for ctx.Err() == nil {
		var batch []ack
		var rows []row
		r.local.life.RLock()
		if r.local.closed {
			r.local.life.RUnlock()
			return nil
		}
		err := r.local.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(outboxBucket).Cursor()
			for k, v := c.First(); k != nil && len(batch) < publishBatch; k, v = c.Next() {
				rec, err := decodeRecord(k, v)
				if err != nil {
					return err
				}
				batch = append(batch, ack{bytes.Clone(k), bytes.Clone(v)})
				rows = append(rows, rec.row())
			}
			return nil
		})
		r.local.life.RUnlock()
		if err != nil {
			return fmt.Errorf("cache: redis: reading outbox: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		if err := r.keys.publishAll(ctx, r.client, rows); err != nil {
			return err
		}
		if err := r.dequeue(batch); err != nil {
			return fmt.Errorf("cache: redis: outbox: %w", err)
		}
		r.log.Info("revocation store: delivered queued revocations to redis", "entries", len(batch))
	}
	return nil
}

// persister gathers rows received from Redis for the file: the mirror is
// updated at once, the file in batches.
type persister struct {
	mu      sync.Mutex
	pending []row
	kick    chan struct{}
}

func (p *persister) init() { p.kick = make(chan struct{}, 1) }

func (p *persister) add(rows []row) {
	p.mu.Lock()
	p.pending = append(p.pending, rows...)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *persister) take() []row {
	p.mu.Lock()
	defer p.mu.Unlock()
	rows := p.pending
	p.pending = nil
	return rows
}

// persistLoop writes received rows to the file as they come. A failed
// write is retried; the rows stay in memory (enforced) meanwhile.
func (r *Redis) persistLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.persist.kick:
		}
		r.sleep(ctx, persistDelay)
		rows := r.persist.take()
		if err := r.local.persistRows(rows); err != nil {
			r.log.Error("revocation store: writing received entries failed; retrying", "entries", len(rows), "err", err)
			r.persist.add(rows)
			r.sleep(ctx, retryInterval)
		}
	}
}

// flushPersist writes what persistLoop has not yet.
func (r *Redis) flushPersist() {
	if rows := r.persist.take(); len(rows) > 0 {
		if err := r.local.persistRows(rows); err != nil {
			r.log.Error("revocation store: writing received entries at close failed (redis still has them)", "entries", len(rows), "err", err)
		}
	}
}

// watchStaleness puts FailClosed in force once the mirror has been out of
// sync for longer than MaxStaleness, and lifts it when back in sync.
func (r *Redis) watchStaleness(ctx context.Context) {
	t, tick := r.clk.NewTicker(stalenessPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		refuse := r.failClosed && !r.healthy.Load() && r.Staleness() > r.maxStale
		if r.refuse.Swap(refuse) != refuse {
			if refuse {
				r.log.Error("revocation store: out of sync with redis longer than max_staleness; fail_closed: refusing every credential", "max_staleness", r.maxStale)
			} else {
				r.log.Info("revocation store: back in sync; no longer refusing")
			}
		}
	}
}

// Subscribe is Store.Subscribe: fn sees every local Revoke and every entry
// received from Redis that changed the mirror.
func (r *Redis) Subscribe(fn func(Entry)) (cancel func()) { return r.local.Subscribe(fn) }

// FirstSeen is Store.FirstSeen shared by every replica: the key is
// recorded in the local file and in Redis (SET NX PXAT), and it is first
// seen only if neither knew it. When Redis cannot be reached it falls back
// to the local answer: during an outage a key first seen on another
// replica is not known here, so a replayed logout token could be accepted
// once per replica (it can only revoke again, which is idempotent).
func (r *Redis) FirstSeen(ctx context.Context, key string, until time.Time) (bool, error) {
	first, err := r.local.FirstSeen(ctx, key, until)
	if err != nil {
		return false, err
	}
	if r.down.Load() {
		return first, nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	pxat := (until.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	err = r.client.Do(cctx, "SET", r.keys.seen+key, "1", "NX", "PXAT", pxat).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		r.log.Warn("revocation store: redis unreachable for first-seen; using the local record", "err", err)
		return first, nil
	}
	return first, nil
}

// RecordSID is Store.RecordSID shared by every replica: the session is
// recorded in the local file and in Redis ({prefix}:live:<hex SHA-256 of
// issuer and sid>, PXAT until), so that a front-channel logout reaching any
// replica finds it. When Redis cannot be reached the local record stands
// and the failure is logged: until the session is recorded again, a
// front-channel logout for it reaching another replica is not applied
// there (README, "Front-channel logout").
func (r *Redis) RecordSID(ctx context.Context, issuer, sid string, until time.Time) error {
	if err := r.local.RecordSID(ctx, issuer, sid, until); err != nil {
		return err
	}
	if r.down.Load() {
		r.log.Warn("revocation store: redis unreachable; live sid recorded on this replica only")
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	pxat := (until.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	if err := r.client.Do(cctx, "SET", r.keys.live+hex.EncodeToString([]byte(liveKey(issuer, sid))), "1", "PXAT", pxat).Err(); err != nil {
		r.log.Warn("revocation store: redis unreachable; live sid recorded on this replica only", "err", err)
	}
	return nil
}

// SIDLive is Store.SIDLive across replicas: true when this replica or
// Redis holds the session. It returns an error when the local record
// does not hold it and Redis cannot be asked: the caller cannot tell.
func (r *Redis) SIDLive(ctx context.Context, issuer, sid string) (bool, error) {
	live, err := r.local.SIDLive(ctx, issuer, sid)
	if err != nil || live {
		return live, err
	}
	if r.down.Load() {
		return false, errors.New("cache: sid live: redis unreachable")
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	n, err := r.client.Exists(cctx, r.keys.live+hex.EncodeToString([]byte(liveKey(issuer, sid)))).Result()
	if err != nil {
		return false, fmt.Errorf("cache: sid live: %w", err)
	}
	return n == 1, nil
}
