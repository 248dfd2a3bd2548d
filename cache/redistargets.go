package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Targets in Redis: a hash per entry ({prefix}:t:<entry key>) whose field
// per target (kind NUL name) holds its version (revoked_at, 20 sortable
// digits), its state's first letter and its JSON; the hash expires with
// the entry. The pending targets' IDs are in a sorted set ({prefix}:tp,
// score: expires_at ms), and a lease is a key ({prefix}:tl:<ID>) holding
// its holder, with a PX expiry.

// targetSource stores a target in its hash, atomically with the pending
// set. ARGV[5] "add" stores it unless the stored version is the same or
// later; "update" only over the same version, and never over a final
// state unless with the same one. It returns the value stored afterwards
// (nil: none).
//
// KEYS[1] hash, KEYS[2] pending set; ARGV[1] field, ARGV[2] value,
// ARGV[3] expires_at (Unix ms), ARGV[4] ID, ARGV[5] mode.
const targetSource = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
if old then
  local ov, nv = string.sub(old, 1, 20), string.sub(new, 1, 20)
  if ARGV[5] == 'add' then
    if nv <= ov then return old end
  else
    local os = string.sub(old, 21, 21)
    if nv ~= ov or (os ~= 'p' and os ~= string.sub(new, 21, 21)) then return old end
  end
elseif ARGV[5] ~= 'add' then
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], new)
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
if string.sub(new, 21, 21) == 'p' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
else
  redis.call('ZREM', KEYS[2], ARGV[4])
end
return new
`

// leaseSource takes or extends a lease: KEYS[1] lease; ARGV[1] holder,
// ARGV[2] ttl (ms). It returns 1 when holder holds it afterwards.
const leaseSource = `
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

