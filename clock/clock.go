// Package clock is the one source of time in oidcgate: every decision that
// depends on the time (expiry, TTLs, rate limits, retries, heartbeats,
// sweeps, audit timestamps) reads it from a Clock, so tests drive it with
// a fake (package clocktest) instead of sleeping. Its shape follows
// Tailscale's tstime: Now, NewTimer, NewTicker and AfterFunc.
//
// This package must never: import a project package; call time.Now,
// timers or tickers anywhere but in Real.
package clock

import "time"

// Clock tells the time and makes timers. Real() is the wall clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once d
	// has passed, like time.NewTimer.
	NewTimer(d time.Duration) (Timer, <-chan time.Time)
	// NewTicker returns a ticker that sends the time on its channel every
	// d, like time.NewTicker; d must be positive.
	NewTicker(d time.Duration) (Ticker, <-chan time.Time)
	// AfterFunc calls f in its own goroutine once d has passed, like
	// time.AfterFunc.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a stoppable timer (time.Timer's methods).
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset makes the timer fire after d; it reports whether it was
	// active.
	Reset(d time.Duration) bool
}

// Ticker is a stoppable ticker (time.Ticker's methods).
type Ticker interface {
	Stop()
	Reset(d time.Duration)
}

// Real returns the wall clock.
func Real() Clock { return realClock{} }

// Or returns c, or Real() when c is nil: the rule of every Config.Clock
// field ("nil means the wall clock").
func Or(c Clock) Clock {
	if c == nil {
		return Real()
	}
	return c
}

// Since returns the time elapsed on c since t.
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (Timer, <-chan time.Time) {
	t := time.NewTimer(d)
	return t, t.C
}

func (realClock) NewTicker(d time.Duration) (Ticker, <-chan time.Time) {
	t := time.NewTicker(d)
	return t, t.C
}

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
