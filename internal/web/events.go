package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

const (
	// eventsPerPage is one page of the event log.
	eventsPerPage = 100
	// eventWindow is how many events one read of the whole log takes; a
	// type filter is applied here, so a page may take several.
	eventWindow = 1000
	// maxEventScan bounds the events one page reads: a rare type over a full
	// log (100,000 events by default) then costs each request a bounded
	// read, and the page says how far it looked and offers the older ones.
	maxEventScan = 20 * eventWindow
)

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
	Filter  eventFilter
	Active  bool // a filter is set
	Types   []string
	Rows    []eventRow // newest first
	Partial bool       // the page stopped at maxEventScan before it was full
	Scanned int        // maxEventScan, for saying so
	Pager   pager
	Query   string // the live refresh's, "" on older pages, which do not change
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
	l := eventLog{Filter: f, Active: f.Machine != "" || f.Type != "", Types: options(boot.EventTypes(), f.Type), Scanned: maxEventScan}
	if f.Before == 0 {
		l.Query = f.query(0)
	}
	es, older, partial, err := d.readEvents(ctx, f)
	if errors.Is(err, boot.ErrNotFound) || errors.Is(err, boot.ErrAmbiguous) {
		// A filter naming no machine is the form's problem, not the page's.
		l.Filter.Err = err.Error()
		return l, nil
	}
	if err != nil {
		return l, err
	}
	l.Partial = partial
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
// numbered below f.Before, newest first; the cursor of the next older page
// (0: none); and whether the page stopped at maxEventScan before it filled.
func (d *Dashboard) readEvents(ctx context.Context, f eventFilter) (page []store.Event, older uint64, partial bool, err error) {
	read := d.olderEvents
	if f.Machine != "" {
		// The store skips other machines' events without decoding them, so
		// all of one machine's at once is a cheap read (its own page reads
		// them so); the core resolves a name or UUID to the MAC.
		read = func(ctx context.Context, top uint64) ([]store.Event, bool, error) {
			es, err := d.b.Events(ctx, store.EventQuery{MAC: f.Machine, Newest: true})
			return slices.DeleteFunc(es, func(e store.Event) bool { return top > 0 && e.Seq >= top }), true, err
		}
	}
	top, scanned := f.Before, 0
	for {
		win, done, err := read(ctx, top)
		if err != nil {
			return nil, 0, false, err
		}
		for _, e := range win {
			if f.Type != "" && e.Type != f.Type {
				continue
			}
			if len(page) == eventsPerPage {
				return page, page[len(page)-1].Seq, false, nil // one more exists: the older page starts below
			}
			page = append(page, e)
		}
		if done || len(win) == 0 {
			return page, 0, false, nil
		}
		top = win[len(win)-1].Seq
		if scanned += len(win); scanned >= maxEventScan {
			return page, top, true, nil
		}
	}
}

// olderEvents reads up to eventWindow events of the whole log numbered
// below top (0: the newest), newest first, and whether the log's oldest
// event is among them.
//
// The store pages forward only: EventQuery's AfterSeq is a lower bound, and
// Newest starts from the newest event whatever the bound. But sequence
// numbers are dense (the log is trimmed at its old end only), so the
// eventWindow events after top-1-eventWindow are those just below top; any
// read past top is dropped.
func (d *Dashboard) olderEvents(ctx context.Context, top uint64) ([]store.Event, bool, error) {
	if top == 0 {
		es, err := d.b.Events(ctx, store.EventQuery{Newest: true, Limit: eventWindow})
		return es, len(es) < eventWindow, err
	}
	lo := top - 1 - min(top-1, eventWindow)
	es, err := d.b.Events(ctx, store.EventQuery{AfterSeq: lo, Limit: eventWindow})
	if err != nil {
		return nil, false, err
	}
	es = slices.DeleteFunc(es, func(e store.Event) bool { return e.Seq >= top })
	slices.Reverse(es)
	// Nothing is older when the window began at the log's start, or the log
	// itself begins after the window's start (trimmed: nothing below it).
	done := lo == 0 || len(es) == 0 || es[len(es)-1].Seq > lo+1
	return es, done, nil
}

// eventsPage serves /ui/events: the event log, newest first.
func (d *Dashboard) eventsPage(w http.ResponseWriter, r *http.Request) {
	l, err := d.eventLog(r)
	if err != nil {
		d.failPage(w, r, statusOf(err), err)
		return
	}
	d.renderPage(w, r, http.StatusOK, "events.html", "Events", l)
}

// eventRows serves the log's table alone, for the newest page's live refresh.
func (d *Dashboard) eventRows(w http.ResponseWriter, r *http.Request) {
	d.fragment(w, r, "events-table", func() (any, error) { return d.eventLog(r) })
}
