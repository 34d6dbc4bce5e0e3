package boot

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Declared machines. Every Machine in the live profiles is inventory from the
// moment it is declared: the operator wrote it down, and can already power it
// on through its BMC. One that no request has shown yet has no record in the
// store, so the Decider lists it as a record synthesized from Git, in state
// store.StateDeclared, which is never written. Once the machine is seen, its
// record stands for it instead: a record with the Machine's name, or the MAC
// or UUID it matches, hides the synthesized one.

// declared returns the Machines of set that no record of ms stands for, as
// synthesized records.
func declared(set *profiles.Set, ms []store.Machine) []store.Machine {
	if set == nil || len(set.Machines) == 0 {
		return nil
	}
	shown := make(map[string]bool, 2*len(ms)) // names, and MACs and UUIDs (canonical, so they cannot collide)
	for _, m := range ms {
		if m.Name != "" {
			shown["n"+m.Name] = true
		}
		shown["i"+m.MAC] = true
		if m.UUID != "" {
			shown["i"+m.UUID] = true
		}
	}
	var out []store.Machine
	for _, g := range set.Machines {
		if shown["n"+g.Name] || (g.Match.MAC != "" && shown["i"+g.Match.MAC]) || (g.Match.UUID != "" && shown["i"+g.Match.UUID]) {
			continue
		}
		out = append(out, declaredRecord(g))
	}
	return out
}

// declaredRecord is Machine g as the inventory shows it before it is seen:
// the identities it matches (none for one matched by serial or labels
// alone), its profile and its labels from Git.
func declaredRecord(g *profiles.Machine) store.Machine {
	return store.Machine{
		MAC: g.Match.MAC, UUID: g.Match.UUID, Name: g.Name, Profile: g.Profile,
		State: store.StateDeclared, Labels: maps.Clone(g.AllLabels()),
	}
}

// listing is the inventory's records ms (ordered by MAC) with set's declared
// machines among them: ordered by MAC, those matched without one last, by
// name.
func listing(set *profiles.Set, ms []store.Machine) []store.Machine {
	ds := declared(set, ms)
	if len(ds) == 0 {
		return ms
	}
	out := slices.Concat(ms, ds) // not append: ms is the caller's, and is sorted in place below
	slices.SortStableFunc(out, func(a, b store.Machine) int {
		switch {
		case (a.MAC == "") != (b.MAC == ""):
			if a.MAC == "" {
				return 1
			}
			return -1
		case a.MAC != b.MAC:
			return strings.Compare(a.MAC, b.MAC)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// find is the machine of list that id names: by MAC or UUID (any
// spelling), else by Machine name. ErrNotFound; ErrAmbiguous when several
// records carry the name.
func find(list []store.Machine, id string) (store.Machine, error) {
	same := func(m store.Machine) bool { return m.Name == id }
	if mac, err := ident.MAC(id); err == nil {
		same = func(m store.Machine) bool { return m.MAC == mac }
	} else if uuid, err := ident.UUID(id); err == nil {
		same = func(m store.Machine) bool { return m.UUID == uuid }
	}
	var found []store.Machine
	for _, m := range list {
		if same(m) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return store.Machine{}, fmt.Errorf("machine %q: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	default:
		return store.Machine{}, fmt.Errorf("%w: %d machines matched %q; use a MAC", ErrAmbiguous, len(found), id)
	}
}

// errNeverSeen is why an operation that changes a machine's record cannot
// run on a machine that is only declared.
func errNeverSeen(name string) error {
	return fmt.Errorf("%w: %s was never seen, so it has no record to change yet: power it on first (provisiond power on %s)", ErrState, name, name)
}

// inGit is the Machine in set that id names (its name, or the MAC or UUID
// it matches) as a declared record, whether or not it was seen. It reads no
// record, so an id Git does not know costs no scan of the inventory.
func inGit(set *profiles.Set, id string) (store.Machine, error) {
	return find(declared(set, nil), id)
}

// missing is err, the store's answer for id, as the core says it: a
// declared machine that was never seen for store.ErrNotFound (ErrState: an
// operation that needs its record cannot run yet), else notFound's.
func (r resolver) missing(id string, err error) error {
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if set := r.live.Profiles(); set != nil {
		if m, ferr := inGit(set, id); ferr == nil {
			return errNeverSeen(m.Name)
		}
	}
	return notFound(id, err)
}

// declared is the machine id names in the listing, after the store had no
// record under its key: a declared machine, or a record named id whose
// Machine in Git now matches another MAC (see key).
func (r resolver) declared(ctx context.Context, id string) (store.Machine, error) {
	set := r.live.Profiles()
	if set == nil {
		return store.Machine{}, fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	if _, err := inGit(set, id); err != nil {
		return store.Machine{}, err
	}
	ms, err := r.store.Machines(ctx)
	if err != nil {
		return store.Machine{}, err
	}
	return find(listing(set, ms), id)
}
