package web

import (
	"context"
	"slices"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
)

// logBackend serves an event log from memory with the store's query rules
// (dense sequence numbers from first, AfterSeq a lower bound, Newest from the
// newest) and counts the events it hands out. Only Events is implemented.
type logBackend struct {
	Backend
	log  []store.Event // oldest first
	read int
}

func newLog(first, last uint64, typeOf func(seq uint64) string) *logBackend {
	b := &logBackend{}
	for s := first; s <= last; s++ {
		b.log = append(b.log, store.Event{Seq: s, Type: typeOf(s)})
	}
	return b
}

func (b *logBackend) Events(_ context.Context, q store.EventQuery) ([]store.Event, error) {
	es := slices.Clone(b.log)
	if q.Newest {
		slices.Reverse(es)
	}
	var out []store.Event
	for _, e := range es {
		if e.Seq <= q.AfterSeq || (q.MAC != "" && e.MAC != q.MAC) {
			continue
		}
		if out = append(out, e); len(out) == q.Limit {
			break
		}
	}
	b.read += len(out)
	return out, nil
}

// A page of a filter that few events pass reads a bounded part of the log,
// says it stopped, and the next page goes on from there to the log's start,
// which may have been trimmed.
func TestReadEventsBoundsItsReads(t *testing.T) {
	const first, last = 1001, 30000 // the oldest thousand trimmed
	rare := map[uint64]bool{1002: true, 29990: true}
	b := newLog(first, last, func(s uint64) string {
		if rare[s] {
			return "wipe"
		}
		return "power"
	})
	d := &Dashboard{b: b}
	f := eventFilter{Type: "wipe"}
	var got []uint64
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("the pages do not end")
		}
		b.read = 0
		page, older, partial, err := d.readEvents(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if b.read > maxEventScan+eventWindow {
			t.Errorf("page %d read %d events; want at most %d", pages, b.read, maxEventScan+eventWindow)
		}
		for _, e := range page {
			got = append(got, e.Seq)
		}
		if partial != (older > 0) {
			t.Errorf("page %d: partial %v with older %d; only a stopped page goes on here", pages, partial, older)
		}
		if older == 0 {
			break
		}
		f.Before = older
	}
	if !slices.Equal(got, []uint64{29990, 1002}) {
		t.Errorf("pages listed %v; want [29990 1002]", got)
	}
}

// A full page of a common filter ends on its last event: the next begins
// just below it, whatever window that event was read in.
func TestReadEventsPagesExactly(t *testing.T) {
	b := newLog(1, 2500, func(s uint64) string { return []string{"power", "bmc"}[s%2] })
	d := &Dashboard{b: b}
	var got []uint64
	f := eventFilter{Type: "bmc"}
	for {
		page, older, _, err := d.readEvents(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > eventsPerPage {
			t.Fatalf("a page of %d events", len(page))
		}
		for _, e := range page {
			got = append(got, e.Seq)
		}
		if older == 0 {
			break
		}
		f.Before = older
	}
	var want []uint64
	for s := uint64(2500); s >= 1; s-- {
		if s%2 == 1 {
			want = append(want, s)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %d events; want the %d odd ones, newest first", len(got), len(want))
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
