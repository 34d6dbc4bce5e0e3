package boot

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// The lifecycle as pure store.Change functions: each reads the stored machine
// and its provisioning session and decides the next state, with the events
// that explain it. They run inside one store transaction and may run twice,
// so they compute only from their arguments.

// Event types written by the lifecycle.
const (
	EventReady         = "ready"          // a discovered machine now matches a Machine
	EventProvisioning  = "provisioning"   // /ipxe opened a session and served the install script
	EventLocalBoot     = "boot-local"     // /ipxe told an installed boot-once machine to boot from disk
	EventConfigServed  = "config-served"  // the session's config was handed out
	EventConfigRefused = "config-refused" // a config request failed a secrecy check
	EventScriptRefused = "script-refused" // an /ipxe request failed the neighbour check
	EventInstalled     = "installed"      // phone-home closed the session
	EventPhoneHomeDeny = "phone-home-refused"
	EventReportRefused = "hardware-refused" // a hardware report failed its session's checks
	EventReprovision   = "reprovision"      // an operator sent the machine back to provisioning
	EventWipe          = "wipe"             // an operator sent the machine to the wipe profile
	EventPower         = "power"            // a BMC power or boot-device operation, with its outcome
	EventBMC           = "bmc"              // an operator set or removed the machine's BMC credentials
)

// EventTypes lists every event type the core writes, a machine's lifecycle
// first, for filters that offer them (the dashboard's events page).
func EventTypes() []string {
	return []string{EventReady, EventProvisioning, EventLocalBoot, EventConfigServed, EventInstalled,
		EventReprovision, EventWipe, EventPower, EventBMC, EventConfigRefused, EventScriptRefused,
		EventPhoneHomeDeny, EventProfilesLive, EventProfilesRejected, EventProfilesBehind,
		EventInspected, EventReportRefused, EventBootStep, EventAssetMissing, EventStalled}
}

// Refusal reasons for configs, also metric label values: keep the set small.
const (
	ReasonNoSession = "no-session"     // the machine has not booted through /ipxe, or its session closed
	ReasonNoToken   = "token-missing"  // the request carries no token
	ReasonBadToken  = "token-mismatch" // a replayed token or another machine's
	ReasonRefetch   = "already-served" // the session's config was already served once
	ReasonNeighbor  = "neighbor-mismatch"
)

// Policy relaxes the config secrecy checks. The zero value is the safe default:
// every check on.
type Policy struct {
	// AllowConfigWithoutToken serves /ignition and /config to a request with no
	// token while the machine has an open session. A wrong token is still refused.
	AllowConfigWithoutToken bool
	// AllowConfigRefetch serves a session's config more than once.
	AllowConfigRefetch bool
	// SkipNeighborCheck trusts the claimed MAC of an on-link requester without
	// asking the kernel's neighbour table.
	SkipNeighborCheck bool
	// TrustLoopback treats requesters on this host (loopback, the server's
	// own addresses) as the machine they name, so that provisiond can be
	// tried on one host; any local process can then fetch any config.
	TrustLoopback bool
	// AllowUnbound takes a routed requester that no DHCP binding names at its
	// word, for networks whose relays do not forward DHCP to provisiond.
	AllowUnbound bool
}

// newToken returns a fresh session token: 128 random bits as 26 base32
// characters (A-Z, 2-7), safe in URLs and headers unescaped.
func newToken() string {
	return rand.Text()
}

// hashToken is what the store keeps of a token.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// tokenMatches compares a presented token with a stored hash in constant time.
func tokenMatches(token, hash string) bool {
	if token == "" || hash == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(hash)) == 1
}

// settle moves a discovered machine to ready once a Machine in Git claims it.
func settle(m *store.Machine) []store.Event {
	if m.Name != "" && m.State == store.StateDiscovered {
		m.State = store.StateReady
		return []store.Event{{Type: EventReady, Message: "matched Machine " + m.Name, Actor: "system"}}
	}
	return nil
}

// sighted is the Change for a plain sighting (DHCP, /boot.ipxe, an unmatched /ipxe).
func sighted(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
	return settle(m), nil
}

// bootPlan is what /ipxe decided for a machine.
type bootPlan struct {
	local   bool              // boot from disk: a boot-once profile whose machine is installed
	profile *profiles.Profile // the profile the script boots
	why     string            // the decision for people, e.g. on the dashboard
}

