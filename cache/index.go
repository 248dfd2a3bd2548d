package cache

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// index is the exact in-memory set of entries with a Bloom filter in front.
//
// Entries live in numShards shards, each an open-addressing hash table of
// 64-bit slots (32-bit hash tag | record number + 1) over chunked record
// storage. Go's map would do, but at 1M entries it rounds each table up to a
// power of two and costs ~200 bytes per 88-byte slot; this layout costs 64
// bytes per record plus ~16 bytes of slots.
//
// Readers (revokedAt, get, List, Sweep) take a shard's read lock. Every
// mutation runs with the Store's write lock held, and then takes the shard's
// lock: there is one writer at a time, which keeps interning and filter
// rebuilds simple.
type index struct {
	seed   maphash.Seed
	filter atomic.Pointer[filter]
	count  atomic.Int64
	shards [numShards]shard

	// Used by writers only, under Store.mu.
	issuers, texts interner
	notes          map[note]*note
}

const (
	numShards  = 64
	shardShift = 58 // h >> shardShift picks the shard
	chunkSize  = 256
	minSlots   = 64
	// maxInterned bounds each intern table: beyond it strings are kept
	// uninterned, so hostile input cannot grow the tables without bound.
	maxInterned = 4096
)

// record is one entry in memory (64 bytes).
type record struct {
	issuer, value        string
	revokedAt, expiresAt int64
	note                 *note // nil when reason and initiator are empty
	kind                 kindCode
}

// note is the interned (reason, initiator) pair of a record.
type note struct{ reason, initiator string }

type shard struct {
	mu     sync.RWMutex
	slots  []uint64
	chunks [][]record
	free   []uint32 // record numbers to reuse
	next   uint32   // record numbers below next have been handed out
	n      int
	_      [64]byte // keep neighbouring shards' locks off this cache line
}

func newIndex() *index {
	x := &index{
		seed:    maphash.MakeSeed(),
		issuers: interner{m: make(map[string]string)},
		texts:   interner{m: make(map[string]string)},
		notes:   make(map[note]*note),
	}
	for i := range x.shards {
		x.shards[i].slots = make([]uint64, minSlots)
	}
	x.filter.Store(newFilter(0))
	return x
}

// keyHash is the filter hash of a key. It covers the kind and the value but
// not the issuer, so a probe hashes only the credential's value: values such
// as jti and sid are unique across issuers anyway, and the table compares the
// issuer. The seed is per process, so collisions cannot be planned.
//
// A scheduled code hashes as its kind's immediate code, so that the probe of
// a credential's field covers both.
func (x *index) keyHash(k kindCode, value string) uint64 {
	return maphash.String(x.seed, value) ^ uint64(k.base())*0x9e3779b97f4a7c15
}

// slotHash places the key with keyHash h in the table (shard, tag and home
// slot). It adds the issuer, so that one value revoked under many issuers
// does not pile up in one probe sequence.
func (x *index) slotHash(h uint64, issuer string) uint64 {
	return mix(h ^ maphash.String(x.seed, issuer)*0xc2b2ae3d27d4eb4f)
}

// mix is the SplitMix64 finaliser.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// revokedAt returns the RevokedAt of (k, issuer, value) whose keyHash is h.
func (x *index) revokedAt(k kindCode, issuer, value string, h uint64) (int64, bool) {
	sh := x.slotHash(h, issuer)
	s := &x.shards[sh>>shardShift]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.lookup(sh, k, issuer, value); r != nil {
		return r.revokedAt, true
	}
	return 0, false
}

// get returns the row of (k, issuer, value).
func (x *index) get(k kindCode, issuer, value string) (row, bool) {
	sh := x.slotHash(x.keyHash(k, value), issuer)
	s := &x.shards[sh>>shardShift]
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.lookup(sh, k, issuer, value)
	if r == nil {
		return row{}, false
	}
	return r.row(), true
}

