package web

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
)

// sparseLog serves a real store's event log as a backend whose sequence
// numbers are not dense, as an etcd backend's (commit revisions) are not: the
// store's event s is event s*gap here, and a BeforeSeq cursor is translated
// back. It counts the queries and checks each is one page's. Only Events is
// implemented.
type sparseLog struct {
	Backend
	t       *testing.T
	db      *boltstore.DB
	queries int
}

const gap = 7

func (b *sparseLog) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	b.queries++
	if !q.Newest || q.Limit != eventsPerPage+1 || q.AfterSeq != 0 {
		b.t.Errorf("query %+v; want the newest %d events below a cursor", q, eventsPerPage+1)
	}
	if q.BeforeSeq > 0 {
		q.BeforeSeq = (q.BeforeSeq + gap - 1) / gap // s*gap < before: s < before/gap, rounded up
	}
	es, err := b.db.Events(ctx, q)
	for i := range es {
		es[i].Seq *= gap
	}
	return es, err
}

// openLog is a store holding n events, appended concurrently so that the
// store batches them, of the types and machines of kind(i); the store keeps
// at most maxEvents, trimming the oldest.
func openLog(t *testing.T, n, maxEvents int, kind func(i int) (typ, mac string)) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "db"), store.Options{MaxEvents: maxEvents})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var g errgroup.Group
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			typ, mac := kind(i)
			_, err := db.AppendEvent(t.Context(), store.Event{Type: typ, MAC: mac, Message: fmt.Sprint("event ", i)})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return db
}

// Each page is one store query, whatever the filter and however rare its
// events, over a log whose oldest events were trimmed and whose sequence
// numbers are sparse; following the cursors lists exactly the filter's
// events, newest first, in full pages but the last.
func TestReadEventsPages(t *testing.T) {
	const mac1, mac2 = "52:54:00:aa:00:01", "52:54:00:aa:00:02"
	db := openLog(t, 1500, 1000, func(i int) (string, string) {
		switch {
		case i == 3 || i == 1400:
			return "wipe", mac2
		case i%3 == 0:
			return "bmc", mac1
		case i%3 == 1:
			return "power", mac2
		}
		return "power", ""
	})
	all, err := db.Events(t.Context(), store.EventQuery{Newest: true})
	if err != nil {
		t.Fatal(err)
	}
	if all[len(all)-1].Seq == 1 {
		t.Fatal("the log was not trimmed")
	}
	b := &sparseLog{t: t, db: db}
	d := &Dashboard{b: b}
	for _, c := range []struct {
		f    eventFilter
		keep func(store.Event) bool
	}{
		{eventFilter{}, func(store.Event) bool { return true }},
		{eventFilter{Type: "bmc"}, func(e store.Event) bool { return e.Type == "bmc" }},
		{eventFilter{Type: "wipe"}, func(e store.Event) bool { return e.Type == "wipe" }},
		{eventFilter{Type: "nosuch"}, func(store.Event) bool { return false }},
		{eventFilter{Machine: strings.ToUpper(mac2)}, func(e store.Event) bool { return e.MAC == mac2 }},
		{eventFilter{Machine: mac2, Type: "power"}, func(e store.Event) bool { return e.MAC == mac2 && e.Type == "power" }},
	} {
		var want []uint64
		for _, e := range all {
			if c.keep(e) {
				want = append(want, e.Seq*gap)
			}
		}
		b.queries = 0
		var got []uint64
		f, pages := c.f, 0
		for {
			if pages++; pages > len(all)/eventsPerPage+2 {
				t.Fatalf("%+v: the pages do not end", c.f)
			}
			page, older, err := d.readEvents(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > eventsPerPage || (older > 0 && len(page) < eventsPerPage) {
				t.Errorf("%+v: page %d has %d events, older %d; only the last page is not full", c.f, pages, len(page), older)
			}
			for _, e := range page {
				got = append(got, e.Seq)
			}
			if older == 0 {
				break
			}
			if older != page[len(page)-1].Seq {
				t.Errorf("%+v: page %d goes on below %d; want its last event, %d", c.f, pages, older, page[len(page)-1].Seq)
			}
			f.Before = older
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v lists %d events; want the store's %d, newest first", c.f, len(got), len(want))
		}
		if wantPages := max(1, (len(want)+eventsPerPage-1)/eventsPerPage); pages != wantPages || b.queries != pages {
			t.Errorf("%+v: %d pages in %d queries; want %d pages, one query each", c.f, pages, b.queries, wantPages)
		}
	}
}

// Why an action cannot be used, in the order a person would need to know.
func TestUnavailable(t *testing.T) {
	ready := store.Machine{State: store.StateReady}
	usable := bmcState{Address: "redfish://10.0.0.1"}
	for _, c := range []struct {
		name, action string
		m            store.Machine
		bmc          bmcState
		wipe         string
		want         string // a prefix; "" = available
	}{
		{"power with a usable BMC", "cycle", ready, usable, "wipe", ""},
		{"power without a BMC", "on", ready, bmcState{None: true}, "wipe", "It has no BMC"},
		{"refresh without a BMC", "status", ready, bmcState{None: true}, "wipe", "It has no BMC"},
		{"power with unreadable credentials", "off", ready, bmcState{Address: "ipmi://10.0.0.1", Err: "env:X unset"}, "wipe", "Its BMC cannot be used: env:X unset."},
		{"reprovision needs no BMC", "reprovision", ready, bmcState{None: true}, "", ""},
		{"reprovision of a discovered machine", "reprovision", store.Machine{State: store.StateDiscovered}, usable, "wipe", "No Machine in the profiles claims it"},
		{"wipe without a wipe profile", "wipe", ready, usable, "", "No wipe profile"},
		{"wipe", "wipe", ready, bmcState{None: true}, "wipe", ""},
	} {
		got := unavailable(c.action, c.m, c.bmc, c.wipe)
		if (c.want == "") != (got == "") || len(got) < len(c.want) || got[:len(c.want)] != c.want {
			t.Errorf("%s: %q; want %q...", c.name, got, c.want)
		}
	}
}

// A reprovision whose cycle another identical request did says so, as a success.
func TestSentBackDoneBy(t *testing.T) {
	f := sentBack("Reprovision", store.Machine{State: store.StateProvisioning}, &boot.PowerResult{Action: "reprovision", DoneBy: "alice/web@10.0.0.5"}, nil)
	if !f.OK || !strings.Contains(f.Text, "did not cycle it again: alice/web@10.0.0.5") {
		t.Fatalf("flash %+v", f)
	}
}
