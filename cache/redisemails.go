package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// emailSource records one owner of an email address in the hash KEYS[1]
// (field ARGV[1] = "issuer NUL sub", value ARGV[2] = until in Unix ms,
// the later one kept) and makes the hash live at least until then.
const emailSource = `
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local untilMs = tonumber(ARGV[2])
if untilMs > old then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local t = redis.call('PEXPIRETIME', KEYS[1])
if t < untilMs then
  redis.call('PEXPIREAT', KEYS[1], untilMs)
end
return 1
`

var emailScript = redis.NewScript(emailSource)

// emailHash is the Redis hash of one email address's owners:
// {prefix}:em:<hex SHA-256 of the lower-cased address>.
func (r *Redis) emailHash(email string) string {
	d := emailDigest(email)
	return r.keys.email + hex.EncodeToString(d[:])
}

// RecordEmail is Store.RecordEmail shared by every replica: the owner is
// recorded in the local file and in Redis (the hash of emailHash, one
// field per owner, living until the latest until), so that a Universal
// Logout reaching any replica resolves it. When Redis cannot be reached
// the local record stands and the failure is logged: until the user
// logs in again, an email subject reaching another replica does not
// resolve to this owner there.
func (r *Redis) RecordEmail(ctx context.Context, email string, o EmailOwner, until time.Time) error {
	if err := r.local.RecordEmail(ctx, email, o, until); err != nil {
		return err
	}
	if r.down.Load() {
		r.log.Warn("revocation store: redis unreachable; email owner recorded on this replica only")
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ms := (until.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	if err := emailScript.Run(cctx, r.client, []string{r.emailHash(email)}, o.Issuer+"\x00"+o.Sub, strconv.FormatInt(ms, 10)).Err(); err != nil {
		r.log.Warn("revocation store: redis unreachable; email owner recorded on this replica only", "err", err)
	}
	return nil
}

// EmailOwners is Store.EmailOwners across replicas: the owners this
// replica or Redis holds. It returns an error when Redis cannot be asked
// and this replica knows no owner: the caller cannot tell.
func (r *Redis) EmailOwners(ctx context.Context, email string) ([]EmailOwner, error) {
	local, err := r.local.EmailOwners(ctx, email)
	if err != nil {
		return nil, err
	}
	if r.down.Load() {
		if len(local) > 0 {
			return local, nil
		}
		return nil, errors.New("cache: email owners: redis unreachable")
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	fields, err := r.client.HGetAll(cctx, r.emailHash(email)).Result()
	if err != nil {
		if len(local) > 0 {
			return local, nil
		}
		return nil, fmt.Errorf("cache: email owners: %w", err)
	}
	seen := make(map[EmailOwner]bool, len(local)+len(fields))
	for _, o := range local {
		seen[o] = true
	}
	now := r.local.now().UnixMilli()
	out := local
	for field, v := range fields {
		o, ok := splitOwner(field)
		ms, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil || ms <= now || seen[o] {
			continue
		}
		seen[o] = true
		out = append(out, o)
	}
	return out, nil
}
