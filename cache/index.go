package cache

import (
	"encoding/binary"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
)

// index is the exact in-memory set of entries with a Bloom filter in front.
// The garbage collector does not see it: nothing it holds per entry is a
// pointer (issue 16). At 1M entries a layout of strings and note pointers
// made every collection mark a million objects, and the tail latency paid
// for it.
//
// Entries live in numShards shards. Each shard has an open-addressing hash
// table of 64-bit slots (32-bit hash tag | record number + 1) over chunked
// storage of fixed-size records (32 bytes, no pointers), and an arena of
// byte chunks that holds each record's value (and an issuer or a note that
// could not be interned). Issuers and (reason, initiator) pairs are interned
// into tables of at most maxInterned strings; a record names them by a
// 16-bit id.
//
// The hash is a keyed one (hash/maphash, seeded at random per process), so
// values cannot be chosen to collide; a slot's tag only selects candidates:
// a lookup compares the kind, the issuer and every byte of the value, so a
// collision can neither revoke nor spare the wrong credential.
//
// Readers (revokedAt, get, List, Sweep) take a shard's read lock. Every
// mutation runs with the Store's write lock held, and then takes the shard's
// lock: there is one writer at a time, which keeps interning and filter
// rebuilds simple. An interned id is written before the first record naming
// it is published under a shard lock, so a reader that sees the record sees
// the string.
type index struct {
	seed   maphash.Seed
	filter atomic.Pointer[filter]
	count  atomic.Int64
	shards [numShards]shard

	// Used by writers only, under Store.mu (see above for readers).
	issuers table[string]
	notes   table[note]

	// collide, set only by tests, makes every value of a kind hash alike,
	// so that the comparisons behind the tags are what tells keys apart.
	collide bool
}

const (
	numShards  = 64
	shardShift = 58 // h >> shardShift picks the shard
	chunkSize  = 256
	minSlots   = 64
	// maxInterned bounds each intern table: beyond it issuers and notes are
	// kept in the record's arena bytes, so hostile input cannot grow the
	// tables without bound.
	maxInterned = 4096
	// Arena chunks grow from minArenaChunk to maxArenaChunk bytes; an
	// offset is chunk<<16 | position, so a shard holds up to 4 GiB.
	minArenaChunk = 1 << 10
	maxArenaChunk = 1 << 16
	// noteInline in record.note: the note's bytes follow the value.
	noteInline = 0xffff
)

// record is one entry in memory: 32 bytes, no pointers.
type record struct {
	revokedAt, expiresAt int64
	// off is the arena offset of the record's bytes: the issuer when it
	// is not interned (ilen bytes), the value (vlen bytes), and an inline
	// note (reason and initiator, each after a 2-byte length).
	off        uint32
	vlen, ilen uint16
	// iss is the interned issuer's id; 0 with ilen 0 is the empty issuer.
	iss uint16
	// note is the interned note's id, 0 for no note, or noteInline.
	note uint16
	kind kindCode // 0 marks a free record
}

// note is the (reason, initiator) pair of a record.
type note struct{ reason, initiator string }

// table interns up to maxInterned values of T; id 0 is T's zero value. The
// list is allocated at its full size, so readers can index it while a writer
// fills later ids.
type table[T comparable] struct {
	ids  map[T]uint16
	list *[maxInterned + 1]T
}

func newTable[T comparable]() table[T] {
	return table[T]{ids: make(map[T]uint16), list: new([maxInterned + 1]T)}
}

// id returns v's id, interning v if there is room; ok is false when v is
// not interned and the table is full. The caller holds Store.mu.
func (t *table[T]) id(v T, clone func(T) T) (uint16, bool) {
	var zero T
	if v == zero {
		return 0, true
	}
	if id, ok := t.ids[v]; ok {
		return id, true
	}
	if len(t.ids) >= maxInterned {
		return 0, false
	}
	id := uint16(len(t.ids) + 1)
	v = clone(v)
	t.list[id] = v
	t.ids[v] = id
	return id, true
}

