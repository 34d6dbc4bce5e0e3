package etcdstore

import "context"

// CachedRevision is s's revision cache (revisionCache.get), for the tests
// that must tell an answer of the watch from a read of etcd.
func CachedRevision(s *Store) (uint64, bool) { return s.revs.get() }

// DeleteUnchanged is the deletion of PruneBindings: each key goes only if
// its ModRevision is still rev.
func DeleteUnchanged(ctx context.Context, s *Store, revs map[string]int64) (int, error) {
	var cs []candidate
	for k, rev := range revs {
		cs = append(cs, candidate{key: k, rev: rev})
	}
	return s.deleteUnchanged(ctx, cs)
}
