package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// An id, as operators name machines to the API, the dashboard and the CLI,
// is a MAC in any spelling, a UUID, or the name of a Machine in the
// profiles. resolver turns one into the machine it names, for the Decider's
// inventory and the Fleet alike.
type resolver struct {
	live  *Live
	store store.Store
}

// key turns an id into a store key: MACs and UUIDs as they are; a Machine
// name into the MAC or UUID its entry in Git matches, else (a Machine
// matched by labels, or a name no longer in Git) the MAC of the one
// inventoried machine recorded under that name.
func (r resolver) key(ctx context.Context, id string) (string, error) {
	if _, err := ident.MAC(id); err == nil {
		return id, nil
	}
	if _, err := ident.UUID(id); err == nil {
		return id, nil
	}
	// Git is authoritative: the inventory's name may be stale (a Machine moved
	// to a new board), and looking it up there scans every record.
	if set := r.live.Profiles(); set != nil {
		if m := set.Machine(id); m != nil && (m.Match.MAC != "" || m.Match.UUID != "") {
			return cmp.Or(m.Match.MAC, m.Match.UUID), nil
		}
	}
	ms, err := r.store.Machines(ctx)
	if err != nil {
		return "", err
	}
	var found []string
	for _, m := range ms {
		if m.Name == id {
			found = append(found, m.MAC)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("machine %q: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("%w: %d machines matched Machine %q; use a MAC", ErrAmbiguous, len(found), id)
	}
}

// target is a machine an operator named, found in the inventory, in Git, or both.
type target struct {
	mac, uuid string            // canonical; either may be "" for a machine never seen
	arch      string            // from the inventory: "bios", "efi-x86_64", ...
	known     bool              // the inventory has it
	git       *profiles.Machine // nil when no Machine in Git claims it
}

func (t target) name() string {
	if t.git != nil {
		return t.git.Name
	}
	return ""
}

// target resolves id (a MAC, a UUID or a Machine name) to a machine. A Machine
// in Git that never booted is a target too: powering it on is how it first boots.
func (r resolver) target(ctx context.Context, id string) (target, error) {
	var t target
	set := r.live.Profiles()
	key, err := r.key(ctx, id)
	if errors.Is(err, ErrNotFound) && set != nil {
		// key answers a Machine with a MAC or UUID from Git: this one is
		// matched by labels only and was never seen, so there is nothing to look up.
		if named := set.Machine(id); named != nil {
			return target{git: named}, nil
		}
	}
	if err != nil {
		return t, err
	}
	m, err := r.store.Machine(ctx, key)
	switch {
	case err == nil:
		t = target{mac: m.MAC, uuid: m.UUID, arch: m.Arch, known: true}
	case errors.Is(err, store.ErrNotFound):
		t.mac, _ = ident.MAC(key)
		t.uuid, _ = ident.UUID(key)
	default:
		return t, err
	}
	if set != nil {
		// What the machine would match now, so a Machine edited in Git since
		// its last boot takes effect.
		res, err := set.Match(profiles.Query{MAC: t.mac, UUID: t.uuid, Labels: m.Labels, Hardware: m.Hardware})
		if err == nil && res.Machine != nil {
			t.git = res.Machine
			// A machine named by UUID before it ever booted: Git may know its MAC.
			t.mac, t.uuid = cmp.Or(t.mac, t.git.Match.MAC), cmp.Or(t.uuid, t.git.Match.UUID)
		}
	}
	if !t.known && t.git == nil {
		return t, fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	return t, nil
}

// notFound maps the store's not-found to the core's.
func notFound(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	return err
}