// planBoot decides what a matched machine boots now, writing the decision to
// plan. A machine being wiped boots the wipe profile (nil: none configured).
// A boot-once profile boots an installed machine from disk. Anything else
// opens a new provisioning session under tokenHash, so the config URL in the
// script works for this boot only; a machine claimed by a Machine goes to
// provisioning, one booted by the Default profile stays discovered. The
// session of a profile with boot.loader uki is tokenless (uki.go): its token
// is never handed out, and the first config fetch mints the real one.
func planBoot(res profiles.Result, wipe *profiles.Profile, tokenHash, sealedToken string, now time.Time, plan *bootPlan) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		events := settle(m)
		*plan = bootPlan{profile: res.Profile}
		switch {
		case m.State == store.StateWiping && wipe != nil:
			plan.profile = wipe
			plan.why = "the machine is being wiped: it boots the wipe profile " + wipe.Name + ", not its profile " + res.Profile.Name
		case res.Profile.Once && m.State == store.StateInstalled:
			plan.local = true
			plan.why = "profile " + res.Profile.Name + " is boot-once and the machine is installed"
			return append(events, store.Event{Type: EventLocalBoot, Message: plan.why, Actor: "system"}), nil
		case res.Machine != nil:
			plan.why = "a new provisioning session installs profile " + res.Profile.Name
			if m.State != store.StateProvisioning {
				plan.why += fmt.Sprintf(": the machine goes from %s to provisioning", m.State)
			}
			m.State = store.StateProvisioning
		default:
			plan.why = fmt.Sprintf("no Machine claims it: the Default profile %s boots and it stays %s", res.Profile.Name, m.State)
		}
		name := plan.profile.Name
		tokenless := plan.profile.Boot.Loader == profiles.LoaderUKI
		if tokenless {
			plan.why += "; its UKI's command line names the config without a token, so the machine's first config fetch, proven by its address, mints it"
			sealedToken = "" // never handed out: nothing to hand out again
		}
		*p = store.Provisioning{TokenHash: tokenHash, SealedToken: sealedToken, Profile: name, IssuedAt: now, Installed: p.Installed, Tokenless: tokenless}
		return append(events, store.Event{Type: EventProvisioning, Message: "served the boot script of profile " + name, Actor: "system",
			Fields: map[string]string{"profile": name}}), nil
	}
}

// peek runs planBoot on m and p, a machine and its session, which are
// copies: what /ipxe would decide for it now, and the state it would move
// m to, writing nothing. The sighting /ipxe would merge first changes
// nothing planBoot decides by: the state and the match.
func peek(m store.Machine, p store.Provisioning, res profiles.Result, wipe *profiles.Profile) (bootPlan, store.State) {
	var plan bootPlan
	_, _ = planBoot(res, wipe, "", "", time.Now().UTC(), &plan)(&m, &p) // it never fails
	return plan, m.State
}

// serveConfig is the Change of a config fetch: which profile's config it
// gets, by planBoot's decision on the state it is given (the profile the
// session's script booted: the wipe profile while the machine is being
// wiped), written to served; ErrNoConfig unless that profile has a config
// of the kind asked for (ignition or not); then admit (admitConfig) judges
// and counts the fetch.
func serveConfig(res profiles.Result, wipe *profiles.Profile, ignition bool, admit store.Change, served *profiles.Result) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		res := res
		if plan, _ := peek(*m, *p, res, wipe); !plan.local {
			res.Profile = plan.profile
		}
		*served = res
		if kind, _ := res.Profile.Config.Source(); kind == profiles.ConfigNone || kind.Ignition() != ignition {
			return nil, fmt.Errorf("profile %s: %w", res.Profile.Name, ErrNoConfig)
		}
		return admit(m, p)
	}
}

// configAsk is what a config request presents to admitConfig.
type configAsk struct {
	token string // the session token it carries; "" for none
	// proven: its source address showed it is the machine (Request.proven),
	// which a tokenless session requires of a request without a token.
	proven bool
	// mint is the token a tokenless session's first fetch is given, made
	// before the Change, which may run more than once.
	mint string
	// ip is the proven request's address. A UKI machine shows provisiond no
	// address before this fetch (its DHCP has none yet, and nothing else
	// comes over HTTP), so the fetch that mints records it.
	ip string
}

// admission is admitConfig's verdict: refused is the refusal reason, ""
// when served; token is the session token the served config carries.
type admission struct {
	refused string
	token   string
}

// admitConfig checks a config request against the machine's session and, if it
// passes, counts the fetch; a tokenless session's first fetch also gets its
// token then (ask.mint). A refusal is recorded as an event and reported in
// out; it is not an error, so the event commits.
func admitConfig(ask configAsk, pol Policy, now time.Time, out *admission) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		*out = admission{refused: admit(*p, ask, pol), token: ask.token}
		if out.refused != "" {
			return nil, nil // recorded by the caller, aggregated (see refuse)
		}
		if ask.token == "" && p.Tokenless {
			p.TokenHash, out.token = hashToken(ask.mint), ask.mint
			m.LastIP = cmp.Or(ask.ip, m.LastIP)
		}
		if p.ConfigServed.IsZero() {
			p.ConfigServed = now
		}
		p.ConfigFetches++
		return []store.Event{{Type: EventConfigServed, Message: "config of profile " + p.Profile + " served", Actor: "system",
			Fields: map[string]string{"profile": p.Profile, "fetch": fmt.Sprint(p.ConfigFetches)}}}, nil
	}
}

