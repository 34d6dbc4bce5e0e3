package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/store"
)

// Inventory operations for the API. An id is a MAC in any spelling, a UUID,
// or the name of a Machine in the profiles.

// Machines lists the inventory ordered by MAC.
func (c *Core) Machines(ctx context.Context) ([]store.Machine, error) {
	return c.store.Machines(ctx)
}

// Machine looks up one machine by id.
func (c *Core) Machine(ctx context.Context, id string) (store.Machine, error) {
	key, err := c.key(ctx, id)
	if err != nil {
		return store.Machine{}, err
	}
	m, err := c.store.Machine(ctx, key)
	return m, notFound(id, err)
}

// Provisioning returns machine id's current provisioning session.
func (c *Core) Provisioning(ctx context.Context, id string) (store.Provisioning, error) {
	key, err := c.key(ctx, id)
	if err != nil {
		return store.Provisioning{}, err
	}
	p, err := c.store.Provisioning(ctx, key)
	return p, notFound(id, err)
}

// Installed records a phone-home. viaAPI is a caller holding the API token;
// anyone else must be the machine itself, asking from from (its address,
// see verify.go), with its current session token.
func (c *Core) Installed(ctx context.Context, id, token, note, from string, viaAPI bool) (store.Machine, error) {
	key, err := c.key(ctx, id)
	if err != nil {
		return store.Machine{}, err
	}
	if !viaAPI {
		m, err := c.store.Machine(ctx, key)
		if err != nil {
			return m, notFound(id, err)
		}
		r := Request{MAC: m.MAC, IP: from}
		if _, err := c.authenticate(ctx, r, "phone-home"); err != nil {
			return store.Machine{}, err
		}
		// A read first: a storm of bad tokens costs no writes.
		if p, err := c.store.Provisioning(ctx, key); err != nil || !tokenMatches(token, p.TokenHash) {
			return store.Machine{}, c.phoneHomeDenied(ctx, r)
		}
		key = m.MAC
	}
	var denied bool
	m, _, err := c.store.Update(ctx, key, installed(token, oneLine(note, maxNote), viaAPI, time.Now().UTC(), &denied))
	if err != nil {
		return m, notFound(id, err)
	}
	if denied {
		return store.Machine{}, c.phoneHomeDenied(ctx, Request{MAC: m.MAC, IP: from})
	}
	c.log.Info("phone-home: installed", append(machineID(m).Attrs(), "state", m.State)...)
	return m, nil
}

// phoneHomeDenied records a phone-home without the machine's current token
// and returns ErrUnauthorized.
func (c *Core) phoneHomeDenied(ctx context.Context, r Request) error {
	_ = c.refuse(ctx, r, &RefusedError{What: "phone-home", Reason: ReasonBadToken})
	return ErrUnauthorized
}

// maxNote bounds the free text a phone-home may add to its event.
const maxNote = 200

// oneLine keeps a machine's free text fit for one event line: printable,
// each run of spaces or control characters one space, at most max runes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return s
}

// Events returns events, oldest first. q.MAC may be any machine id.
func (c *Core) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if q.MAC != "" {
		// A target, not only the inventory: a Machine in Git powered on
		// before it ever booted has events too.
		t, err := c.target(ctx, q.MAC)
		if err != nil {
			return nil, err
		}
		if t.mac == "" {
			return nil, nil
		}
		q.MAC = t.mac
	}
	return c.store.Events(ctx, q)
}

// Revision is the store's: it grows with every write of a machine or an
// event; see store.Store.Revision.
func (c *Core) Revision(ctx context.Context) (uint64, error) { return c.store.Revision(ctx) }

// key turns an id into a store key: MACs and UUIDs as they are; a Machine
// name into the MAC or UUID its entry in Git matches, else (a Machine
// matched by labels, or a name no longer in Git) the MAC of the one
// inventoried machine recorded under that name.
func (c *Core) key(ctx context.Context, id string) (string, error) {
	if _, err := ident.MAC(id); err == nil {
		return id, nil
	}
	if _, err := ident.UUID(id); err == nil {
		return id, nil
	}
	// Git is authoritative: the inventory's name may be stale (a Machine moved
	// to a new board), and looking it up there scans every record.
	if set := c.set.Load(); set != nil {
		if m := set.Machine(id); m != nil && (m.Match.MAC != "" || m.Match.UUID != "") {
			return cmp.Or(m.Match.MAC, m.Match.UUID), nil
		}
	}
	ms, err := c.store.Machines(ctx)
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

// notFound maps the store's not-found to the core's.
func notFound(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	return err
}
