package boot

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode"

	"github.com/provisiond/provisiond/internal/store"
)

// The Decider's inventory operations for the API and the dashboard, by id
// (see resolver), and the phone-home that ends a machine's session.

// Machines lists the inventory ordered by MAC: every machine seen, and every
// Machine in the live profiles not seen yet, in state store.StateDeclared
// (declared.go), those matched without a MAC last.
func (d *Decider) Machines(ctx context.Context) ([]store.Machine, error) {
	ms, err := d.store.Machines(ctx)
	if err != nil {
		return nil, err
	}
	return listing(d.live.Profiles(), ms), nil
}

// Machine looks up one machine by id, as Machines lists it: a declared
// Machine never seen is found too.
func (d *Decider) Machine(ctx context.Context, id string) (store.Machine, error) {
	key, err := d.ids.key(ctx, id)
	if err == nil {
		m, err := d.store.Machine(ctx, key)
		if !errors.Is(err, store.ErrNotFound) {
			return m, err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return store.Machine{}, err
	}
	return d.ids.declared(ctx, id)
}

// Provisioning returns machine id's current provisioning session.
func (d *Decider) Provisioning(ctx context.Context, id string) (store.Provisioning, error) {
	key, err := d.ids.key(ctx, id)
	if err != nil {
		return store.Provisioning{}, err
	}
	p, err := d.store.Provisioning(ctx, key)
	return p, notFound(id, err)
}

// Installed records a phone-home. viaAPI is a caller holding the API token;
// anyone else must be the machine itself, asking from from (its address,
// see verify.go), with its current session token.
func (d *Decider) Installed(ctx context.Context, id, token, note, from string, viaAPI bool) (store.Machine, error) {
	ctx, cancel := context.WithTimeout(ctx, storeDeadline)
	defer cancel()
	// A read first: a storm of bad tokens costs no writes.
	key, err := d.sessionKey(ctx, whatPhoneHome, id, token, from, viaAPI)
	if err != nil {
		return store.Machine{}, err
	}
	var denied bool
	m, _, err := d.store.Update(ctx, key, installed(token, oneLine(note, maxNote), viaAPI, time.Now().UTC(), &denied))
	if err != nil {
		return m, notFound(id, err)
	}
	if denied {
		return store.Machine{}, d.sessionDenied(ctx, whatPhoneHome, Request{MAC: m.MAC, IP: from}, m)
	}
	d.log.Info("phone-home: installed", append(machineID(m).Attrs(), "state", m.State)...)
	d.step(m.MAC, Step{Name: StepPhoneHome, Outcome: string(m.State)}, false)
	return m, nil
}

// sessionDenied records a request of machine m that its session must
// authorise (what: a phone-home or a hardware report) made without the
// session's current token, and returns the error to answer.
func (d *Decider) sessionDenied(ctx context.Context, what string, r Request, m store.Machine) error {
	_ = d.refuseOn(ctx, r, m, &RefusedError{What: what, Reason: ReasonBadToken})
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
func (d *Decider) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if q.MAC != "" {
		// A target, not only the inventory: a Machine in Git powered on
		// before it ever booted has events too.
		t, err := d.ids.target(ctx, q.MAC)
		if err != nil {
			return nil, err
		}
		if t.mac == "" {
			return nil, nil
		}
		q.MAC = t.mac
	}
	return d.store.Events(ctx, q)
}

// Revision is the store's: it grows with every write of a machine or an
// event; see store.Store.Revision.
func (d *Decider) Revision(ctx context.Context) (uint64, error) { return d.store.Revision(ctx) }
