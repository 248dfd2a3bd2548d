// Package clocktest is the fake clock.Clock of oidcgate's tests: time
// stands still until the test moves it (Advance, Set), and timers,
// tickers and AfterFunc functions fire as it passes their deadlines. Safe
// for concurrent use.
package clocktest

import (
	"sort"
	"sync"
	"time"

	"github.com/oidcgate/oidcgate/clock"
)

// Start is the time a Clock made by New(time.Time{}) starts at.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Clock is a fake clock.Clock. Its zero value is not usable; use New.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	step    time.Duration
	waiters []*waiter
	// real makes timers, tickers and AfterFunc run on the wall clock.
	real bool
}

var _ clock.Clock = (*Clock)(nil)

// New returns a clock standing at start (Start when zero).
func New(start time.Time) *Clock {
	if start.IsZero() {
		start = Start
	}
	return &Clock{now: start}
}

// NewStepping returns a clock standing at start (Start when zero) that
// moves forward by step after each reading of Now, so that successive
// readings differ.
func NewStepping(start time.Time, step time.Duration) *Clock {
	c := New(start)
	c.step = step
	return c
}

// NewRealTimers returns a clock whose time stands at start (Start when
// zero) and moves only by Advance and Set, but whose timers, tickers and
// AfterFunc functions run on the wall clock: for tests of background
// loops (heartbeats, delivery, resync) that must run on their own while
// the test decides what time the code reads.
func NewRealTimers(start time.Time) *Clock {
	c := New(start)
	c.real = true
	return c
}

// Now returns the clock's time (then moves it by the step, if any).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	now := c.now
	step := c.step
	c.mu.Unlock()
	if step > 0 {
		c.Advance(step)
	}
	return now
}

// Advance moves the clock forward by d and fires what became due, in
// deadline order.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.setLocked(c.now.Add(d))
}

// Set moves the clock to t (forward or back) and fires what became due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.setLocked(t)
}

// setLocked is called with c.mu held and releases it.
func (c *Clock) setLocked(t time.Time) {
	c.now = t
	var due []*waiter
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			due = append(due, w)
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	var funcs []func()
	for _, w := range due {
		if w.fn != nil {
			funcs = append(funcs, w.fn)
		} else {
			select {
			case w.ch <- w.at:
			default:
			}
		}
		if w.every > 0 {
			// A ticker comes back for its next tick after now (ticks
			// missed meanwhile are dropped, like time.Ticker).
			next := w.at.Add(w.every)
			for !next.After(t) {
				next = next.Add(w.every)
			}
			w.at = next
			c.waiters = append(c.waiters, w)
		}
	}
	c.mu.Unlock()
	for _, f := range funcs {
		go f()
	}
}

// Waiters returns how many timers, tickers and AfterFunc functions are
// pending: a test waits for it to grow before it advances the clock past
// a deadline that a goroutine is about to set.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

type waiter struct {
	c     *Clock
	at    time.Time
	every time.Duration
	ch    chan time.Time
	fn    func()
}

func (c *Clock) add(w *waiter, d time.Duration) {
	c.mu.Lock()
	w.at = c.now.Add(d)
	c.waiters = append(c.waiters, w)
	if d <= 0 {
		c.setLocked(c.now)
		return
	}
	c.mu.Unlock()
}

// NewTimer returns a timer that fires when the clock reaches now + d.
func (c *Clock) NewTimer(d time.Duration) (clock.Timer, <-chan time.Time) {
	if c.real {
		return clock.Real().NewTimer(d)
	}
	w := &waiter{c: c, ch: make(chan time.Time, 1)}
	c.add(w, d)
	return w, w.ch
}

// NewTicker returns a ticker that fires each time the clock passes a
// multiple of d from now.
func (c *Clock) NewTicker(d time.Duration) (clock.Ticker, <-chan time.Time) {
	if d <= 0 {
		panic("clocktest: non-positive interval for NewTicker")
	}
	if c.real {
		return clock.Real().NewTicker(d)
	}
	w := &waiter{c: c, every: d, ch: make(chan time.Time, 1)}
	c.add(w, d)
	return ticker{w}, w.ch
}

// ticker is a waiter with time.Ticker's method set.
type ticker struct{ w *waiter }

func (t ticker) Stop()                 { t.w.Stop() }
func (t ticker) Reset(d time.Duration) { t.w.Reset(d) }

// AfterFunc calls f in its own goroutine when the clock reaches now + d.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	if c.real {
		return clock.Real().AfterFunc(d, f)
	}
	w := &waiter{c: c, fn: f}
	c.add(w, d)
	return w
}

// Stop removes the waiter; it reports whether it was pending.
func (w *waiter) Stop() bool {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.remove()
}

func (w *waiter) remove() bool {
	for i, x := range w.c.waiters {
		if x == w {
			w.c.waiters = append(w.c.waiters[:i], w.c.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// Reset makes the waiter fire at now + d (a ticker: every d from now); it
// reports whether it was pending.
func (w *waiter) Reset(d time.Duration) bool {
	w.c.mu.Lock()
	was := w.remove()
	if w.every > 0 {
		w.every = d
	}
	w.c.mu.Unlock()
	w.c.add(w, d)
	return was
}
