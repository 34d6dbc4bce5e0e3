package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/store"
)

// EventList is the answer to GET /events.
type EventList struct {
	Events []store.Event `json:"events"`
}

// maxEvents caps one page; clients page on with ?after=<last seq> (oldest
// first) or ?order=newest&before=<last seq> (newest first).
const maxEvents = 1000

// events serves GET /events?machine=&type=&since=&after=&before=&order=&limit=.
// since is an RFC 3339 time or a duration back from now ("1h"); order is
// oldest (the default, so that older clients page on as they did) or newest.
func (a *api) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	eq := store.EventQuery{MAC: q.Get("machine"), Type: q.Get("type"), Limit: maxEvents}
	switch v := q.Get("order"); v {
	case "", "oldest":
	case "newest":
		eq.Newest = true
	default:
		a.fail(w, r, fmt.Errorf("%w: order %q: want oldest or newest", httperr.ErrBadRequest, v))
		return
	}
	if v := q.Get("since"); v != "" {
		since, err := ParseSince(v, time.Now())
		if err != nil {
			a.fail(w, r, fmt.Errorf("%w: %v", httperr.ErrBadRequest, err))
			return
		}
		eq.Since = since
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			a.fail(w, r, fmt.Errorf("%w: after %q: want an event seq", httperr.ErrBadRequest, v))
			return
		}
		eq.AfterSeq = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			a.fail(w, r, fmt.Errorf("%w: before %q: want an event seq, 1 or more", httperr.ErrBadRequest, v))
			return
		}
		eq.BeforeSeq = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEvents {
			a.fail(w, r, fmt.Errorf("%w: limit %q: want 1 to %d", httperr.ErrBadRequest, v, maxEvents))
			return
		}
		eq.Limit = n
	}
	es, err := a.b.Events(r.Context(), eq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if es == nil {
		es = []store.Event{}
	}
	writeJSON(w, http.StatusOK, EventList{Events: es})
}

// ParseSince reads a ?since= value (the CLI's --since too): an RFC 3339 time,
// or a duration back from now such as "1h".
func ParseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time or a duration such as 1h", v)
}
