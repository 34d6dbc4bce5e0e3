package storetest

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

var eventsTests = []test{
	{"Seq increases and Time is the store's clock", func(t *testing.T, s suite) {
		st, c := s.store(t)
		var last uint64
		for i := range 5 {
			now := c.Advance(time.Minute)
			e := mustAppend(t, st, store.Event{Type: "t", Time: t0.Add(-time.Hour), Seq: 99})
			if i > 0 && e.Seq <= last {
				t.Errorf("append %d: Seq %d after %d", i, e.Seq, last)
			}
			if e.Seq == 0 {
				t.Errorf("append %d: Seq 0", i)
			}
			if !e.Time.Equal(now) {
				t.Errorf("append %d: Time %v, want the clock's %v", i, e.Time, now)
			}
			last = e.Seq
		}
	}},
	{"stored event reads back whole", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		fields := map[string]string{"k": "v"}
		e := mustAppend(t, st, store.Event{MAC: "52-54-00-AB-CD-01", Type: "t", Message: "m", Actor: "a", Fields: fields})
		fields["k"] = "changed"
		es := mustEvents(t, st, store.EventQuery{})
		if len(es) != 1 {
			t.Fatalf("%d events, want 1", len(es))
		}
		got := es[0]
		if got.Seq != e.Seq || !got.Time.Equal(e.Time) || got.MAC != mac1 || got.Type != "t" || got.Message != "m" || got.Actor != "a" || got.Fields["k"] != "v" {
			t.Errorf("Events = %+v, appended %+v", got, e)
		}
		got.Fields["k"] = "changed too"
		if es := mustEvents(t, st, store.EventQuery{}); es[0].Fields["k"] != "v" {
			t.Errorf("stored fields = %v", es[0].Fields)
		}
	}},
	{"bad MAC is ErrInvalid", func(t *testing.T, s suite) {
		st, _ := s.store(t)
		_, err := st.AppendEvent(ctx, store.Event{MAC: "nope", Type: "t"})
		wantErr(t, "AppendEvent", err, store.ErrInvalid)
		_, err = st.Events(ctx, store.EventQuery{MAC: "nope"})
		wantErr(t, "Events", err, store.ErrInvalid)
		if es := mustEvents(t, st, store.EventQuery{}); len(es) != 0 {
			t.Errorf("refused event stored: %+v", es)
		}
	}},
	{"query fields filter alone and combined", func(t *testing.T, s suite) {
		st, c := s.store(t)
		// seq: 1 mac1 t0 t, 2 mac2 t0+1m u, 3 mac1 t0+2m t, 4 none t0+3m t, 5 mac1 t0+4m u
		var seq []uint64
		for i, mac := range []string{mac1, mac2, mac1, "", mac1} {
			seq = append(seq, mustAppend(t, st, store.Event{MAC: mac, Type: []string{"t", "u"}[i%3%2]}).Seq)
			c.Advance(time.Minute)
		}
		// want lists positions 1..5 in the log, mapped to the store's Seqs.
		at := func(pos ...int) []uint64 {
			out := []uint64{}
			for _, p := range pos {
				out = append(out, seq[p-1])
			}
			return out
		}
		for _, tc := range []struct {
			name string
			q    store.EventQuery
			want []uint64
		}{
			{"all, oldest first", store.EventQuery{}, at(1, 2, 3, 4, 5)},
			{"MAC", store.EventQuery{MAC: mac1}, at(1, 3, 5)},
			{"MAC in another spelling", store.EventQuery{MAC: "52-54-00-AB-CD-02"}, at(2)},
			{"unknown MAC", store.EventQuery{MAC: mac3}, at()},
			{"Since is inclusive", store.EventQuery{Since: t0.Add(2 * time.Minute)}, at(3, 4, 5)},
			{"Since after all", store.EventQuery{Since: t0.Add(time.Hour)}, at()},
			{"AfterSeq", store.EventQuery{AfterSeq: seq[2]}, at(4, 5)},
			{"AfterSeq max", store.EventQuery{AfterSeq: math.MaxUint64}, at()},
			{"BeforeSeq", store.EventQuery{BeforeSeq: seq[2]}, at(1, 2)},
			{"BeforeSeq past the end", store.EventQuery{BeforeSeq: seq[4] + 100}, at(1, 2, 3, 4, 5)},
			{"BeforeSeq the first", store.EventQuery{BeforeSeq: seq[0]}, at()},
			{"Type", store.EventQuery{Type: "u"}, at(2, 5)},
			{"unknown Type", store.EventQuery{Type: "v"}, at()},
			{"Limit keeps the oldest", store.EventQuery{Limit: 2}, at(1, 2)},
			{"Limit above the count", store.EventQuery{Limit: 10}, at(1, 2, 3, 4, 5)},
			{"Newest", store.EventQuery{Newest: true}, at(5, 4, 3, 2, 1)},
			{"Newest with Limit keeps the latest", store.EventQuery{Newest: true, Limit: 2}, at(5, 4)},
			{"MAC and Since", store.EventQuery{MAC: mac1, Since: t0.Add(time.Minute)}, at(3, 5)},
			{"MAC, Newest and Limit", store.EventQuery{MAC: mac1, Newest: true, Limit: 2}, at(5, 3)},
			{"Newest and AfterSeq", store.EventQuery{AfterSeq: seq[2], Newest: true}, at(5, 4)},
			{"Newest and BeforeSeq: the next older page", store.EventQuery{BeforeSeq: seq[3], Newest: true, Limit: 2}, at(3, 2)},
			{"Newest and BeforeSeq past the end", store.EventQuery{BeforeSeq: seq[4] + 100, Newest: true}, at(5, 4, 3, 2, 1)},
			{"Newest and BeforeSeq the first", store.EventQuery{BeforeSeq: seq[0], Newest: true}, at()},
			{"AfterSeq and BeforeSeq", store.EventQuery{AfterSeq: seq[0], BeforeSeq: seq[4]}, at(2, 3, 4)},
			{"AfterSeq, BeforeSeq and Newest", store.EventQuery{AfterSeq: seq[0], BeforeSeq: seq[4], Newest: true}, at(4, 3, 2)},
			{"Type and MAC, Newest", store.EventQuery{Type: "t", MAC: mac1, Newest: true}, at(3, 1)},
			{"Type and Since, Limit", store.EventQuery{Type: "t", Since: t0.Add(time.Minute), Limit: 1}, at(3)},
			{"every field", store.EventQuery{MAC: mac1, Since: t0, AfterSeq: seq[0], BeforeSeq: seq[4] + 1, Type: "u", Limit: 5, Newest: true}, at(5)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := seqs(mustEvents(t, st, tc.q)); !slices.Equal(got, tc.want) {
					t.Errorf("Events(%+v) = %v, want %v", tc.q, got, tc.want)
				}
			})
		}
	}},
	{"MaxEvents trims the oldest", func(t *testing.T, s suite) {
		const max = 5
		st, _ := s.storeOpts(t, store.Options{MaxEvents: max})
		var all []uint64
		for range 3*max + 2 {
			all = append(all, mustAppend(t, st, store.Event{Type: "t"}).Seq)
		}
		got := seqs(mustEvents(t, st, store.EventQuery{}))
		if want := all[len(all)-max:]; !slices.Equal(got, want) {
			t.Errorf("kept %v, want the newest %d: %v", got, max, want)
		}
	}},
	{"MaxEvents counts events of every machine", func(t *testing.T, s suite) {
		const max = 4
		st, _ := s.storeOpts(t, store.Options{MaxEvents: max})
		for i := range 10 {
			mustAppend(t, st, store.Event{MAC: []string{mac1, mac2}[i%2], Type: "t"})
		}
		if got := mustEvents(t, st, store.EventQuery{}); len(got) != max {
			t.Errorf("kept %d events, want %d", len(got), max)
		}
	}},
	{"MaxEventAge trims old events within 64 appends", func(t *testing.T, s suite) {
		st, c := s.storeOpts(t, store.Options{MaxEventAge: time.Hour})
		old := mustAppend(t, st, store.Event{Type: "old"})
		c.Advance(2 * time.Hour)
		for range 64 {
			mustAppend(t, st, store.Event{Type: "new"})
		}
		es := mustEvents(t, st, store.EventQuery{})
		if len(es) == 0 || es[0].Seq == old.Seq {
			t.Errorf("event older than MaxEventAge still kept: %v", seqs(es))
		}
		if len(es) != 64 {
			t.Errorf("kept %d events, want the 64 new ones", len(es))
		}
	}},
	{"events of a Change count against MaxEvents", func(t *testing.T, s suite) {
		const max = 3
		st, _ := s.storeOpts(t, store.Options{MaxEvents: max})
		_, _, err := st.Seen(ctx, store.Machine{MAC: mac1}, func(*store.Machine, *store.Provisioning) ([]store.Event, error) {
			return []store.Event{{Type: "a"}, {Type: "b"}, {Type: "c"}, {Type: "d"}, {Type: "e"}}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		es := mustEvents(t, st, store.EventQuery{})
		var types []string
		for _, e := range es {
			types = append(types, e.Type)
		}
		if want := []string{"c", "d", "e"}; !slices.Equal(types, want) {
			t.Errorf("kept %v, want %v", types, want)
		}
	}},
}
