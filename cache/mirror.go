package cache

import bolt "go.etcd.io/bbolt"

// The Store methods a Redis store uses to keep its mirror.

// apply merges rows received from Redis into memory, calls the Subscribe
// functions for each row that added to or strengthened an entry (API key
// records are not revocations: they are not reported), and
// returns those rows as stored. It does not write the file (persistRows
// does, later).
func (s *Store) apply(rows []row) []row {
	var changed []row
	s.mu.Lock()
	for _, in := range rows {
		old, ok := s.idx.get(in.kind, in.issuer, in.value)
		out := s.idx.upsert(in)
		if !ok || out != old {
			changed = append(changed, out)
		}
	}
	s.mu.Unlock()
	for _, r := range changed {
		if r.kind != codeAPIKey {
			s.subs.notify(r.entry())
		}
	}
	return changed
}

// persistRows merges rows into the file in one transaction. Without a
// Path, or after Close, it does nothing.
func (s *Store) persistRows(rows []row) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed || s.db == nil || len(rows) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for _, in := range rows {
			k := encodeKey(in.kind, in.issuer, in.value)
			stored := in
			if old := b.Get(k); old != nil {
				if r, err := decodeRecord(k, old); err == nil {
					stored = merge(r.row(), in)
				}
			}
			if err := b.Put(k, encodeValue(stored)); err != nil {
				return err
			}
		}
		return nil
	})
}

// liveRows returns every entry in memory that expires after now.
func (s *Store) liveRows(now int64) []row {
	var out []row
	for i := range s.idx.shards {
		sh := &s.idx.shards[i]
		sh.mu.RLock()
		sh.each(func(r *record) bool {
			if r.expiresAt > now {
				out = append(out, s.idx.row(sh, r))
			}
			return true
		})
		sh.mu.RUnlock()
	}
	return out
}
