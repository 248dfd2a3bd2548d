package main

import (
	"os"
	"regexp"
	"testing"
)

// .ci/run starts nothing it does not stop, and stops nothing it did not
// start: a daemon a package starts is stopped by its init script or by
// `redis-cli shutdown` on its port, never by process name (which would
// also kill Redis servers of other runs on the machine).
func TestCIScriptStopsOnlyWhatItStarted(t *testing.T) {
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^[^#\n]*\b(pkill|killall)\b.*$`).Find(b); m != nil {
		t.Errorf(".ci/run kills by name: %q", m)
	}
	for _, want := range []string{"stop_packaged redis-server 6379", "stop_packaged redis-sentinel 26379", "shutdown nosave"} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).Match(b) {
			t.Errorf(".ci/run lacks %q", want)
		}
	}
}
