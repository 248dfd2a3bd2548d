package cache

import (
	"math/bits"
	"sync/atomic"
)

// filter is a blocked Bloom filter: each key sets one bit in each of the
// eight 64-bit words of one 64-byte block (a cache line), so a probe touches
// one line. At bitsPerKey it answers a missing key "maybe present" about once
// in a thousand probes; a positive is then settled by the exact index. Bits
// are read with atomic loads and set with atomic OR, so probes run
// concurrently with inserts; bits are never cleared (a rebuilt filter
// replaces the whole filter).
//
// This is the split-block layout of the Parquet Bloom filter
// (parquet-format BloomFilter.md) widened to 64-bit words, with the eight bit
// positions cut from one 64-bit product instead of eight 32-bit ones.
type filter struct {
	words []uint64
	mask  uint64 // number of blocks - 1
	// capacity is how many keys the filter is sized for; load counts the
	// keys added since it was built (including keys removed since). Both
	// are used only by writers, under Store.mu.
	capacity, load int
}

const (
	bitsPerKey        = 16
	minFilterCapacity = 1 << 10
)

// newFilter returns an empty filter for at least n keys.
func newFilter(n int) *filter {
	capacity := minFilterCapacity
	if n > capacity {
		capacity = 1 << bits.Len(uint(n-1))
	}
	blocks := capacity * bitsPerKey / 512
	return &filter{
		words:    make([]uint64, blocks*8),
		mask:     uint64(blocks - 1),
		capacity: capacity,
	}
}

// probe returns h's block (chosen by bits 32 and up of h) and the bit
// positions: eight 6-bit fields of h times an odd constant, whose high bits
// depend on every bit of h.
func (f *filter) probe(h uint64) (*[8]uint64, uint64) {
	i := ((h >> 32) & f.mask) * 8
	return (*[8]uint64)(f.words[i : i+8]), h * 0x9e3779b97f4a7c15
}

// test returns 1 if h may have been added and 0 if it certainly was not. It
// reads the eight words without branching: they share one cache line, and a
// branch per word would be mispredicted about half the time, stalling the
// probes that follow.
func (f *filter) test(h uint64) uint {
	b, p := f.probe(h)
	missing := ^atomic.LoadUint64(&b[0])&(1<<(p>>16&63)) |
		^atomic.LoadUint64(&b[1])&(1<<(p>>22&63)) |
		^atomic.LoadUint64(&b[2])&(1<<(p>>28&63)) |
		^atomic.LoadUint64(&b[3])&(1<<(p>>34&63)) |
		^atomic.LoadUint64(&b[4])&(1<<(p>>40&63)) |
		^atomic.LoadUint64(&b[5])&(1<<(p>>46&63)) |
		^atomic.LoadUint64(&b[6])&(1<<(p>>52&63)) |
		^atomic.LoadUint64(&b[7])&(1<<(p>>58))
	if missing == 0 {
		return 1
	}
	return 0
}

// add sets h's bits; safe against concurrent test.
func (f *filter) add(h uint64) {
	b, p := f.probe(h)
	for i := range b {
		atomic.OrUint64(&b[i], 1<<(p>>(16+6*i)&63))
	}
}

// fill is add without atomics, for a filter that no probe can see yet: it
// is published afterwards (atomic.Pointer.Store), which orders these writes
// before any probe's loads.
func (f *filter) fill(h uint64) {
	b, p := f.probe(h)
	for i := range b {
		b[i] |= 1 << (p >> (16 + 6*i) & 63)
	}
}
