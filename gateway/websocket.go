package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// Protocol upgrades (issue 20 item 1). An upgraded connection is a tunnel
// past every later route check, so:
//   - h2c is refused on every path: RFC 9113 §3.1 deprecates the "h2c"
//     upgrade token, and the HTTP/2 requests that would follow it are never
//     routed or authenticated one by one;
//   - any other Upgrade is refused, except a WebSocket handshake (RFC 6455
//     §4.1) on a route with websocket: true, after its authentication;
//   - a tunnel opened with a credential ends when that credential is
//     revoked (on any replica: the store's subscription) or expires.

// h2cUpgrade reports whether r asks for an h2c upgrade: an Upgrade token
// "h2c" (in any case, with or without a version) or an HTTP2-Settings
// header (RFC 7540 §3.2.1, which the upgrade carries).
func h2cUpgrade(r *http.Request) bool {
	if len(r.Header["Http2-Settings"]) > 0 {
		return true
	}
	for _, v := range r.Header["Upgrade"] {
		for tok := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(tok), "/")
			if strings.EqualFold(name, "h2c") {
				return true
			}
		}
	}
	return false
}

// webSocketHandshake reports whether r is a WebSocket opening handshake
// (RFC 6455 §4.1): an HTTP/1.1 GET whose Upgrade is exactly "websocket"
// and whose Connection lists "upgrade".
func webSocketHandshake(r *http.Request) bool {
	up := r.Header["Upgrade"]
	if r.Method != http.MethodGet || !r.ProtoAtLeast(1, 1) || len(up) != 1 || !strings.EqualFold(strings.TrimSpace(up[0]), "websocket") {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// tunnels are the open WebSocket tunnels that a credential opened. A
// revocation cancels the context of every tunnel whose credential it
// revokes; ReverseProxy then closes both connections.
type tunnels struct {
	store  SessionStore
	mu     sync.Mutex
	open   map[*tunnel]struct{}
	cancel func() // the subscription's
}

type tunnel struct {
	cred cache.Credential
	end  context.CancelFunc
}

// newTunnels subscribes to store's revocations.
func newTunnels(store SessionStore) *tunnels {
	t := &tunnels{store: store, open: make(map[*tunnel]struct{})}
	t.cancel = store.Subscribe(t.revoked)
	return t
}

// revoked runs on the store's applying goroutine after each revocation:
// it only checks the open tunnels in memory and cancels contexts, which
// does not block.
func (t *tunnels) revoked(cache.Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tn := range t.open {
		if t.store.IsRevoked(&tn.cred) {
			tn.end()
			delete(t.open, tn)
		}
	}
}

// start registers a tunnel for cred that ends when cred expires (at
// expires, judged against now; a zero expires sets no end), when cred is
// revoked, or when ctx ends. The caller proxies with the returned context
// and calls done when the tunnel is over.
func (t *tunnels) start(ctx context.Context, cred cache.Credential, expires, now time.Time) (context.Context, func()) {
	var end context.CancelFunc
	if expires.IsZero() {
		ctx, end = context.WithCancel(ctx)
	} else {
		ctx, end = context.WithTimeout(ctx, expires.Sub(now))
	}
	tn := &tunnel{cred: cred, end: end}
	t.mu.Lock()
	t.open[tn] = struct{}{}
	t.mu.Unlock()
	// A revocation between authentication and registration found no
	// tunnel to end: check once more now that it is registered.
	if t.store.IsRevoked(&tn.cred) {
		end()
	}
	return ctx, func() {
		t.mu.Lock()
		delete(t.open, tn)
		t.mu.Unlock()
		end()
	}
}

// close ends the subscription; open tunnels end with their requests.
func (t *tunnels) close() {
	t.cancel()
}
