package logout

import (
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// limiter is a token bucket per configured issuer. Its set of buckets is
// fixed at construction: a name it does not know is refused and adds no
// state, so no input can grow its memory.
type limiter struct {
	rate    float64 // tokens per second
	burst   float64
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newLimiter(issuers []string, rate float64, burst int, now func() time.Time) *limiter {
	l := &limiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket, len(issuers))}
	for _, iss := range issuers {
		l.buckets[iss] = &bucket{tokens: l.burst, last: now()}
	}
	return l
}

// allow takes one token from issuer's bucket. When none is left it returns
// false and how long until one is.
func (l *limiter) allow(issuer string) (bool, time.Duration) {
	b, ok := l.buckets[issuer]
	if !ok {
		return false, 0
	}
	now := l.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.take(now, l.rate, l.burst)
}

// take refills b for the time since its last use and takes one token;
// the caller holds b.mu. When none is left it returns false and how long
// until one is.
func (b *bucket) take(now time.Time, rate, burst float64) (bool, time.Duration) {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(burst, b.tokens+el.Seconds()*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// sourceLimiter is a token bucket per client address (an IPv4 address, an
// IPv6 /64: one host usually holds a whole /64). It keeps at most max
// sources; when full it forgets the sources whose bucket has refilled
// (they lose nothing), and while every kept source is still draining, new
// sources share one overflow bucket, so no input grows its memory past
// max and an attacker with many addresses cannot lock out a source it
// does not hold.
type sourceLimiter struct {
	rate  float64
	burst float64
	max   int
	now   func() time.Time

	mu       sync.Mutex
	sources  map[netip.Prefix]*bucket
	overflow bucket
}

func newSourceLimiter(rate float64, burst, max int, now func() time.Time) *sourceLimiter {
	return &sourceLimiter{
		rate: rate, burst: float64(burst), max: max, now: now,
		sources:  make(map[netip.Prefix]*bucket),
		overflow: bucket{tokens: float64(burst), last: now()},
	}
}

// sourceOf is the source r comes from: its peer address (never a
// client-sent header) as an IPv4 /32 or an IPv6 /64. An address that does
// not parse counts as one shared unknown source.
func sourceOf(remoteAddr string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// allow takes one token from the bucket of src. When none is left it
// returns false and how long until one is.
func (l *sourceLimiter) allow(src netip.Prefix) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.sources[src]
	if !ok {
		if len(l.sources) >= l.max {
			l.forgetRefilled(now)
		}
		if len(l.sources) >= l.max {
			return l.overflow.take(now, l.rate, l.burst)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.sources[src] = b
	}
	return b.take(now, l.rate, l.burst)
}

// forgetRefilled drops the sources whose bucket is full again at now; the
// caller holds mu.
func (l *sourceLimiter) forgetRefilled(now time.Time) {
	for src, b := range l.sources {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.sources, src)
		}
	}
}

// retryAfter renders d as a Retry-After value in whole seconds (RFC 9110
// §10.2.3), at least 1.
func retryAfter(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