// upsert merges in with the stored entry of its key, or adds it, and returns
// the stored result. Insert is table then filter, so a filter positive always
// finds the record. The caller holds Store.mu.
func (x *index) upsert(in row) row {
	in.value = strings.Clone(in.value) // in may alias a larger string
	out, added := x.put(in)
	if added {
		f := x.filter.Load()
		f.add(x.keyHash(in.kind, in.value))
		f.load++
		if f.load > f.capacity {
			// Growth: one rebuild at twice the size, then a pointer swap.
			x.rebuildFilter()
		}
	}
	return out
}

// put is upsert without the filter, for bulk loads that call rebuildFilter
// once at the end. It keeps in.value as is. The caller holds Store.mu.
func (x *index) put(in row) (row, bool) {
	h := x.slotHash(x.keyHash(in.kind, in.value), in.issuer)
	s := &x.shards[h>>shardShift]
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.lookup(h, in.kind, in.issuer, in.value); r != nil {
		m := merge(r.row(), in)
		r.revokedAt, r.expiresAt = m.revokedAt, m.expiresAt
		r.note = x.note(m.reason, m.initiator)
		return m, false
	}
	s.insert(h, record{
		issuer:    x.issuers.get(in.issuer),
		value:     in.value,
		revokedAt: in.revokedAt,
		expiresAt: in.expiresAt,
		note:      x.note(in.reason, in.initiator),
		kind:      in.kind,
	})
	x.count.Add(1)
	return in, true
}

// removeExpired deletes the given keys whose records still expire at or
// before now and returns how many it removed. The caller holds Store.mu.
func (x *index) removeExpired(keys []row, now int64) int {
	removed := 0
	for _, k := range keys {
		h := x.slotHash(x.keyHash(k.kind, k.value), k.issuer)
		s := &x.shards[h>>shardShift]
		s.mu.Lock()
		if s.remove(h, k, now) {
			removed++
		}
		s.mu.Unlock()
	}
	x.count.Add(int64(-removed))
	return removed
}

// compact shrinks the shards that sweeping left mostly empty and rebuilds the
// filter when most of its keys are gone. The caller holds Store.mu.
func (x *index) compact() {
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		if (len(s.slots) > minSlots && s.n < len(s.slots)/8) || (len(s.free) >= chunkSize && len(s.free) > s.n) {
			s.rebuild()
		}
		s.mu.Unlock()
	}
	if f := x.filter.Load(); f.load-int(x.count.Load()) > f.capacity/2 {
		x.rebuildFilter()
	}
}

// rebuildFilter builds a filter sized for the current entries and swaps it
// in; probes keep using the old one until the swap. The caller holds
// Store.mu, so no insert can slip between the scan and the swap.
func (x *index) rebuildFilter() {
	n := int(x.count.Load())
	f := newFilter(n)
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.RLock()
		s.each(func(r *record) bool {
			f.add(x.keyHash(r.kind, r.value))
			return true
		})
		s.mu.RUnlock()
	}
	f.load = n
	x.filter.Store(f)
}

// loaded converts a record read from the file, interning its issuer, reason
// and initiator so that reloading allocates only the value.
func (x *index) loaded(r rawRecord) row {
	return row{
		issuer:    x.issuers.bytes(r.issuer),
		value:     string(r.value),
		revokedAt: r.revokedAt,
		expiresAt: r.expiresAt,
		reason:    x.texts.bytes(r.reason),
		initiator: x.texts.bytes(r.initiator),
		kind:      r.kind,
	}
}

// note interns (reason, initiator); nil when both are empty.
func (x *index) note(reason, initiator string) *note {
	if reason == "" && initiator == "" {
		return nil
	}
	k := note{reason, initiator}
	if p, ok := x.notes[k]; ok {
		return p
	}
	p := &note{strings.Clone(reason), strings.Clone(initiator)}
	if len(x.notes) < maxInterned {
		x.notes[*p] = p
	}
	return p
}

func (r *record) row() row {
	out := row{
		issuer:    r.issuer,
		value:     r.value,
		revokedAt: r.revokedAt,
		expiresAt: r.expiresAt,
		kind:      r.kind,
	}
	if r.note != nil {
		out.reason, out.initiator = r.note.reason, r.note.initiator
	}
	return out
}

