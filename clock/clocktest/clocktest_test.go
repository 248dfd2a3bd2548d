package clocktest_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func TestTimerFiresWhenDue(t *testing.T) {
	c := clocktest.New(time.Time{})
	tm, ch := c.NewTimer(time.Minute)
	c.Advance(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("timer fired before its deadline")
	default:
	}
	c.Advance(time.Second)
	select {
	case got := <-ch:
		if want := clocktest.Start.Add(time.Minute); !got.Equal(want) {
			t.Errorf("timer sent %v; want %v", got, want)
		}
	default:
		t.Fatal("timer did not fire at its deadline")
	}
	if tm.Stop() {
		t.Error("Stop after firing: got true; want false")
	}
}

func TestTimerStopAndReset(t *testing.T) {
	c := clocktest.New(time.Time{})
	tm, ch := c.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer: got false; want true")
	}
	c.Advance(time.Hour)
	select {
	case <-ch:
		t.Fatal("a stopped timer fired")
	default:
	}
	if tm.Reset(time.Second) {
		t.Error("Reset of a stopped timer: got true; want false")
	}
	c.Advance(time.Second)
	select {
	case <-ch:
	default:
		t.Fatal("a reset timer did not fire")
	}
}

func TestTicker(t *testing.T) {
	c := clocktest.New(time.Time{})
	tk, ch := c.NewTicker(10 * time.Second)
	for i := range 3 {
		c.Advance(10 * time.Second)
		select {
		case <-ch:
		default:
			t.Fatalf("tick %d missing", i)
		}
	}
	// Ticks missed while nobody reads are dropped, not queued.
	c.Advance(time.Minute)
	<-ch
	select {
	case <-ch:
		t.Fatal("a missed tick was queued")
	default:
	}
	tk.Stop()
	c.Advance(time.Minute)
	select {
	case <-ch:
		t.Fatal("a stopped ticker ticked")
	default:
	}
	if n := c.Waiters(); n != 0 {
		t.Errorf("Waiters after Stop: got %d; want 0", n)
	}
}

func TestAfterFunc(t *testing.T) {
	c := clocktest.New(time.Time{})
	done := make(chan struct{})
	var calls atomic.Int32
	c.AfterFunc(time.Second, func() { calls.Add(1); close(done) })
	stopped := c.AfterFunc(time.Second, func() { calls.Add(10) })
	stopped.Stop()
	c.Advance(time.Second)
	<-done
	if n := calls.Load(); n != 1 {
		t.Errorf("calls: got %d; want 1", n)
	}
}

func TestStepping(t *testing.T) {
	c := clocktest.NewStepping(time.Time{}, time.Second)
	a, b := c.Now(), c.Now()
	if b.Sub(a) != time.Second {
		t.Errorf("successive readings differ by %v; want 1s", b.Sub(a))
	}
}

func TestSetBackwards(t *testing.T) {
	c := clocktest.New(time.Time{})
	_, ch := c.NewTimer(time.Second)
	c.Set(clocktest.Start.Add(-time.Hour))
	select {
	case <-ch:
		t.Fatal("timer fired when the clock went back")
	default:
	}
	if got := c.Now(); !got.Equal(clocktest.Start.Add(-time.Hour)) {
		t.Errorf("Now after Set: got %v", got)
	}
}

func TestRealTimers(t *testing.T) {
	c := clocktest.NewRealTimers(time.Time{})
	_, ch := c.NewTimer(time.Millisecond)
	<-ch // fires on the wall clock, the fake time unmoved
	if got := c.Now(); !got.Equal(clocktest.Start) {
		t.Errorf("Now: got %v; want %v", got, clocktest.Start)
	}
}
