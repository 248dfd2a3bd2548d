package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/oidcgate/oidcgate/cache"
)

// storeFile is the name oidcgate gives its bbolt file inside data_dir
// (cmd/oidcgate/serve.go).
const storeFile = "revocations.db"

// The bbolt layout of cache's embedded store (cache/codec.go): bucket
// "revocations", key kind(1) | len(issuer)(2) | issuer | value, value
// version(1) | revoked_at(8) | expires_at(8) | len(reason)(2) | reason |
// len(initiator)(2) | initiator, integers big-endian, kind codes in the
// order of cache.Kinds starting at 1. cache has no bulk import (Revoke
// commits and fsyncs per call, or per batch of concurrent calls), which
// for 5M entries would dominate the run, so the benchmark writes the file
// directly in a few large transactions. TestWriteStoreLoads proves cache.Open reads it
// back entry for entry, and the run checks that oidcgate reports exactly
// the number of entries written, so a change of layout fails loudly.
var storeBucket = []byte("revocations")

const (
	recordVersion = 1
	// storeTxSize bounds the puts of one write transaction.
	storeTxSize = 250_000
	entryReason = "bench"
	entryBy     = "admin:bench"
)

// writeStore creates the store file in dataDir holding n synthetic entries
// under issuer (see benchEntry). Keys are written in ascending order, so
// every transaction only appends to the B+tree.
func writeStore(dataDir, issuer string, n int, now time.Time) error {
	db, err := bolt.Open(filepath.Join(dataDir, storeFile), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	var tx *bolt.Tx
	var b *bolt.Bucket
	puts := 0
	commit := func() error {
		if tx == nil {
			return nil
		}
		err := tx.Commit()
		tx, b = nil, nil
		return err
	}
	// Keys sort by kind code first; within a kind the issuer is constant
	// and values start with the entry number, so this order is key order.
	for k := range cache.Kinds {
		for i := k; i < n; i += len(cache.Kinds) {
			if tx == nil {
				if tx, err = db.Begin(true); err != nil {
					return errors.Join(err, db.Close())
				}
				if b, err = tx.CreateBucketIfNotExists(storeBucket); err != nil {
					return errors.Join(err, tx.Rollback(), db.Close())
				}
				b.FillPercent = 0.95
			}
			e := benchEntry(issuer, now, i)
			if err := b.Put(encodeKey(k+1, e), encodeValue(e)); err != nil {
				return errors.Join(err, tx.Rollback(), db.Close())
			}
			if puts++; puts%storeTxSize == 0 {
				if err := commit(); err != nil {
					return errors.Join(err, db.Close())
				}
			}
		}
	}
	if tx == nil {
		// An empty store still gets its bucket, as cache.Open would.
		err = db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(storeBucket)
			return err
		})
	} else {
		err = commit()
	}
	return errors.Join(err, db.Close())
}

func encodeKey(code int, e cache.Entry) []byte {
	k := make([]byte, 0, 3+len(e.Issuer)+len(e.Value))
	k = append(k, byte(code))
	k = binary.BigEndian.AppendUint16(k, uint16(len(e.Issuer)))
	k = append(k, e.Issuer...)
	return append(k, e.Value...)
}

func encodeValue(e cache.Entry) []byte {
	v := make([]byte, 0, 21+len(e.Reason)+len(e.Initiator))
	v = append(v, recordVersion)
	v = binary.BigEndian.AppendUint64(v, uint64(e.RevokedAt.UnixNano()))
	v = binary.BigEndian.AppendUint64(v, uint64(e.ExpiresAt.UnixNano()))
	v = binary.BigEndian.AppendUint16(v, uint16(len(e.Reason)))
	v = append(v, e.Reason...)
	v = binary.BigEndian.AppendUint16(v, uint16(len(e.Initiator)))
	return append(v, e.Initiator...)
}

// benchEntry is the i-th synthetic revocation: kinds in rotation, revoked
// within the hour before now, kept for the issuer's max_token_lifetime plus
// the default clock skew (what the admin API would store). Values are
// UUID-shaped, start with i and never name a subject, client, jti or sid
// that the benchmark presents, so every counted request must pass.
func benchEntry(issuer string, now time.Time, i int) cache.Entry {
	r := rand.New(rand.NewPCG(uint64(i), 0x6f696463))
	kind := cache.Kinds[i%len(cache.Kinds)]
	if kind.Issuerless() {
		issuer = ""
	}
	return cache.Entry{
		Issuer:    issuer,
		Kind:      kind,
		Value:     fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", i, r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff),
		RevokedAt: now.Add(-time.Duration(r.Int64N(int64(time.Hour)))).UTC(),
		ExpiresAt: now.Add(tokenLifetime + 30*time.Second).UTC(),
		Reason:    entryReason,
		Initiator: entryBy,
	}
}
