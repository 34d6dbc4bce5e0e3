package storetest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

var backupTests = []test{
	{"RoundTrip", testBackupRoundTrip},
	{"RoundTripThroughFile", testBackupRoundTripFile},
	{"RefusesNonEmpty", testRestoreRefusesNonEmpty},
	{"RefusesBadRecord", testRestoreRefusesBadRecord},
	{"RecordsError", testRestoreRecordsError},
	{"KeepsSecretsAndBindings", testRestoreKeepsSecretsAndBindings},
	{"Consistent", testDumpConsistent},
}

// Populate fills st with one of everything a backup carries: machines with
// labels and a UUID (two NICs sharing one), a provisioning session with a
// token hash, events with and without a machine, sealed secrets with every
// byte value, bindings of both kinds, and leases (one declined) whose
// addresses sort differently as text. Exported for the cross-backend tests.
func Populate(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	for _, m := range []store.Machine{
		{MAC: mac1, UUID: uuid1, Arch: "efi-x86_64", LastIP: "10.0.0.11", Labels: map[string]string{"rack": "r1", "role": "worker"}},
		{MAC: mac2, UUID: uuid1, Name: "node2", Profile: "flatcar", State: store.StateReady},
		{MAC: mac3, UUID: uuid2},
	} {
		if _, _, err := st.Seen(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := st.Update(ctx, mac2, func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		m.State = store.StateProvisioning
		p.TokenHash, p.Profile, p.IssuedAt, p.ConfigFetches = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "flatcar", t0, 2
		return []store.Event{{Type: "reprovision", Actor: "alice", Fields: map[string]string{"reason": "test"}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendEvent(ctx, store.Event{Type: "reload", Message: "profiles loaded"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendEvent(ctx, store.Event{MAC: mac1, Type: "boot", Message: "ipxe"}); err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 256)
	for i := range blob {
		blob[i] = byte(i)
	}
	if err := st.PutSecret(ctx, mac2, "bmc", blob); err != nil {
		t.Fatal(err)
	}
	if err := st.PutSecret(ctx, mac1, "bmc/password", []byte("sealed\n\x00")); err != nil {
		t.Fatal(err)
	}
	if err := st.Bind(ctx, store.Binding{MAC: mac1, UUID: uuid1, IP: "10.0.0.11"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Bind(ctx, store.Binding{MAC: mac3, IP: "fd00::3"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range populatedLeases {
		if _, err := st.ClaimLease(ctx, store.Lease{IP: l.ip, MAC: l.mac, Network: "lab", Expires: t0.Add(time.Hour)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeclineLease(ctx, "10.0.0.12", mac3, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// populatedLeases are the leases Populate claims; it declines the last.
var populatedLeases = []struct{ ip, mac string }{{"10.0.0.11", mac1}, {"10.0.0.9", mac2}, {"10.0.0.12", mac3}}

// dump returns every record of st.
func dump(t *testing.T, st store.Store) []store.Record {
	t.Helper()
	var rs []store.Record
	if err := st.Dump(ctx, func(r store.Record) error {
		rs = append(rs, r)
		return nil
	}); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	return rs
}

func records(rs []store.Record) func(func(store.Record, error) bool) {
	return func(yield func(store.Record, error) bool) {
		for _, r := range rs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// CheckSame fails t unless got reads as want does, through the Store
// methods: machines (by MAC and UUID), provisioning, events, secrets,
// bindings; and dumps the same records apart from the meta ones. Exported
// for the cross-backend tests.
func CheckSame(t *testing.T, got, want store.Store) {
	t.Helper()
	wm, err := want.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := got.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(macs(gm), macs(wm)) {
		t.Fatalf("machines %v, want %v", macs(gm), macs(wm))
	}
	for i := range wm {
		checkMachine(t, "machine "+wm[i].MAC, gm[i], wm[i])
		wp, err := want.Provisioning(ctx, wm[i].MAC)
		if err != nil {
			t.Fatal(err)
		}
		gp, err := got.Provisioning(ctx, wm[i].MAC)
		if err != nil || gp != wp {
			t.Errorf("provisioning of %s = %+v, %v; want %+v", wm[i].MAC, gp, err, wp)
		}
	}
	for _, u := range []string{uuid1, uuid2} {
		w, werr := want.Machine(ctx, u)
		g, gerr := got.Machine(ctx, u)
		if (werr == nil) != (gerr == nil) || w.MAC != g.MAC {
			t.Errorf("machine by uuid %s = %s, %v; want %s, %v", u, g.MAC, gerr, w.MAC, werr)
		}
	}
	we, ge := mustEvents(t, want, store.EventQuery{}), mustEvents(t, got, store.EventQuery{})
	if !slices.EqualFunc(ge, we, func(a, b store.Event) bool {
		return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.MAC == b.MAC && a.Type == b.Type &&
			a.Message == b.Message && a.Actor == b.Actor && maps.Equal(a.Fields, b.Fields)
	}) {
		t.Errorf("events %+v, want %+v", ge, we)
	}
	// The fixtures of Populate; a store without them must lack them too.
	found := func(err error) bool { return !errors.Is(err, store.ErrNotFound) }
	for _, s := range []struct{ mac, name string }{{mac2, "bmc"}, {mac1, "bmc/password"}} {
		w, werr := want.Secret(ctx, s.mac, s.name)
		g, gerr := got.Secret(ctx, s.mac, s.name)
		if found(gerr) != found(werr) || !bytes.Equal(g, w) {
			t.Errorf("secret %s %s = %q, %v; want %q, %v", s.mac, s.name, g, gerr, w, werr)
		}
	}
	for _, ip := range []string{"10.0.0.11", "fd00::3"} {
		w, werr := want.IPBinding(ctx, ip)
		g, gerr := got.IPBinding(ctx, ip)
		if found(gerr) != found(werr) || g.MAC != w.MAC || !g.Seen.Equal(w.Seen) {
			t.Errorf("binding of %s = %+v, %v; want %+v, %v", ip, g, gerr, w, werr)
		}
	}
	w, werr := want.UUIDBinding(ctx, mac1)
	if g, gerr := got.UUIDBinding(ctx, mac1); found(gerr) != found(werr) || g.UUID != w.UUID || !g.Seen.Equal(w.Seen) {
		t.Errorf("uuid binding of %s = %+v, %v; want %+v, %v", mac1, g, gerr, w, werr)
	}
	if g, w := allLeases(t, got), allLeases(t, want); !slices.EqualFunc(g, w, sameLease) {
		t.Errorf("leases %+v, want %+v", g, w)
	}
	for _, l := range populatedLeases { // the MAC index, rebuilt by a restore
		w, werr := want.MACLease(ctx, l.mac)
		g, gerr := got.MACLease(ctx, l.mac)
		if found(gerr) != found(werr) || !sameLease(g, w) {
			t.Errorf("lease of %s = %+v, %v; want %+v, %v", l.mac, g, gerr, w, werr)
		}
	}
	data := func(rs []store.Record) []store.Record {
		return slices.DeleteFunc(rs, func(r store.Record) bool { return r.Kind == store.KindMeta })
	}
	if g, w := data(dump(t, got)), data(dump(t, want)); !slices.EqualFunc(g, w, func(a, b store.Record) bool {
		return a.Kind == b.Kind && a.Key == b.Key && bytes.Equal(a.Value, b.Value)
	}) {
		t.Errorf("dump after restore:\n%q\nwant\n%q", g, w)
	}
}

// checkContinues checks that after restoring from, to goes on where from
// left off: a revision above the dump's, and the next event's Seq after
// the last handed out.
func checkContinues(t *testing.T, to, from store.Store) {
	t.Helper()
	if got, want := mustRevision(t, to), mustRevision(t, from); got < want {
		t.Errorf("revision after restore %d, below the backup's %d", got, want)
	}
	before := mustRevision(t, to)
	last := mustEvents(t, from, store.EventQuery{Newest: true, Limit: 1})
	e := mustAppend(t, to, store.Event{Type: "after-restore"})
	if len(last) == 0 || e.Seq != last[0].Seq+1 {
		t.Errorf("next Seq after restore %d, want one after %v", e.Seq, seqs(last))
	}
	if mustRevision(t, to) <= before {
		t.Errorf("revision did not grow with a write after restore")
	}
}

func testBackupRoundTrip(t *testing.T, s suite) {
	a, _ := s.store(t)
	Populate(t, a)
	b, _ := s.store(t)
	if err := b.Restore(ctx, records(dump(t, a))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	CheckSame(t, b, a)
	checkContinues(t, b, a)
}

func testBackupRoundTripFile(t *testing.T, s suite) {
	a, _ := s.store(t)
	Populate(t, a)
	var file bytes.Buffer
	sum, err := store.Backup(ctx, a, "test", &file, t0)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts[store.KindMachine] != 3 || sum.Counts[store.KindSecret] != 2 || sum.Counts[store.KindLease] != 3 || sum.Revision != mustRevision(t, a) {
		t.Errorf("backup summary %+v", sum)
	}
	b, _ := s.store(t)
	got, err := store.RestoreFrom(ctx, b, &file)
	if err != nil {
		t.Fatalf("RestoreFrom: %v", err)
	}
	if got.Records != sum.Records {
		t.Errorf("restored %d records, backed up %d", got.Records, sum.Records)
	}
	CheckSame(t, b, a)
}

func testRestoreRefusesNonEmpty(t *testing.T, s suite) {
	a, _ := s.store(t)
	Populate(t, a)
	rs := dump(t, a)
	for _, tc := range []struct {
		name string
		fill func(st store.Store)
	}{
		{"machine", func(st store.Store) { mustSeen(t, st, store.Machine{MAC: "02:00:00:00:00:09"}) }},
		{"event", func(st store.Store) { mustAppend(t, st, store.Event{Type: "x"}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := s.store(t)
			tc.fill(b)
			before := dump(t, b)
			err := b.Restore(ctx, records(rs))
			wantErr(t, "Restore into a non-empty store", err, store.ErrNotEmpty)
			if after := dump(t, b); !slices.EqualFunc(after, before, func(x, y store.Record) bool {
				return x.Kind == y.Kind && x.Key == y.Key && bytes.Equal(x.Value, y.Value)
			}) {
				t.Errorf("a refused restore changed the store:\n%q\nwant\n%q", after, before)
			}
		})
	}
}

func testRestoreRefusesBadRecord(t *testing.T, s suite) {
	for _, r := range []store.Record{
		{Kind: "nope", Key: "x", Value: []byte(`{}`)},
		{Kind: store.KindMachine, Key: mac1, Value: []byte(`{"mac":"52:54:00:ab:cd:02","state":"ready"}`)},
		{Kind: store.KindMachine, Key: "52-54-00-AB-CD-01", Value: []byte(`{"mac":"52-54-00-AB-CD-01","state":"ready"}`)},
		{Kind: store.KindEvent, Key: "7", Value: []byte(`{"seq":8,"type":"x"}`)},
		{Kind: store.KindSecret, Key: mac1, Value: []byte("no name")},
		{Kind: store.KindLease, Key: "10.0.0.1", Value: []byte(`{"ip":"10.0.0.2","mac":"52:54:00:ab:cd:01"}`)},
		{Kind: store.KindLease, Key: "10.0.0.1", Value: []byte(`{"ip":"10.0.0.1","mac":"52-54-00-AB-CD-01"}`)},
		{Kind: store.KindLease, Key: "10.0.0.1", Value: []byte(`{"ip":"10.0.0.1","mac":"52:54:00:ab:cd:01","declined":true}`)},
		{Kind: store.KindLease, Key: "fd00::1", Value: []byte(`{"ip":"fd00::1","mac":"52:54:00:ab:cd:01"}`)},
	} {
		b, _ := s.store(t)
		err := b.Restore(ctx, records([]store.Record{r}))
		wantErr(t, "Restore of "+r.Kind+" "+r.Key, err, store.ErrInvalid)
	}
	// A store holds one lease per MAC: so must a backup.
	b, _ := s.store(t)
	err := b.Restore(ctx, records([]store.Record{
		{Kind: store.KindLease, Key: "10.0.0.1", Value: []byte(`{"ip":"10.0.0.1","mac":"52:54:00:ab:cd:01"}`)},
		{Kind: store.KindLease, Key: "10.0.0.2", Value: []byte(`{"ip":"10.0.0.2","mac":"52:54:00:ab:cd:01"}`)},
	}))
	wantErr(t, "Restore of two leases of one MAC", err, store.ErrInvalid)
}

func testRestoreRecordsError(t *testing.T, s suite) {
	b, _ := s.store(t)
	boom := errors.New("read error")
	err := b.Restore(ctx, func(yield func(store.Record, error) bool) {
		if yield(store.MetaRecord(store.MetaRevision, 5), nil) {
			yield(store.Record{}, boom)
		}
	})
	wantErr(t, "Restore with a failing source", err, boom)
}

// testRestoreKeepsSecretsAndBindings: secrets, bindings and leases stored
// before any machine (credentials may come first) do not make the store
// non-empty, and a restore adds to them rather than dropping them.
func testRestoreKeepsSecretsAndBindings(t *testing.T, s suite) {
	a, _ := s.store(t)
	Populate(t, a)
	b, _ := s.store(t)
	const early = "02:00:00:00:00:0b"
	if err := b.PutSecret(ctx, early, "bmc", []byte("sealed early")); err != nil {
		t.Fatal(err)
	}
	mustBind(t, b, store.Binding{MAC: early, IP: "10.0.0.99"})
	mustClaim(t, b, store.Lease{IP: "10.0.0.99", MAC: early, Expires: t0.Add(time.Hour)}, t0)
	if err := b.Restore(ctx, records(dump(t, a))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, err := b.Secret(ctx, early, "bmc"); err != nil || string(got) != "sealed early" {
		t.Errorf("secret stored before the restore = %q, %v; want it kept", got, err)
	}
	if got, err := b.IPBinding(ctx, "10.0.0.99"); err != nil || got.MAC != early {
		t.Errorf("binding stored before the restore = %+v, %v; want it kept", got, err)
	}
	checkMACLease(t, b, early, "10.0.0.99")
	if got := leaseIPs(allLeases(t, b)); !slices.Equal(got, []string{"10.0.0.9", "10.0.0.11", "10.0.0.12", "10.0.0.99"}) {
		t.Errorf("leases after the restore = %v, want the restored ones and the one stored before", got)
	}
	if got, err := b.Secret(ctx, mac1, "bmc/password"); err != nil || string(got) != "sealed\n\x00" {
		t.Errorf("restored secret = %q, %v", got, err)
	}
}

// testDumpConsistent: writes made while a dump runs do not show in it.
func testDumpConsistent(t *testing.T, s suite) {
	a, _ := s.store(t)
	Populate(t, a)
	var n int
	err := a.Dump(ctx, func(r store.Record) error {
		if n == 0 {
			// Written by another goroutine: memstore's Dump holds its lock
			// only while taking the snapshot.
			done := make(chan struct{})
			go func() {
				defer close(done)
				ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, _, _ = a.Seen(ctx, store.Machine{MAC: "02:00:00:00:00:0a"}, nil)
			}()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Error("a write blocked for the whole dump")
			}
		}
		if r.Kind == store.KindMachine && r.Key == "02:00:00:00:00:0a" {
			t.Errorf("a machine written after the dump began is in it")
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
