package profiles

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// ErrNoMatch means no Machine matches a query and there is no Default.
var ErrNoMatch = errors.New("no machine matches and there is no Default")

// Set is one validated, rendered profiles directory. It is immutable once Load
// returns it, so it may be shared by any number of goroutines.
type Set struct {
	Dir      string
	LoadedAt time.Time
	Profiles map[string]*Profile
	Machines []*Machine
	Default  *Default
	// Warnings are findings that do not stop the set from loading, such as a
	// Machine whose config can never be served.
	Warnings Problems

	byName   map[string]*Machine
	byMAC    map[string]*Machine // validation refuses two Machines claiming one MAC
	byUUID   map[string]*Machine
	bySerial map[string]*Machine
	// labelled are the machines matched by labels and/or hardware facts
	// rather than an identity, most criteria first.
	labelled    []*Machine
	hasLabelled bool // one of them has match.labels
	// hardwareMatched: some Machine matches on serial or hardware facts.
	hardwareMatched bool

	networks     []*Network            // by name
	reservations map[string]netip.Addr // canonical MAC -> Machine.IPAddr

	configs map[*Machine]*Rendered
	render  *renderer
}

// Query is what a machine tells us about itself. MAC and UUID must be canonical
// (see package ident); either may be empty.
type Query struct {
	MAC    string
	UUID   string
	Labels map[string]string
	// Hardware is what the machine's inspection last reported, from the
	// inventory (never from the request); nil when it was never inspected.
	// Machines match its serial and facts, and templates see it as .hardware.
	Hardware *store.Hardware
}

// Result is the outcome of matching a Query.
type Result struct {
	Machine *Machine // nil when the Default profile applies
	Profile *Profile
	Reason  string // why this Machine or the Default was chosen, for humans
}

// Match finds the most specific Machine for q: one matched by MAC, UUID or
// serial beats one matched by labels and hardware facts alone, and more of
// those beat fewer. A Machine matches only if every criterion it gives
// matches. Without a match, the Default profile applies; without a Default,
// ErrNoMatch.
func (s *Set) Match(q Query) (Result, error) {
	var best *Machine
	bestScore := -1
	hw := &hardwareFacts{h: q.Hardware}
	consider := func(m *Machine) {
		if m == nil {
			return
		}
		if sc, ok := score(m, q, hw); ok && (sc > bestScore || sc == bestScore && m.Name < best.Name) {
			best, bestScore = m, sc
		}
	}
	if q.MAC != "" {
		consider(s.byMAC[q.MAC])
	}
	if q.UUID != "" {
		consider(s.byUUID[q.UUID])
	}
	if serial := serialOf(q.Hardware); serial != "" {
		consider(s.bySerial[serial])
	}
	if best == nil {
		// Sorted most criteria first: the first match is the most specific.
		for _, m := range s.labelled {
			if _, ok := score(m, q, hw); ok {
				best = m
				break
			}
		}
	}
	if best != nil {
		return Result{Machine: best, Profile: s.Profiles[best.Profile], Reason: "machine " + best.Name + " (" + best.Pos.String() + ") matches " + describeMatch(best.Match)}, nil
	}
	if s.Default != nil {
		return Result{Profile: s.Profiles[s.Default.Profile], Reason: "no machine matches; Default (" + s.Default.Pos.String() + ") applies"}, nil
	}
	return Result{}, ErrNoMatch
}

// Machine returns the Machine called name, or nil.
func (s *Set) Machine(name string) *Machine { return s.byName[name] }

// Select returns the Machines whose labels (AllLabels) include every label in sel,
// in name order. An empty sel selects none: a bulk action over everything
// must be asked for by name, not by accident.
func (s *Set) Select(sel map[string]string) []*Machine {
	if len(sel) == 0 {
		return nil
	}
	var out []*Machine
	for _, m := range s.Machines {
		if HasLabels(m.AllLabels(), sel) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// HasLabels reports whether have holds every key=value of want.
func HasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// HasLabelled reports whether some Machine is selected by labels without an
// identity, so a request that brings no labels (a DHCP packet) cannot be
// ruled out.
func (s *Set) HasLabelled() bool { return s.hasLabelled }

// MatchesHardware reports whether some Machine matches on a serial or
// hardware facts, so that a Query needs the machine's stored hardware.
func (s *Set) MatchesHardware() bool { return s.hardwareMatched }

// score reports whether m matches q, whose hardware facts are hw, and how
// specifically: an identity (MAC, UUID or serial) outweighs any number of
// labels and facts.
func score(m *Machine, q Query, hw *hardwareFacts) (int, bool) {
	sc := 0
	if m.Match.MAC != "" {
		if m.Match.MAC != q.MAC {
			return 0, false
		}
		sc += 1000
	}
	if m.Match.UUID != "" {
		if m.Match.UUID != q.UUID {
			return 0, false
		}
		sc += 1000
	}
	if m.Match.Serial != "" {
		if m.Match.Serial != serialOf(q.Hardware) {
			return 0, false
		}
		sc += 1000
	}
	for k, v := range m.Match.Labels {
		if q.Labels[k] != v {
			return 0, false
		}
		sc++
	}
	for k, v := range m.Match.Hardware {
		if got, ok := hw.get(k); !ok || got != v {
			return 0, false
		}
		sc++
	}
	return sc, true
}

func describeMatch(m Match) string {
	var parts []string
	if m.MAC != "" {
		parts = append(parts, "mac "+m.MAC)
	}
	if m.UUID != "" {
		parts = append(parts, "uuid "+m.UUID)
	}
	if m.Serial != "" {
		parts = append(parts, "serial "+m.Serial)
	}
	if len(m.Labels) > 0 {
		parts = append(parts, "labels "+labelKey(m.Labels))
	}
	if len(m.Hardware) > 0 {
		parts = append(parts, "hardware "+labelKey(m.Hardware))
	}
	return strings.Join(parts, " and ")
}

// labelKey is a canonical string form of a label set.
func labelKey(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

func sortLabelled(ms []*Machine) {
	criteria := func(m *Machine) int { return len(m.Match.Labels) + len(m.Match.Hardware) }
	sort.Slice(ms, func(i, j int) bool {
		if criteria(ms[i]) != criteria(ms[j]) {
			return criteria(ms[i]) > criteria(ms[j])
		}
		return ms[i].Name < ms[j].Name
	})
}
