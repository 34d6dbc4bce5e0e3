package api

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

func seqs(es []store.Event) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// order=newest, before= and type= select the same events as filtering the
// whole log, oldest first, would; the defaults stay oldest first.
func TestEventsOrderBeforeType(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.boot(t, boot.Request{MAC: fmt.Sprintf("52:54:00:00:01:%02x", i)})
	}
	f.boot(t, boot.Request{MAC: "52:54:00:00:00:01"})
	all := f.events(t)
	if len(all) < 6 {
		t.Fatalf("only %d events to test with: %v", len(all), seqs(all))
	}
	byType := map[string][]store.Event{}
	for _, e := range all {
		byType[e.Type] = append(byType[e.Type], e)
	}
	typ := ""
	for _, k := range slices.Sorted(maps.Keys(byType)) {
		if es := byType[k]; len(es) >= 2 && len(es) < len(all) {
			typ = k
		}
	}
	t.Logf("%d events; type %s: %v", len(all), typ, seqs(byType[typ]))
	if typ == "" {
		t.Fatalf("no event type that only some events have: %v", byType)
	}
	rev := func(es []store.Event) []uint64 { s := seqs(es); slices.Reverse(s); return s }
	mid := all[len(all)/2].Seq
	var below []store.Event
	for _, e := range all {
		if e.Seq < mid {
			below = append(below, e)
		}
	}
	var n1 []store.Event // node1's events of typ
	for _, e := range byType[typ] {
		if e.MAC == "52:54:00:00:00:01" {
			n1 = append(n1, e)
		}
	}
	for _, tc := range []struct {
		query string
		want  []uint64
	}{
		{"", seqs(all)},
		{"?order=oldest", seqs(all)},
		{"?order=newest", rev(all)},
		{"?order=newest&limit=2", rev(all)[:2]},
		{fmt.Sprintf("?order=newest&before=%d&limit=2", all[len(all)-2].Seq), rev(all[:len(all)-2])[:2]},
		{fmt.Sprintf("?before=%d", mid), seqs(below)},
		{fmt.Sprintf("?before=%d&limit=1", mid), seqs(below)[:1]},
		{fmt.Sprintf("?order=newest&before=%d", mid), rev(below)},
		{fmt.Sprintf("?after=%d&before=%d", all[0].Seq, mid), seqs(below)[1:]},
		{fmt.Sprintf("?before=%d", all[0].Seq), []uint64{}},
		{"?before=18446744073709551615", seqs(all)},
		{"?type=" + typ, seqs(byType[typ])},
		{"?type=" + typ + "&order=newest&limit=1", rev(byType[typ])[:1]},
		{"?type=no-such-type", []uint64{}},
		{"?machine=node1&type=" + typ, seqs(n1)},
	} {
		body := f.mustCall(t, "GET", "/events"+tc.query, "", 200)
		if got := seqs(decode[EventList](t, body).Events); !slices.Equal(got, tc.want) {
			t.Errorf("GET /events%s = seqs %v, want %v", tc.query, got, tc.want)
		}
	}

	// Paging back with before=<last seq> walks the whole log, newest first.
	var got []uint64
	q := "/events?order=newest&limit=2"
	for range len(all) + 1 {
		es := decode[EventList](t, f.mustCall(t, "GET", q, "", 200)).Events
		got = append(got, seqs(es)...)
		if len(es) < 2 {
			break
		}
		q = fmt.Sprintf("/events?order=newest&limit=2&before=%d", es[len(es)-1].Seq)
	}
	if want := rev(all); !slices.Equal(got, want) {
		t.Errorf("paging back = %v, want %v", got, want)
	}
}
