package introspect

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every bad-credential error wraps ErrInvalidToken (and
// also ErrExpired or ErrRevoked where that applies); ErrUnavailable means
// the verifier could not decide (keys unreachable) and callers answer 503,
// still refusing the request.
var (
	ErrInvalidToken = errors.New("introspect: invalid token")
	ErrExpired      = errors.New("introspect: token expired")
	ErrRevoked      = errors.New("introspect: token revoked")
	ErrUnavailable  = errors.New("introspect: cannot verify now")
)

// tokenError is a bad-credential error. It wraps ErrInvalidToken, and
// ErrExpired or ErrRevoked where that applies; its reason is short, safe
// to log and never contains the token.
type tokenError struct {
	reason string
	is     []error
}

func (e *tokenError) Error() string   { return "introspect: invalid token: " + e.reason }
func (e *tokenError) Unwrap() []error { return e.is }

// invalid returns a bad-credential error with the given reason.
func invalid(format string, args ...any) error {
	return &tokenError{reason: fmt.Sprintf(format, args...), is: []error{ErrInvalidToken}}
}

// expired returns a bad-credential error that also wraps ErrExpired.
func expired(reason string) error {
	return &tokenError{reason: reason, is: []error{ErrInvalidToken, ErrExpired}}
}

// errRevoked is returned for every revoked credential.
var errRevoked error = &tokenError{reason: "revoked", is: []error{ErrInvalidToken, ErrRevoked}}
