package cache

import (
	"strconv"
	"testing"
	"time"
)

func TestHeartbeatUp(t *testing.T) {
	const now = 1_000_000
	tests := []struct {
		name string
		h    heartbeatRecord
		want bool
	}{
		{"just seen", heartbeatRecord{Seen: now, Every: 100}, true},
		{"three intervals ago", heartbeatRecord{Seen: now - 300, Every: 100}, true},
		{"more than three intervals ago", heartbeatRecord{Seen: now - 301, Every: 100}, false},
		{"stopped", heartbeatRecord{Seen: now, Every: 100, Stopped: true}, false},
		{"no interval", heartbeatRecord{Seen: now}, false},
		{"clock ahead of the reader", heartbeatRecord{Seen: now + 50, Every: 100}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.up(now); got != tt.want {
				t.Errorf("up: got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestAckQueue(t *testing.T) {
	r := func(value string, revokedAt int64) row {
		return row{kind: codeJTI, issuer: "https://idp", value: value, revokedAt: revokedAt, expiresAt: revokedAt + int64(time.Hour)}
	}
	key := string(encodeKey(codeJTI, "https://idp", "a"))
	tests := []struct {
		name     string
		adds     []row
		ats      []int64
		wantRev  int64
		wantAt   int64
		wantAll  bool
		wantKeys int
	}{
		{"one", []row{r("a", 10)}, []int64{100}, 10, 100, false, 1},
		{"same version keeps the first apply", []row{r("a", 10), r("a", 10)}, []int64{100, 200}, 10, 100, false, 1},
		{"newer version replaces", []row{r("a", 10), r("a", 20)}, []int64{100, 200}, 20, 200, false, 1},
		{"older version ignored", []row{r("a", 20), r("a", 10)}, []int64{100, 200}, 20, 100, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q ackQueue
			q.init()
			for i, rw := range tt.adds {
				q.add([]row{rw}, tt.ats[i])
			}
			acks, all := q.take()
			a := acks[key]
			if len(acks) != tt.wantKeys || a.revokedAt != tt.wantRev || a.appliedAt != tt.wantAt || all != tt.wantAll {
				t.Errorf("got %d keys, %+v, all %v; want %d, revoked %d applied %d, all %v", len(acks), a, all, tt.wantKeys, tt.wantRev, tt.wantAt, tt.wantAll)
			}
		})
	}

	t.Run("bounded: overflow acks everything later", func(t *testing.T) {
		var q ackQueue
		q.init()
		for i := range maxPendingAcks + 10 {
			q.put(strconv.Itoa(i), appliedAck{1, 2, 3})
		}
		acks, all := q.take()
		if len(acks) != maxPendingAcks || !all {
			t.Errorf("got %d queued, all %v; want %d, true", len(acks), all, maxPendingAcks)
		}
		if acks, all := q.take(); len(acks) != 0 || all {
			t.Errorf("after take: got %d queued, all %v; want 0, false", len(acks), all)
		}
	})
}
