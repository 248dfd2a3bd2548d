package logout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
)

// storeTimeout bounds the replay-cache and store writes of one revocation
// a receiver accepts. They run detached from the request (see detached).
const storeTimeout = 10 * time.Second

// retryAfterUnavailable is the Retry-After, in seconds, of a 503.
const retryAfterUnavailable = "30"

// receiver is the part every inbound revocation receiver shares — the
// back-channel and front-channel logout receivers, the SSF receiver, and
// any receiver added next: the store it revokes into, how long its
// entries are kept, one token bucket per sender (an issuer or a
// transmitter), the clock and the logger. Its methods, with allowOnly and
// pushedBody, are the receivers' one request preamble: method, content
// type, size limit, rate limit, no-store, a store write that outlives the
// request, and the 503 for "not done, retry".
type receiver struct {
	store     Store
	retention retention
	limits    *limiter
	now       func() time.Time
	log       *slog.Logger
}

// newReceiver is the shared part of a receiver built from cfg, which has
// its defaults applied (Config.withDefaults). senders names the token
// buckets (Config.Receivers' rate and burst each): a sender not named is
// always refused by limit.
func newReceiver(cfg Config, senders []string) receiver {
	rc := cfg.Receivers.withDefaults()
	return receiver{
		store:     cfg.Store,
		retention: cfg.retention(),
		limits:    newLimiter(senders, rc.RatePerSecond, rc.Burst, cfg.Clock.Now),
		now:       cfg.Clock.Now,
		log:       cfg.Logger,
	}
}

// allowOnly reports whether r's method is method. When it is not, it sets
// Allow (RFC 9110 §15.5.6: a 405 MUST list the allowed methods) and the
// caller answers 405 in its protocol's error format.
func allowOnly(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	return false
}

// pushedBody is the preamble of a receiver whose sender POSTs a body: the
// answer is never cached (Cache-Control: no-store, whatever it will be);
// the Content-Type must be mediaType and, with utf8Only, a charset
// parameter must be UTF-8; the body is read, at most limit bytes. It
// returns the body, or a problem description that is safe to send (it
// never quotes the input), answered 400 by the caller.
func pushedBody(w http.ResponseWriter, r *http.Request, mediaType string, utf8Only bool, limit int64) ([]byte, string) {
	w.Header().Set("Cache-Control", "no-store")
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != mediaType {
		return nil, "Content-Type must be " + mediaType
	}
	if cs, ok := params["charset"]; utf8Only && ok && !strings.EqualFold(cs, "utf-8") {
		return nil, "charset must be UTF-8"
	}
	return readLimited(w, r, limit)
}

// readLimited reads r's body, at most limit bytes, or returns a problem
// description that is safe to send.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, string) {
	if r.ContentLength > limit {
		return nil, fmt.Sprintf("body larger than %d bytes", limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Sprintf("body larger than %d bytes", limit)
		}
		return nil, "body could not be read"
	}
	return body, ""
}

// limit takes one token from sender's bucket. When none is left it sets
// Retry-After (RFC 6585 §4) and returns false: the caller answers 429 in
// its protocol's format. A receiver charges a sender only for requests
// that are verifiably its own, so forged ones cannot use up its budget,
// and before recording a replay key, so the refused request may be sent
// again.
func (rc *receiver) limit(w http.ResponseWriter, sender string) bool {
	ok, wait := rc.limits.allow(sender)
	if !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
	}
	return ok
}

// detached is the context of a request's store writes: it outlives the
// request by up to storeTimeout, so that once a replay key is recorded
// the revocation is attempted even if the sender hangs up.
func detached(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
}

// notDone logs that a request's revocation could not be done now and
// sets Retry-After: the caller answers 503 in its protocol's format,
// never the success status (the sender must send it again).
func (rc *receiver) notDone(w http.ResponseWriter, r *http.Request, msg string, cause error, attrs []slog.Attr) {
	rc.log.LogAttrs(r.Context(), slog.LevelError, msg, append(attrs, slog.Any("error", cause))...)
	w.Header().Set("Retry-After", retryAfterUnavailable)
}