// interner shares one copy of each string (issuers, chiefly), up to
// maxInterned distinct strings.
type interner struct{ m map[string]string }

// bytes returns b as an interned string, allocating only on a miss.
func (in *interner) bytes(b []byte) string {
	if v, ok := in.m[string(b)]; ok {
		return v
	}
	return in.get(string(b))
}

func (in *interner) get(s string) string {
	if v, ok := in.m[s]; ok {
		return v
	}
	s = strings.Clone(s)
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

func (s *shard) rec(i uint32) *record { return &s.chunks[i/chunkSize][i%chunkSize] }

// lookup returns the record of the key with hash h, or nil. The caller holds
// s.mu (either mode).
func (s *shard) lookup(h uint64, k kindCode, issuer, value string) *record {
	tag := uint32(h)
	mask := uint32(len(s.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return nil
		}
		if uint32(v>>32) == tag {
			r := s.rec(uint32(v) - 1)
			if r.kind == k && r.value == value && r.issuer == issuer {
				return r
			}
		}
	}
}

// insert adds r (whose key is absent) under hash h, growing the table to stay
// at most 3/4 full. The caller holds s.mu.
func (s *shard) insert(h uint64, r record) {
	if (s.n+1)*4 > len(s.slots)*3 {
		s.rehash(len(s.slots) * 2)
	}
	var i uint32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		if s.next%chunkSize == 0 {
			s.chunks = append(s.chunks, make([]record, chunkSize))
		}
		i = s.next
		s.next++
	}
	*s.rec(i) = r
	s.place(uint64(uint32(h))<<32 | uint64(i+1))
	s.n++
}

// place puts an occupied slot value at the first free slot of its probe
// sequence.
func (s *shard) place(v uint64) {
	mask := uint32(len(s.slots) - 1)
	i := uint32(v>>32) & mask
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	s.slots[i] = v
}

// rehash moves the slots into a table of size n; records stay where they are.
func (s *shard) rehash(n int) {
	old := s.slots
	s.slots = make([]uint64, n)
	for _, v := range old {
		if v != 0 {
			s.place(v)
		}
	}
}

// remove deletes key k (hash h) if its record expires at or before now. It
// closes the gap by shifting later slots back (no tombstones). The caller
// holds s.mu.
func (s *shard) remove(h uint64, k row, now int64) bool {
	tag := uint32(h)
	mask := uint32(len(s.slots) - 1)
	i := tag & mask
	for {
		v := s.slots[i]
		if v == 0 {
			return false
		}
		if uint32(v>>32) == tag {
			r := s.rec(uint32(v) - 1)
			if r.kind == k.kind && r.value == k.value && r.issuer == k.issuer {
				if r.expiresAt > now {
					return false
				}
				*r = record{}
				s.free = append(s.free, uint32(v)-1)
				break
			}
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move each following slot whose home is not
	// in (i, j] into the hole.
	for j := (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		home := uint32(s.slots[j]>>32) & mask
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = 0
	s.n--
	return true
}

// rebuild compacts the records and resizes the table to at most half full.
// The caller holds s.mu.
func (s *shard) rebuild() {
	size := minSlots
	for size < s.n*2 {
		size *= 2
	}
	oldSlots, oldChunks := s.slots, s.chunks
	s.slots = make([]uint64, size)
	s.chunks, s.free, s.next, s.n = nil, nil, 0, 0
	for _, v := range oldSlots {
		if v != 0 {
			i := uint32(v) - 1
			s.insert(uint64(v>>32), oldChunks[i/chunkSize][i%chunkSize])
		}
	}
}

// each calls fn for every record until fn returns false. The caller holds
// s.mu (either mode).
func (s *shard) each(fn func(*record) bool) {
	for i := range s.next {
		if r := s.rec(i); r.value != "" && !fn(r) {
			return
		}
	}
}
