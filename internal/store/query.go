package store

import (
	"fmt"
	"math"
)

// Canonical returns q with its MAC, if any, in canonical form, or an error
// wrapping ErrInvalid. Backends call it before reading, so that Matches
// compares canonical MACs.
func (q EventQuery) Canonical() (EventQuery, error) {
	if q.MAC != "" {
		mac, err := CanonicalMAC(q.MAC)
		if err != nil {
			return EventQuery{}, fmt.Errorf("events: %w", err)
		}
		q.MAC = mac
	}
	return q, nil
}

// Empty reports whether no event can match q whatever the log holds:
// nothing comes after the greatest Seq, and a backend computing AfterSeq+1
// would wrap to the start of the log.
func (q EventQuery) Empty() bool { return q.AfterSeq == math.MaxUint64 }

// Matches reports whether e passes every filter of q but Limit and Newest.
// q.MAC must already be canonical (Canonical), as e.MAC is.
func (q EventQuery) Matches(e Event) bool {
	return e.Seq > q.AfterSeq && (q.BeforeSeq == 0 || e.Seq < q.BeforeSeq) &&
		(q.MAC == "" || e.MAC == q.MAC) && (q.Type == "" || e.Type == q.Type) && !e.Time.Before(q.Since)
}

// TrimCount is how many of the oldest events a log of n events drops to
// keep within maxEvents: over the cap, a further 1% so that the following
// appends have nothing to trim and each append stays O(1) amortized.
func TrimCount(n uint64, maxEvents int) uint64 {
	if n <= uint64(maxEvents) {
		return 0
	}
	return n - uint64(maxEvents) + uint64(maxEvents/100)
}
