package store

// Matches reports whether e passes every filter of q but Limit and Newest.
// q.MAC must already be canonical (CanonicalMAC), as e.MAC is.
func (q EventQuery) Matches(e Event) bool {
	return e.Seq > q.AfterSeq && (q.BeforeSeq == 0 || e.Seq < q.BeforeSeq) &&
		(q.MAC == "" || e.MAC == q.MAC) && (q.Type == "" || e.Type == q.Type) && !e.Time.Before(q.Since)
}