// admit judges a config request against the machine's session: "" to
// serve it, else the refusal reason.
//
// A tokenless session (a signed UKI's, uki.go) serves a request without a
// token only from the machine itself, proven by its address whatever the
// Policy relaxes, and only once: that fetch mints the token its config
// carries, so a refetch must present it. With a token, such a session is
// judged like any other.
func admit(p store.Provisioning, ask configAsk, pol Policy) string {
	switch {
	case p.TokenHash == "":
		return ReasonNoSession
	case ask.token == "" && p.Tokenless && (!ask.proven || ask.mint == ""):
		return ReasonNoToken
	case ask.token == "" && p.Tokenless && p.ConfigFetches > 0:
		return ReasonRefetch
	case ask.token == "" && p.Tokenless:
		return ""
	case ask.token == "" && !pol.AllowConfigWithoutToken:
		return ReasonNoToken
	case ask.token != "" && !tokenMatches(ask.token, p.TokenHash):
		return ReasonBadToken
	case p.ConfigFetches > 0 && !pol.AllowConfigRefetch:
		return ReasonRefetch
	}
	return ""
}

// What a refusal refuses, besides "script" and "config": the requests a
// machine's own session authorises.
const (
	whatPhoneHome = "phone-home"
	whatReport    = "hardware-report"
)

// refusal is the event for a refused script, config, phone-home or
// hardware report.
func refusal(what, reason string) store.Event {
	typ := EventConfigRefused
	switch what {
	case "script":
		typ = EventScriptRefused
	case whatPhoneHome:
		typ = EventPhoneHomeDeny
	case whatReport:
		typ = EventReportRefused
	}
	return store.Event{Type: typ, Message: what + " refused: " + reason, Actor: "system", Fields: map[string]string{"reason": reason}}
}

// sessionActor judges, inside a machine's transaction, a request its own
// session must authorise (phone-home, hardware report): the actor it acts
// as ("api" for the operator's token, else "machine"), and whether it may.
// The machine must still present its session's token: a check made before
// the transaction may have raced a new session.
func sessionActor(token string, viaAPI bool, p store.Provisioning) (string, bool) {
	if viaAPI {
		return "api", true
	}
	return "machine", tokenMatches(token, p.TokenHash)
}

// installed closes the session on phone-home: provisioning becomes installed and
// wiping becomes wiped. viaAPI is an operator with the API token; otherwise
// the machine must present its session token. A bad token is reported in
// *denied and changes nothing; the caller records it.
func installed(token, note string, viaAPI bool, now time.Time, denied *bool) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		actor, ok := sessionActor(token, viaAPI, *p)
		*denied = !ok
		if !ok {
			return nil, nil
		}
		var to store.State
		switch m.State {
		case store.StateProvisioning:
			to = store.StateInstalled
		case store.StateWiping:
			to = store.StateWiped
		default:
			return nil, fmt.Errorf("%w: machine is %s, not provisioning or wiping", ErrState, m.State)
		}
		from := m.State
		m.State = to
		p.TokenHash, p.Installed = "", now
		msg := fmt.Sprintf("%s -> %s by phone-home", from, to)
		if note != "" {
			msg += ": " + note
		}
		return []store.Event{{Type: EventInstalled, Message: msg, Actor: actor}}, nil
	}
}

// reprovision sends a machine claimed by a Machine back to provisioning; its
// next /ipxe serves the install script again under a new session. Any open
// session is closed so that its token stops working.
func reprovision(actor, reason string) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		if m.State == store.StateDiscovered {
			return nil, fmt.Errorf("%w: no Machine in the profiles claims it; add one before reprovisioning", ErrState)
		}
		return []store.Event{transition(m, p, store.StateProvisioning, EventReprovision, actor, reason)}, nil
	}
}

// wipe sends a machine to the wipe profile: its next /ipxe boots that, and
// its phone-home makes it wiped. Any open session is closed.
func wipe(actor, reason string) store.Change {
	return func(m *store.Machine, p *store.Provisioning) ([]store.Event, error) {
		return []store.Event{transition(m, p, store.StateWiping, EventWipe, actor, reason)}, nil
	}
}

// transition moves m to state on an operator's request, closing any open
// session, and returns the event saying so.
func transition(m *store.Machine, p *store.Provisioning, to store.State, typ, actor, reason string) store.Event {
	msg := fmt.Sprintf("%s -> %s", m.State, to)
	if reason != "" {
		msg += ": " + reason
	}
	m.State = to
	p.TokenHash = ""
	return store.Event{Type: typ, Message: msg, Actor: actor}
}

// powerSeen records the power state a BMC reported.
func powerSeen(state string, now time.Time) store.Change {
	return func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
		m.Power, m.PowerAt = state, now
		return nil, nil
	}
}
