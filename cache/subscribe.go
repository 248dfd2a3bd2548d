package cache

import "sync"

// subscribers are the functions Subscribe registered.
type subscribers struct {
	mu   sync.Mutex
	next uint64
	fns  map[uint64]func(Entry)
	// list is fns as a slice, rebuilt on change, so notify copies nothing.
	list []func(Entry)
}

func (s *subscribers) add(fn func(Entry)) (cancel func()) {
	if fn == nil {
		return func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = make(map[uint64]func(Entry))
	}
	id := s.next
	s.next++
	s.fns[id] = fn
	s.rebuild()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.fns, id)
			s.rebuild()
		})
	}
}

// rebuild replaces list; the caller holds mu. A notify in progress keeps
// the old slice.
func (s *subscribers) rebuild() {
	list := make([]func(Entry), 0, len(s.fns))
	for _, fn := range s.fns {
		list = append(list, fn)
	}
	s.list = list
}

func (s *subscribers) notify(e Entry) {
	s.mu.Lock()
	list := s.list
	s.mu.Unlock()
	for _, fn := range list {
		fn(e)
	}
}

// Subscribe registers fn to be called with each entry applied to the store:
// after every successful Revoke (with the entry as stored), and, for a
// Redis store, after every entry received from Redis that added to or
// strengthened the local mirror. It is not called for entries loaded by
// Open. fn runs synchronously on the applying goroutine (a Revoke caller
// or the Redis follower): it must not block and must not call back into
// the store's writing methods; hand slow work to another goroutine. One
// revocation is applied, and so reported, once on every replica. A nil fn
// registers nothing. cancel stops further calls; it is idempotent.
func (s *Store) Subscribe(fn func(Entry)) (cancel func()) { return s.subs.add(fn) }
