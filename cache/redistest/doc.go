// Package redistest runs a real redis-server for tests: one process per
// Start, on a free loopback port, with persistence off, stopped when the
// test ends. Kill and Restart let fault tests cut Redis off and bring it
// back on the same address.
//
// It must never be imported by non-test code, and never reuses or touches
// a redis-server it did not start.
package redistest
