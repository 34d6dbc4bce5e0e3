package boot

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
)

// declaredFleet declares one Machine per kind of match: by MAC (with
// operator labels), by UUID, by labels alone, and by serial alone.
const declaredFleet = `kind: Profile
name: p
boot: {kernel: /assets/k}
---
kind: Machine
name: n1
match: {mac: "52:54:00:00:00:01"}
labels: {rack: r1, role: db}
profile: p
---
kind: Machine
name: n2
match: {uuid: 4C4C4544-0042-3510-8057-B7C04F4E3732}
profile: p
---
kind: Machine
name: n3
match: {labels: {rack: r2}}
labels: {role: web}
profile: p
---
kind: Machine
name: n4
match: {serial: SN-0004}
profile: p
---
kind: Default
profile: p
`

const n2UUID = "4c4c4544-0042-3510-8057-b7c04f4e3732"

func declaredCore(t *testing.T) (*Core, store.Store) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "p.yaml", declaredFleet)
	c, db := newCore(t, dir, Config{})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	return c, db
}

// names lists ms as name/state pairs, in order.
func names(ms []store.Machine) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.Name + "/" + string(m.State) + " ")
	}
	return strings.TrimSpace(b.String())
}

// Every Machine in Git is listed before it is seen, from what Git says of it.
func TestDeclaredListed(t *testing.T) {
	c, _ := declaredCore(t)
	ms, err := c.Machines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(ms), "n1/declared n2/declared n3/declared n4/declared"; got != want {
		t.Fatalf("Machines = %s; want %s (by MAC, those without one last by name)", got, want)
	}
	n1, n2, n3, n4 := ms[0], ms[1], ms[2], ms[3]
	if n1.MAC != "52:54:00:00:00:01" || n1.Profile != "p" || !maps.Equal(n1.Labels, map[string]string{"rack": "r1", "role": "db"}) ||
		!n1.FirstSeen.IsZero() || !n1.LastSeen.IsZero() {
		t.Errorf("n1 = %+v; want its MAC, profile and labels from Git, never seen", n1)
	}
	if n2.MAC != "" || n2.UUID != n2UUID {
		t.Errorf("n2 = %+v; want no MAC, its UUID canonical", n2)
	}
	if !maps.Equal(n3.Labels, map[string]string{"rack": "r2", "role": "web"}) {
		t.Errorf("n3 labels = %v; want its match labels and its labels", n3.Labels)
	}
	if n4.MAC != "" || n4.UUID != "" || n4.Name != "n4" {
		t.Errorf("n4 = %+v; want its name alone", n4)
	}
}

// A declared machine is found by its name, or the MAC or UUID it matches,
// in any spelling; what Git does not declare stays not found.
func TestDeclaredLookup(t *testing.T) {
	c, _ := declaredCore(t)
	ctx := context.Background()
	for _, tc := range []struct{ id, want string }{
		{"n1", "n1"}, {"52-54-00-00-00-01", "n1"}, {"n2", "n2"}, {strings.ToUpper(n2UUID), "n2"},
		{"n3", "n3"}, {"n4", "n4"},
	} {
		m, err := c.Machine(ctx, tc.id)
		if err != nil || m.Name != tc.want || m.State != store.StateDeclared {
			t.Errorf("Machine(%q) = %s/%s, %v; want %s declared", tc.id, m.Name, m.State, err, tc.want)
		}
	}
	for _, id := range []string{"ghost", "52:54:00:00:00:99", "11111111-2222-3333-4444-555555555555"} {
		if _, err := c.Machine(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Machine(%q) = %v; want ErrNotFound", id, err)
		}
	}
}

