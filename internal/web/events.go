package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// eventsPerPage is one page of the event log.
const eventsPerPage = 100

// eventFilter is the event log's query: ?machine=&type=&before=.
type eventFilter struct {
	Machine string // as typed: a MAC, UUID or Machine name
	Type    string
	Before  uint64 // only events numbered below; 0: from the newest
	Err     string // why Machine names no machine
}

func parseEventFilter(r *http.Request) eventFilter {
	q := r.URL.Query()
	f := eventFilter{Machine: strings.TrimSpace(q.Get("machine")), Type: strings.TrimSpace(q.Get("type"))}
	f.Before, _ = strconv.ParseUint(q.Get("before"), 10, 64)
	return f
}

func (f eventFilter) query(before uint64) string {
	b := ""
	if before > 0 {
		b = strconv.FormatUint(before, 10)
	}
	return queryOf("machine", f.Machine, "type", f.Type, "before", b)
}

// eventLog is the events page's data.
type eventLog struct {
	Filter eventFilter
	Active bool // a filter is set
	Types  []string
	Rows   []eventRow // newest first
	Pager  pager
	Query  string // the live refresh's, "" on older pages, which do not change
}

// eventRow is an event with the name of its machine, if the inventory has it.
type eventRow struct {
	store.Event
	Name  string
	Known bool // the inventory has the machine: link to its page
}

func (d *Dashboard) eventLog(r *http.Request) (eventLog, error) {
	ctx := r.Context()
	f := parseEventFilter(r)
	l := eventLog{Filter: f, Active: f.Machine != "" || f.Type != "", Types: options(boot.EventTypes(), f.Type)}
	if f.Before == 0 {
		l.Query = f.query(0)
	}
	es, older, err := d.readEvents(ctx, f)
	if errors.Is(err, boot.ErrNotFound) || errors.Is(err, boot.ErrAmbiguous) {
		// A filter naming no machine is the form's problem, not the page's.
		l.Filter.Err = err.Error()
		return l, nil
	}
	if err != nil {
		return l, err
	}
	if f.Before > 0 {
		l.Pager.Prev, l.Pager.PrevLabel = href("/ui/events", f.query(0)), "Newest events"
	}
	if older > 0 {
		l.Pager.Next, l.Pager.NextLabel = href("/ui/events", f.query(older)), "Older events"
	}
	names := map[string]eventRow{} // by MAC: each machine looked up once
	for _, e := range es {
		row, ok := names[e.MAC]
		if !ok && e.MAC != "" {
			m, err := d.b.Machine(ctx, e.MAC)
			switch {
			case err == nil:
				row.Name, row.Known = m.Name, true
			case !errors.Is(err, boot.ErrNotFound): // a pruned machine is no error
				return l, err
			}
			names[e.MAC] = row
		}
		row.Event = e
		l.Rows = append(l.Rows, row)
	}
	return l, nil
}

// readEvents reads one page of the log for f: up to eventsPerPage events
// numbered below f.Before (0: from the newest), newest first, and the cursor
// of the next older page (0: none). It is one store query: the store filters
// by machine (the core resolves a name or UUID to the MAC) and type, and
// pages by BeforeSeq, so sequence numbers need not be dense. The one event
// more than a page says whether an older page exists; that page begins just
// below the last event shown.
func (d *Dashboard) readEvents(ctx context.Context, f eventFilter) (page []store.Event, older uint64, err error) {
	es, err := d.b.Events(ctx, store.EventQuery{MAC: f.Machine, Type: f.Type, BeforeSeq: f.Before, Newest: true, Limit: eventsPerPage + 1})
	if err != nil {
		return nil, 0, err
	}
	if len(es) > eventsPerPage {
		es = es[:eventsPerPage]
		older = es[len(es)-1].Seq
	}
	return es, older, nil
}

// eventsPage serves /ui/events: the event log, newest first.
func (d *Dashboard) eventsPage(w http.ResponseWriter, r *http.Request) {
	l, err := d.eventLog(r)
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	d.renderPage(w, r, http.StatusOK, "events.html", "Events", l)
}

// eventRows serves the log's table alone, for the newest page's live refresh.
func (d *Dashboard) eventRows(w http.ResponseWriter, r *http.Request) {
	d.fragment(w, r, "events-table", func() (any, error) { return d.eventLog(r) })
}
