package logout

import (
	"math"
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
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
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
