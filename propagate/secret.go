package propagate

import "log/slog"

// Secret is a configured credential (client secret, API token) or an admin
// access token. It redacts itself in logs, fmt output and JSON so that it
// is never written anywhere by accident; use string(s) where the value is
// needed.
type Secret string

const redacted = "[REDACTED]"

// String returns a fixed placeholder, never the secret.
func (s Secret) String() string { return redacted }

// GoString returns a fixed placeholder, never the secret.
func (s Secret) GoString() string { return redacted }

// LogValue returns a fixed placeholder, never the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns a fixed placeholder, never the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
