package web_test

import (
	"fmt"
	"html"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/provisiond/provisiond/internal/store"
)

var (
	seqRE  = regexp.MustCompile(`<tr data-seq="(\d+)"`)
	nextRE = regexp.MustCompile(`<a href="([^"]+)" rel="next">Older events</a>`)
)

// walkEvents follows an events page's "Older events" links to the end and
// returns the sequence numbers it listed, in order, and how many pages.
func walkEvents(t *testing.T, o *operator, path string) ([]uint64, int) {
	t.Helper()
	var seqs []uint64
	pages := 0
	for path != "" {
		res, page := o.do("GET", path, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, res.Status)
		}
		pages++
		for _, m := range seqRE.FindAllStringSubmatch(page, -1) {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			seqs = append(seqs, n)
		}
		if n := len(seqRE.FindAllString(page, -1)); n > 100 {
			t.Fatalf("GET %s lists %d events; a page has at most 100", path, n)
		}
		if pages > 1 && !strings.Contains(page, `rel="prev">Newest events</a>`) {
			t.Errorf("GET %s: an older page has no way back to the newest", path)
		}
		path = ""
		if m := nextRE.FindStringSubmatch(page); m != nil {
			path = html.UnescapeString(m[1])
		}
	}
	return seqs, pages
}

// The event log, newest first, filtered by machine and type, pages through
// all of it: each filter lists exactly the store's events, in order.
func TestEventsPage(t *testing.T) {
	f := startFleet(t, "")
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	f.install(t, node1MAC)
	// Two dozen pages, written concurrently so that the store batches them.
	var g errgroup.Group
	g.SetLimit(64)
	for i := range 2345 {
		g.Go(func() error {
			e := store.Event{Type: "bmc", MAC: []string{node1MAC, strayMAC, ""}[i%3], Message: fmt.Sprint("seeded ", i), Actor: "test"}
			if i%10 == 0 {
				e.Type = "power"
			}
			if i == 7 {
				e.Message = "<script>alert(2)</script>"
			}
			_, err := f.db.AppendEvent(t.Context(), e)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	all, err := f.db.Events(t.Context(), store.EventQuery{Newest: true})
	if err != nil {
		t.Fatal(err)
	}
	want := func(keep func(store.Event) bool) []uint64 {
		var seqs []uint64
		for _, e := range all {
			if keep(e) {
				seqs = append(seqs, e.Seq)
			}
		}
		return seqs
	}
	o := newOperator(t, f.url)
	o.signIn()
	for _, c := range []struct {
		query string
		keep  func(store.Event) bool
	}{
		{"", func(store.Event) bool { return true }},
		{"?type=power", func(e store.Event) bool { return e.Type == "power" }},
		{"?machine=node1", func(e store.Event) bool { return e.MAC == node1MAC }},
		{"?machine=" + strayMAC + "&type=power", func(e store.Event) bool { return e.MAC == strayMAC && e.Type == "power" }},
		{"?type=wipe", func(store.Event) bool { return false }},
	} {
		got, pages := walkEvents(t, o, "/ui/events"+c.query)
		w := want(c.keep)
		if !slices.Equal(got, w) {
			t.Errorf("%q lists %d events over %d pages; want the store's %d, newest first", c.query, len(got), pages, len(w))
		}
		if wantPages := max(1, (len(w)+99)/100); pages != wantPages {
			t.Errorf("%q: %d pages; want %d", c.query, pages, wantPages)
		}
	}

	_, page := o.do("GET", "/ui/events", nil)
	for _, want := range []string{`<a href="/ui/machines/` + node1MAC + `">node1</a>`, `data-live="/ui/events/rows`, `aria-current="page">Events</a>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the events page lacks %q", want)
		}
	}
	hostile := all[slices.IndexFunc(all, func(e store.Event) bool { return strings.HasPrefix(e.Message, "<script>") })]
	_, page = o.do("GET", fmt.Sprintf("/ui/events?before=%d", hostile.Seq+1), nil)
	if strings.Contains(page, "<script>alert(2)") || !strings.Contains(page, "&lt;script&gt;alert(2)&lt;/script&gt;") {
		t.Error("an event's markup reached the page, or it is not shown")
	}
	if _, page := o.do("GET", "/ui/events?machine=nosuch", nil); !strings.Contains(page, `machine &#34;nosuch&#34;: no such machine`) {
		t.Errorf("a filter naming no machine does not say so:\n%s", page)
	}
	if _, page := o.do("GET", "/ui/events?before=100", nil); strings.Contains(page, "data-live") {
		t.Error("an older page refreshes itself: its events never change")
	}
	// A cursor need not be an event's: the page lists the events below it.
	for _, before := range []uint64{all[0].Seq + 1000, all[150].Seq + 1} {
		_, page := o.do("GET", fmt.Sprintf("/ui/events?before=%d", before), nil)
		var got []uint64
		for _, m := range seqRE.FindAllStringSubmatch(page, -1) {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			got = append(got, n)
		}
		if w := want(func(e store.Event) bool { return e.Seq < before }); !slices.Equal(got, w[:min(100, len(w))]) {
			t.Errorf("?before=%d lists %d events from %v; want the 100 just below it", before, len(got), got[:min(1, len(got))])
		}
	}

	// The newest page refreshes: a 304 while nothing happens, new rows after.
	res, _ := o.do("GET", "/ui/events/rows?type=provisioning", nil)
	etag := res.Header.Get("ETag")
	if res, _ := o.do("GET", "/ui/events/rows?type=provisioning", nil, "If-None-Match", etag); etag == "" || res.StatusCode != http.StatusNotModified {
		t.Fatalf("unchanged event rows: %s; want 304", res.Status)
	}
	f.get(t, "/ipxe?mac=52:54:00:00:00:42&arch=x86_64")
	if res, body := o.do("GET", "/ui/events/rows?type=provisioning", nil, "If-None-Match", etag); res.StatusCode != http.StatusOK || !strings.Contains(body, "52:54:00:00:00:42") {
		t.Fatalf("event rows after a new machine booted: %s", res.Status)
	}
}
