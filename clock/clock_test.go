package clock_test

import (
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func TestOr(t *testing.T) {
	if clock.Or(nil) != clock.Real() {
		t.Error("Or(nil): not the real clock")
	}
	fake := clocktest.New(time.Time{})
	if clock.Or(fake) != fake {
		t.Error("Or(fake): not the fake")
	}
}

func TestRealTimer(t *testing.T) {
	tm, ch := clock.Real().NewTimer(0)
	<-ch
	if tm.Stop() {
		t.Error("Stop after firing: got true; want false")
	}
	tk, tch := clock.Real().NewTicker(time.Millisecond)
	<-tch
	tk.Stop()
	done := make(chan struct{})
	clock.Real().AfterFunc(0, func() { close(done) })
	<-done
}

func TestSince(t *testing.T) {
	c := clocktest.New(time.Time{})
	start := c.Now()
	c.Advance(3 * time.Second)
	if got := clock.Since(c, start); got != 3*time.Second {
		t.Errorf("Since: got %v; want 3s", got)
	}
}