type shard struct {
	mu     sync.RWMutex
	slots  []uint64
	chunks [][]record
	free   []uint32 // record numbers to reuse
	next   uint32   // record numbers below next have been handed out
	n      int
	// arena holds the records' bytes; apos is how much of its last chunk
	// is used, and dead counts the bytes no record names any more.
	arena      arena
	apos, dead int
	_          [64]byte // keep neighbouring shards' locks off this cache line
}

func newIndex() *index {
	x := &index{
		seed:    maphash.MakeSeed(),
		issuers: newTable[string](),
		notes:   newTable[note](),
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
	if x.collide {
		return uint64(k.base()) * 0x9e3779b97f4a7c15
	}
	return maphash.String(x.seed, value) ^ uint64(k.base())*0x9e3779b97f4a7c15
}

// keyHashBytes is keyHash of a value held as bytes (maphash.Bytes(b)
// equals maphash.String(string(b))).
func (x *index) keyHashBytes(k kindCode, value []byte) uint64 {
	if x.collide {
		return uint64(k.base()) * 0x9e3779b97f4a7c15
	}
	return maphash.Bytes(x.seed, value) ^ uint64(k.base())*0x9e3779b97f4a7c15
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
	if r := x.lookup(s, sh, k, issuer, value); r != nil {
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
	r := x.lookup(s, sh, k, issuer, value)
	if r == nil {
		return row{}, false
	}
	return x.stored(s, r, issuer, value), true
}

// upsert merges in with the stored entry of its key, or adds it, and returns
// the stored result. Insert is table then filter, so a filter positive always
// finds the record. The caller holds Store.mu.
func (x *index) upsert(in row) row {
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
// once at the end. The caller holds Store.mu.
func (x *index) put(in row) (row, bool) {
	h := x.slotHash(x.keyHash(in.kind, in.value), in.issuer)
	s := &x.shards[h>>shardShift]
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := x.lookup(s, h, in.kind, in.issuer, in.value); r != nil {
		old := x.stored(s, r, in.issuer, in.value)
		m := merge(old, in)
		r.revokedAt, r.expiresAt = m.revokedAt, m.expiresAt
		if m.reason != old.reason || m.initiator != old.initiator {
			x.setNote(s, r, m)
		}
		return m, false
	}
	var r record
	r.revokedAt, r.expiresAt, r.kind = in.revokedAt, in.expiresAt, in.kind
	x.write(s, &r, in)
	s.insert(h, r)
	x.count.Add(1)
	return in, true
}

// write lays out in's issuer, value and note for r: interned ids where it
// can, the rest in newly allocated arena bytes. The caller holds s.mu for
// writing and Store.mu.
func (x *index) write(s *shard, r *record, in row) {
	iss, interned := x.issuers.id(in.issuer, cloneString)
	nid := uint16(noteInline)
	if in.kind != codeAPIKey {
		// An API key's texts are its own fields: never shared, never
		// interned.
		if id, ok := x.notes.id(note{in.reason, in.initiator}, cloneNote); ok {
			nid = id
		}
	}
	lay(s, r, iss, !interned, in.issuer, in.value, nid, in.reason, in.initiator)
}

// lay allocates and fills r's arena bytes: the issuer when inline is set,
// the value, and the note when nid is noteInline; iss and nid are the
// interned ids. The caller holds s.mu for writing.
func lay[S string | []byte](s *shard, r *record, iss uint16, inline bool, issuer string, value S, nid uint16, reason, initiator S) {
	ilen := 0
	if inline {
		ilen = len(issuer)
	}
	noteLen := 0
	if nid == noteInline {
		noteLen = 4 + len(reason) + len(initiator)
	}
	off, b := s.alloc(ilen + len(value) + noteLen)
	n := copy(b, issuer[:ilen])
	n += copy(b[n:], value)
	if nid == noteInline {
		binary.BigEndian.PutUint16(b[n:], uint16(len(reason)))
		n += 2 + copy(b[n+2:], reason)
		binary.BigEndian.PutUint16(b[n:], uint16(len(initiator)))
		copy(b[n+2:], initiator)
	}
	r.off, r.vlen, r.ilen, r.iss, r.note = off, uint16(len(value)), uint16(ilen), iss, nid
}

// setNote replaces r's note with m's. An inline note, old or new, rewrites
// the record's bytes; the old ones become dead.
func (x *index) setNote(s *shard, r *record, m row) {
	if r.note != noteInline && r.kind != codeAPIKey {
		if id, ok := x.notes.id(note{m.reason, m.initiator}, cloneNote); ok {
			r.note = id
			return
		}
	}
	s.dead += s.arena.size(r)
	x.write(s, r, m)
}

// stored returns r as a row, with issuer and value given by the caller (who
// has compared them with r's) and the note as stored. It allocates only for
// an inline note. The caller holds s.mu.
func (x *index) stored(s *shard, r *record, issuer, value string) row {
	out := row{
		issuer:    issuer,
		value:     value,
		revokedAt: r.revokedAt,
		expiresAt: r.expiresAt,
		kind:      r.kind,
	}
	out.reason, out.initiator = x.note(s, r)
	return out
}

// row returns r as a row, copying its strings out of the arena. The caller
// holds s.mu.
func (x *index) row(s *shard, r *record) row {
	return x.stored(s, r, x.issuer(s, r), string(s.arena.value(r)))
}

// issuer returns r's issuer (allocating only when it is not interned).
func (x *index) issuer(s *shard, r *record) string {
	if r.ilen > 0 {
		return string(s.arena.bytes(r.off, int(r.ilen)))
	}
	return x.issuers.list[r.iss]
}

// note returns r's reason and initiator (allocating only when inline).
func (x *index) note(s *shard, r *record) (reason, initiator string) {
	if r.note != noteInline {
		n := x.notes.list[r.note]
		return n.reason, n.initiator
	}
	b := s.arena.noteBytes(r)
	n := binary.BigEndian.Uint16(b)
	all := string(b) // one allocation for both texts
	reason = all[2 : 2+n]
	return reason, all[4+n:]
}

// matches reports whether r is the key (k, issuer, value): the kind, the
// issuer and every byte of the value are compared. The caller holds s.mu.
func (x *index) matches(s *shard, r *record, k kindCode, issuer, value string) bool {
	if r.kind != k || int(r.vlen) != len(value) || string(s.arena.value(r)) != value {
		return false
	}
	return x.issuerIs(s, r, issuer)
}

// issuerIs reports whether r's issuer is issuer, without allocating.
func (x *index) issuerIs(s *shard, r *record, issuer string) bool {
	if r.ilen > 0 {
		return string(s.arena.bytes(r.off, int(r.ilen))) == issuer
	}
	return x.issuers.list[r.iss] == issuer
}

// lookup returns the record of the key with hash h, or nil. The caller holds
// s.mu (either mode).
func (x *index) lookup(s *shard, h uint64, k kindCode, issuer, value string) *record {
	tag := uint32(h)
	mask := uint32(len(s.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return nil
		}
		if uint32(v>>32) == tag {
			if r := s.rec(uint32(v) - 1); x.matches(s, r, k, issuer, value) {
				return r
			}
		}
	}
}

// removeExpired deletes the given keys whose records still expire at or
// before now and returns how many it removed. The caller holds Store.mu.
func (x *index) removeExpired(keys []row, now int64) int {
	removed := 0
	for _, k := range keys {
		h := x.slotHash(x.keyHash(k.kind, k.value), k.issuer)
		s := &x.shards[h>>shardShift]
		s.mu.Lock()
		if x.remove(s, h, k, now) {
			removed++
		}
		s.mu.Unlock()
	}
	x.count.Add(int64(-removed))
	return removed
}

// compact shrinks the shards that sweeping left mostly empty, or whose
// arena is mostly dead bytes, and rebuilds the filter when most of its keys
// are gone. The caller holds Store.mu.
func (x *index) compact() {
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		if (len(s.slots) > minSlots && s.n < len(s.slots)/8) || (len(s.free) >= chunkSize && len(s.free) > s.n) ||
			(s.dead >= maxArenaChunk && s.dead*2 > s.used()) {
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
			f.add(x.keyHashBytes(r.kind, s.arena.value(r)))
			return true
		})
		s.mu.RUnlock()
	}
	f.load = n
	x.filter.Store(f)
}

// loader fills an empty index from a file in bulk. Keys in the file are
// unique, so a record is appended to its shard without a lookup and without
// copying its bytes into strings; the shards' tables are then sized once and
// filled in parallel, and the filter built. Used by one goroutine, under
// Store.mu, before the index has readers.
type loader struct {
	x *index
	// pending are each shard's slot values, placed by finish; hashes are
	// the records' keyHashes, for the filter.
	pending [numShards][]uint64
	hashes  []uint64
	// last is the note of the previous record (file order groups records
	// by issuer, whose notes are mostly alike) and its id.
	lastReason, lastInitiator []byte
	lastNote                  uint16
	lastOK                    bool
}

// add appends r; its byte slices may alias a bbolt page: they are copied.
func (l *loader) add(r rawRecord) {
	x := l.x
	var issuer string
	iss, interned := x.issuers.ids[string(r.issuer)]
	switch {
	case interned:
		issuer = x.issuers.list[iss]
	case len(r.issuer) == 0:
		interned = true
	default:
		issuer = string(r.issuer)
		iss, interned = x.issuers.id(issuer, keepString)
	}
	nid := uint16(noteInline)
	if r.kind != codeAPIKey {
		if !l.lastOK || string(r.reason) != string(l.lastReason) || string(r.initiator) != string(l.lastInitiator) {
			l.lastNote, l.lastOK = x.notes.id(note{string(r.reason), string(r.initiator)}, keepNote)
			l.lastReason, l.lastInitiator = r.reason, r.initiator
		}
		if l.lastOK {
			nid = l.lastNote
		}
	}
	kh := x.keyHashBytes(r.kind, r.value)
	l.hashes = append(l.hashes, kh)
	h := x.slotHash(kh, issuer)
	i := h >> shardShift
	s := &x.shards[i]
	rec := record{revokedAt: r.revokedAt, expiresAt: r.expiresAt, kind: r.kind}
	lay(s, &rec, iss, !interned, issuer, r.value, nid, r.reason, r.initiator)
	l.pending[i] = append(l.pending[i], uint64(uint32(h))<<32|uint64(s.appendRecord(rec)+1))
}

// finish places the pending slots, shards in parallel, while it builds the
// filter.
func (l *loader) finish() {
	x := l.x
	x.count.Add(int64(len(l.hashes)))
	var wg sync.WaitGroup
	work := make(chan int, numShards)
	for i := range x.shards {
		work <- i
	}
	close(work)
	for range min(runtime.GOMAXPROCS(0), numShards) {
		wg.Go(func() {
			for i := range work {
				s := &x.shards[i]
				s.mu.Lock()
				s.grow(s.n + len(l.pending[i]))
				for _, v := range l.pending[i] {
					s.place(v)
				}
				s.n += len(l.pending[i])
				s.mu.Unlock()
				l.pending[i] = nil
			}
		})
	}
	f := newFilter(int(x.count.Load()))
	for _, h := range l.hashes {
		f.fill(h)
	}
	f.load = int(x.count.Load())
	x.filter.Store(f)
	wg.Wait()
}

// keepString and keepNote intern values that are already copies.
func keepString(s string) string { return s }

func keepNote(n note) note { return n }

func cloneString(s string) string { return string([]byte(s)) }

func cloneNote(n note) note { return note{cloneString(n.reason), cloneString(n.initiator)} }

func (s *shard) rec(i uint32) *record { return &s.chunks[i/chunkSize][i%chunkSize] }

// arena is a shard's record bytes: chunks of at most maxArenaChunk bytes,
// addressed by offsets chunk<<16 | position.
type arena [][]byte

// bytes returns n bytes at off.
func (a arena) bytes(off uint32, n int) []byte {
	return a[off>>16][off&0xffff:][:n]
}

// value returns r's value bytes.
func (a arena) value(r *record) []byte {
	return a.bytes(r.off+uint32(r.ilen), int(r.vlen))
}

// noteBytes returns r's inline note bytes (lengths included).
func (a arena) noteBytes(r *record) []byte {
	off := r.off + uint32(r.ilen) + uint32(r.vlen)
	n := int(binary.BigEndian.Uint16(a.bytes(off, 2)))
	m := int(binary.BigEndian.Uint16(a.bytes(off+2+uint32(n), 2)))
	return a.bytes(off, 4+n+m)
}

// size is the number of bytes r names.
func (a arena) size(r *record) int {
	n := int(r.ilen) + int(r.vlen)
	if r.note == noteInline {
		n += len(a.noteBytes(r))
	}
	return n
}

// used is the number of arena bytes handed out (live and dead).
func (s *shard) used() int {
	n := 0
	for _, c := range s.arena[:max(len(s.arena)-1, 0)] {
		n += len(c)
	}
	return n + s.apos
}

// alloc hands out n arena bytes (n is at most 3 KiB: two MaxValueLen
// strings and two MaxTextLen ones) and returns their offset.
func (s *shard) alloc(n int) (uint32, []byte) {
	last := len(s.arena) - 1
	if last < 0 || s.apos+n > len(s.arena[last]) {
		size := minArenaChunk
		if last >= 0 {
			size = min(2*len(s.arena[last]), maxArenaChunk)
		}
		s.arena = append(s.arena, make([]byte, max(size, n)))
		s.apos, last = 0, last+1
	}
	off := uint32(last)<<16 | uint32(s.apos)
	s.apos += n
	return off, s.arena[last][s.apos-n : s.apos]
}

// insert adds r (whose key is absent) under hash h, growing the table to stay
// at most 3/4 full. The caller holds s.mu.
func (s *shard) insert(h uint64, r record) {
	s.grow(s.n + 1)
	s.place(uint64(uint32(h))<<32 | uint64(s.appendRecord(r)+1))
	s.n++
}

// grow doubles the table until n slots fill at most 3/4 of it.
func (s *shard) grow(n int) {
	size := len(s.slots)
	for n*4 > size*3 {
		size *= 2
	}
	if size != len(s.slots) {
		s.rehash(size)
	}
}

// appendRecord stores r in a free record (not yet in the table) and returns
// its number.
func (s *shard) appendRecord(r record) uint32 {
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
	return i
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
func (x *index) remove(s *shard, h uint64, k row, now int64) bool {
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
			if x.matches(s, r, k.kind, k.issuer, k.value) {
				if r.expiresAt > now {
					return false
				}
				s.dead += s.arena.size(r)
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

// rebuild compacts the records and their arena bytes, and resizes the table
// to at most half full. The caller holds s.mu.
func (s *shard) rebuild() {
	size := minSlots
	for size < s.n*2 {
		size *= 2
	}
	oldSlots, oldChunks, oldArena := s.slots, s.chunks, s.arena
	s.slots = make([]uint64, size)
	s.chunks, s.free, s.next, s.n = nil, nil, 0, 0
	s.arena, s.apos, s.dead = nil, 0, 0
	for _, v := range oldSlots {
		if v != 0 {
			i := uint32(v) - 1
			r := oldChunks[i/chunkSize][i%chunkSize]
			n := oldArena.size(&r)
			off, b := s.alloc(n)
			copy(b, oldArena.bytes(r.off, n))
			r.off = off
			s.insert(uint64(v>>32), r)
		}
	}
}

// each calls fn for every record until fn returns false. The caller holds
// s.mu (either mode).
func (s *shard) each(fn func(*record) bool) {
	for i := range s.next {
		if r := s.rec(i); r.kind != 0 && !fn(r) {
			return
		}
	}
}

// compareKey orders r against b by (issuer, kind, value), as compareKeys
// orders rows, without copying r's strings. The caller holds s.mu.
func (x *index) compareKey(s *shard, r *record, b row) int {
	var c int
	if r.ilen > 0 {
		c = compareBytes(s.arena.bytes(r.off, int(r.ilen)), b.issuer)
	} else {
		c = cmpString(x.issuers.list[r.iss], b.issuer)
	}
	switch {
	case c != 0:
		return c
	case r.kind != b.kind:
		return int(r.kind) - int(b.kind)
	}
	return compareBytes(s.arena.value(r), b.value)
}

// compareBytes is strings.Compare(string(a), b) without the conversion.
func compareBytes(a []byte, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
