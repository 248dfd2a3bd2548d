// Package storetest is the conformance suite every revocation store backend
// runs (memory, bbolt, Redis): Run checks the semantics of the revocation
// model, RunDurable what a persisting backend adds.
//
// It only exercises a backend through the Store interface and an injected
// clock; it must never depend on how a backend keeps its entries.
package storetest