// Once seen, a machine's record takes the place of its declared entry,
// whichever way it matched: by MAC, by UUID, by labels.
func TestDeclaredReplacedWhenSeen(t *testing.T) {
	c, _ := declaredCore(t)
	ctx := context.Background()
	for _, r := range []Request{
		{MAC: "52:54:00:00:00:01"},
		{MAC: "52:54:00:00:00:02", UUID: n2UUID},
		{MAC: "52:54:00:00:00:03", Labels: map[string]string{"rack": "r2"}},
	} {
		if _, err := c.Script(ctx, r); err != nil {
			t.Fatalf("Script(%+v): %v", r, err)
		}
	}
	ms, err := c.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(ms), "n1/provisioning n2/provisioning n3/provisioning n4/declared"; got != want {
		t.Fatalf("Machines = %s; want %s", got, want)
	}
	for id, mac := range map[string]string{"n1": "52:54:00:00:00:01", "n2": "52:54:00:00:00:02", "n3": "52:54:00:00:00:03", n2UUID: "52:54:00:00:00:02"} {
		if m, err := c.Machine(ctx, id); err != nil || m.MAC != mac || m.State != store.StateProvisioning {
			t.Errorf("Machine(%q) = %s %s, %v; want the record of %s", id, m.MAC, m.State, err, mac)
		}
	}
}

// The inventory keeps Git's labels for a machine: what a request claims
// selects a Machine for that request, and is never stored.
func TestStoredLabelsAreGits(t *testing.T) {
	c, db := declaredCore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		r      Request
		labels map[string]string
	}{
		// A known MAC claiming another rack: the MAC decides, and Git's
		// labels are stored.
		{"known MAC claims a rack", Request{MAC: "52:54:00:00:00:01", Labels: map[string]string{"rack": "evil", "role": "admin"}},
			map[string]string{"rack": "r1", "role": "db"}},
		// Claimed labels select n3 for this request; n3's labels are stored,
		// not the extra claim.
		{"labels match, extra claimed", Request{MAC: "52:54:00:00:00:03", Labels: map[string]string{"rack": "r2", "evil": "yes"}},
			map[string]string{"rack": "r2", "role": "web"}},
		// Nothing matches the claim: the Default boots it, with no labels.
		{"no Machine matches", Request{MAC: "52:54:00:00:00:09", Labels: map[string]string{"rack": "evil"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Script(ctx, tc.r); err != nil {
				t.Fatal(err)
			}
			m, err := db.Machine(ctx, tc.r.MAC)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(m.Labels, tc.labels) {
				t.Fatalf("stored labels = %v; want %v", m.Labels, tc.labels)
			}
		})
	}
}

// The declared state is a listing's: no store takes it.
func TestDeclaredNeverStored(t *testing.T) {
	_, db := declaredCore(t)
	ctx := context.Background()
	if _, _, err := db.Seen(ctx, store.Machine{MAC: "52:54:00:00:00:01", State: store.StateDeclared}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Seen in state declared = %v; want ErrInvalid", err)
	}
	if _, _, err := db.Seen(ctx, store.Machine{MAC: "52:54:00:00:00:01"}, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
		m.State = store.StateDeclared
		return nil, nil
	}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a Change to state declared = %v; want ErrInvalid", err)
	}
	if !store.StateDeclared.Listed() || store.StateDeclared.Valid() || store.ListedStates()[0] != store.StateDeclared {
		t.Fatal("declared must be listed, and not a lifecycle state")
	}
}

// An operation that changes a machine's record says a declared machine was
// never seen (ErrState, 409), and a machine Git does not know is not found.
func TestMissingSaysNeverSeen(t *testing.T) {
	c, _ := declaredCore(t)
	for _, id := range []string{"n2", "n4", "52:54:00:00:00:01", n2UUID} {
		err := c.Decider.ids.missing(id, store.ErrNotFound)
		if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "never seen") || !strings.Contains(err.Error(), "power it on first") {
			t.Errorf("missing(%q) = %v; want ErrState saying it was never seen", id, err)
		}
	}
	if err := c.Decider.ids.missing("ghost", store.ErrNotFound); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing(ghost) = %v; want ErrNotFound", err)
	}
	other := errors.New("store down")
	if err := c.Decider.ids.missing("n2", other); err != other {
		t.Errorf("missing(n2, other) = %v; want the store's error as it is", err)
	}
}
