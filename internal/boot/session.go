package boot

import (
	"encoding/base64"
	"reflect"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Session reuse. A machine's iPXE may ask /ipxe several times within one
// provisioning: a retried chain, a reset before the config was fetched, a
// second NIC. A new session each time is a durable write, on etcd a
// consensus round trip, for nothing. So while a machine's open session has
// served no config and nothing else about the machine would change, /ipxe
// hands out the same script with the same token again, writing nothing
// durable (LastSeen goes through the write-behind sightings).
//
// The token is kept sealed (Config.Secrets, the key in --secret-key-file)
// beside its hash: every instance given the same key can reopen it, and the
// database alone still holds no credential. Without a sealer, every /ipxe
// opens a new session as before.

// sessionReuse bounds how old a session may be and still be handed out
// again: a machine back after this long starts a fresh one, so a token does
// not live on indefinitely in scripts.
const sessionReuse = 15 * time.Minute

// sessionContext binds a sealed token to its machine: a blob copied to
// another machine's record does not open there.
func sessionContext(mac string) string { return "session/" + mac }

// sealToken is what the store keeps of token besides its hash; "" without
// a sealer, or without the MAC the seal is bound to.
func (d *Decider) sealToken(mac, token string) string {
	if d.secrets == nil || mac == "" {
		return ""
	}
	return base64.StdEncoding.EncodeToString(d.secrets.Seal([]byte(token), sessionContext(mac)))
}

// openToken opens what sealToken made.
func (d *Decider) openToken(mac, sealed string) (string, error) {
	blob, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", err
	}
	raw, err := d.secrets.Open(blob, sessionContext(mac))
	return string(raw), err
}

// reuse returns the token of the open session p of m, the stored machine
// (storedSession; zero when unknown), with the plan and m, when /ipxe may
// hand the session out again: see reusable. ok is false on any doubt, so
// that the caller takes the writing path, whose errors are the ones to
// report. A
// tokenless session (uki.go) is never handed out here: it has no sealed
// token (see reusable).
func (d *Decider) reuse(r Request, res profiles.Result, m store.Machine, p store.Provisioning, now time.Time) (token string, plan bootPlan, _ store.Machine, ok bool) {
	if d.secrets == nil || m.MAC == "" {
		return "", bootPlan{}, store.Machine{}, false
	}
	s := d.sightingOf(r, res)
	s.MAC = m.MAC
	s, err := s.Sighting()
	if err != nil {
		return "", bootPlan{}, store.Machine{}, false
	}
	plan, ok = reusable(m, p, s, res, d.live.wipeProfile(), now)
	if !ok {
		return "", bootPlan{}, store.Machine{}, false
	}
	token, err = d.openToken(m.MAC, p.SealedToken)
	if err != nil || !tokenMatches(token, p.TokenHash) {
		return "", bootPlan{}, store.Machine{}, false // a changed key: open a new session
	}
	return token, plan, m, true
}

// reusable decides whether machine m's session p may be handed out again to
// a request whose sighting is s, and the plan it boots: only if the session
// is open, recent and has served no config, the sighting adds nothing to
// the record, and /ipxe would decide the same profile without any other
// change to the machine (peek).
func reusable(m store.Machine, p store.Provisioning, s store.Machine, res profiles.Result, wipe *profiles.Profile, now time.Time) (bootPlan, bool) {
	if p.SealedToken == "" || !sessionFresh(m, p, s, now) {
		return bootPlan{}, false
	}
	if plan, state := peek(m, p, res, wipe); !plan.local && plan.profile.Name == p.Profile && state == m.State {
		return plan, true
	}
	return bootPlan{}, false
}

// sessionFresh reports whether machine m's session p is open, recent and has
// served no config, and a sighting s would add nothing to m's record: what
// handing a session out again requires of it, whatever its kind.
func sessionFresh(m store.Machine, p store.Provisioning, s store.Machine, now time.Time) bool {
	if p.TokenHash == "" || !p.ConfigServed.IsZero() || now.Sub(p.IssuedAt) > sessionReuse || now.Before(p.IssuedAt) {
		return false
	}
	return reflect.DeepEqual(m.Merge(s, m.LastSeen), m) // else a new address, name, label...: the sighting must be written
}