// releaseSource deletes KEYS[1] if it holds ARGV[1].
const releaseSource = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`

var (
	targetScript  = redis.NewScript(targetSource)
	leaseScript   = redis.NewScript(leaseSource)
	releaseScript = redis.NewScript(releaseSource)
)

// tag is the keyspace's "{prefix}:", from which every key starts.
func (ks keyspace) tag() string { return strings.TrimSuffix(ks.entry, "e:") }

func (ks keyspace) targetHash(entryKey string) string { return ks.tag() + "t:" + entryKey }
func (ks keyspace) targetPending() string             { return ks.tag() + "tp" }
func (ks keyspace) targetLease(id string) string      { return ks.tag() + "tl:" + id }

// encodeTarget is t's value in its hash.
func encodeTarget(t Target) (string, error) {
	j, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	b := appendSortable(make([]byte, 0, 21+len(j)), t.RevokedAt.UnixNano())
	b = append(b, t.State[0])
	return string(append(b, j...)), nil
}

// decodeTarget checks and decodes a value encodeTarget made for field of
// the entry key k.
func decodeTarget(k, field, v string) (Target, error) {
	var t Target
	if len(v) < 22 {
		return t, corrupt("redis target of %d bytes", len(v))
	}
	if err := json.Unmarshal([]byte(v[21:]), &t); err != nil {
		return t, corrupt("redis target: %v", err)
	}
	if err := t.Validate(); err != nil || t.entryKey() != k || t.field() != field || t.State[0] != v[20] {
		return t, corrupt("redis target does not match its key")
	}
	return t.normal(), nil
}

func (r *Redis) putTargets(ctx context.Context, ts []Target, mode string) ([]Target, error) {
	if err := validateTargets(ts); err != nil {
		return nil, fmt.Errorf("cache: targets: %w", err)
	}
	vals := make([]string, len(ts))
	for i, t := range ts {
		t = t.normal()
		v, err := encodeTarget(t)
		if err != nil {
			return nil, fmt.Errorf("cache: targets: %w", err)
		}
		ts[i], vals[i] = t, v
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := targetScript.Load(cctx, r.client).Err(); err != nil {
		return nil, fmt.Errorf("cache: targets: redis: %w", err)
	}
	out := make([]Target, len(ts))
	for start := 0; start < len(ts); start += publishBatch {
		end := min(len(ts), start+publishBatch)
		cmds := make([]*redis.Cmd, end-start)
		_, err := r.client.Pipelined(cctx, func(p redis.Pipeliner) error {
			for i, t := range ts[start:end] {
				pxat := (t.ExpiresAt.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
				cmds[i] = targetScript.EvalSha(cctx, p, []string{r.keys.targetHash(t.entryKey()), r.keys.targetPending()},
					t.field(), vals[start+i], pxat, t.ID(), mode)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("cache: targets: redis: %w", err)
		}
		for i, c := range cmds {
			t := ts[start+i]
			v, err := c.Text()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("cache: targets: redis: %w", err)
			}
			if out[start+i], err = decodeTarget(t.entryKey(), t.field(), v); err != nil {
				return nil, fmt.Errorf("cache: targets: %w", err)
			}
		}
	}
	return out, nil
}

// AddTargets is Store.AddTargets on the targets shared in Redis: every
// replica sees them. It fails when Redis cannot be reached (the caller
// retries: targets are derived again from the entry).
func (r *Redis) AddTargets(ctx context.Context, ts []Target) ([]Target, error) {
	return r.putTargets(ctx, append([]Target(nil), ts...), "add")
}

// UpdateTarget is Store.UpdateTarget on the targets shared in Redis.
func (r *Redis) UpdateTarget(ctx context.Context, t Target) (bool, error) {
	out, err := r.putTargets(ctx, []Target{t}, "update")
	if err != nil {
		return false, err
	}

	return sameTarget(out[0], t.normal()), nil
}

// Targets is Store.Targets on the targets shared in Redis.
func (r *Redis) Targets(ctx context.Context, issuer string, kind Kind, value string) ([]Target, error) {
	c := codeOf(kind)
	if c == 0 {
		return nil, fmt.Errorf("cache: targets: %w: unknown kind %q", ErrInvalidEntry, kind)
	}
	k := string(encodeKey(c, issuer, value))
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	all, err := r.client.HGetAll(cctx, r.keys.targetHash(k)).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: targets: redis: %w", err)
	}
	out := make([]Target, 0, len(all))
	for field, v := range all {
		t, err := decodeTarget(k, field, v)
		if err != nil {
			r.badRecords.Add(1)
			continue
		}
		out = append(out, t)
	}
	sortTargets(out)
	return out, nil
}

// PendingTargets is Store.PendingTargets on the targets shared in Redis.
func (r *Redis) PendingTargets(ctx context.Context) ([]Target, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	now := r.now().UnixMilli()
	pending := r.keys.targetPending()
	if err := r.client.ZRemRangeByScore(cctx, pending, "-inf", fmt.Sprint(now)).Err(); err != nil {
		return nil, fmt.Errorf("cache: targets: redis: %w", err)
	}
	ids, err := r.client.ZRange(cctx, pending, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: targets: redis: %w", err)
	}
	var out []Target
	for start := 0; start < len(ids); start += publishBatch {
		end := min(len(ids), start+publishBatch)
		cmds := make([]*redis.StringCmd, end-start)
		keys := make([][2]string, end-start)
		_, err := r.client.Pipelined(cctx, func(p redis.Pipeliner) error {
			for i, id := range ids[start:end] {
				k, field, ok := splitTargetID(id)
				if !ok {
					continue
				}
				keys[i] = [2]string{k, field}
				cmds[i] = p.HGet(cctx, r.keys.targetHash(k), field)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("cache: targets: redis: %w", err)
		}
		for i, c := range cmds {
			if c == nil {
				continue
			}
			v, err := c.Result()
			if err != nil {
				continue
			}
			t, err := decodeTarget(keys[i][0], keys[i][1], v)
			if err != nil {
				r.badRecords.Add(1)
				continue
			}
			if t.State == TargetPending {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// splitTargetID splits an ID into its entry key and field.
func splitTargetID(id string) (k, field string, ok bool) {
	kind, rest, ok1 := strings.Cut(id, "\x00")
	name, k, ok2 := strings.Cut(rest, "\x00")
	if !ok1 || !ok2 {
		return "", "", false
	}
	if _, _, _, err := decodeKey([]byte(k)); err != nil {
		return "", "", false
	}
	return k, kind + "\x00" + name, true
}

// LeaseTarget is Store.LeaseTarget shared by every replica: while holder's
// lease runs, no other replica gets one. A replica that dies stops
// extending it, so another takes over after ttl.
func (r *Redis) LeaseTarget(ctx context.Context, t Target, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease(holder, ttl); err != nil {
		return false, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	n, err := leaseScript.Run(cctx, r.client, []string{r.keys.targetLease(t.ID())}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("cache: lease: redis: %w", err)
	}
	return n == 1, nil
}

// ReleaseTarget is Store.ReleaseTarget shared by every replica.
func (r *Redis) ReleaseTarget(ctx context.Context, t Target, holder string) error {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := releaseScript.Run(cctx, r.client, []string{r.keys.targetLease(t.ID())}, holder).Err(); err != nil {
		return fmt.Errorf("cache: lease: redis: %w", err)
	}
	return nil
}

// Target is Store.Target on the targets shared in Redis.
func (r *Redis) Target(ctx context.Context, t Target) (Target, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	k := t.entryKey()
	v, err := r.client.HGet(cctx, r.keys.targetHash(k), t.field()).Result()
	if errors.Is(err, redis.Nil) {
		return Target{}, false, nil
	}
	if err != nil {
		return Target{}, false, fmt.Errorf("cache: targets: redis: %w", err)
	}
	got, err := decodeTarget(k, t.field(), v)
	if err != nil {
		return Target{}, false, fmt.Errorf("cache: targets: %w", err)
	}
	return got, true, nil
}
