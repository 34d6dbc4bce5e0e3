package api

import (
	"maps"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// The Machines in Git are listed and shown before they boot, in state
// declared, and ?state=declared selects them; once one boots, its record
// takes its place. Every answer is checked against openapi.yaml.
func TestDeclaredMachines(t *testing.T) {
	f := newFixture(t)
	list := decode[MachineList](t, f.mustCall(t, "GET", "/machines", "", 200))
	if len(list.Machines) != 2 {
		t.Fatalf("GET /machines = %+v; want node1 and rack, declared", list)
	}
	node1, rack := list.Machines[0], list.Machines[1]
	if node1.Machine != "node1" || node1.MAC != "52:54:00:00:00:01" || node1.State != store.StateDeclared || node1.Profile != "install" || !node1.LastSeen.IsZero() {
		t.Errorf("node1 = %+v; want it declared with its MAC and profile, never seen", node1)
	}
	if rack.Machine != "rack" || rack.MAC != "" || rack.State != store.StateDeclared || !maps.Equal(rack.Labels, map[string]string{"rack": "r1"}) {
		t.Errorf("rack = %+v; want it declared with no MAC and its match labels", rack)
	}
	body := f.mustCall(t, "GET", "/machines/rack", "", 200)
	if strings.Contains(body, "first_seen") || strings.Contains(body, "provisioning") {
		t.Errorf("GET /machines/rack = %s; want no first_seen and no provisioning", body)
	}
	if m := decode[Machine](t, f.mustCall(t, "GET", "/machines/52-54-00-00-00-01", "", 200)); m.Machine != "node1" || m.State != store.StateDeclared {
		t.Errorf("GET node1 by MAC = %+v; want it declared", m)
	}

	f.boot(t, boot.Request{MAC: "52:54:00:00:00:01"})
	if got := decode[MachineList](t, f.mustCall(t, "GET", "/machines?state=declared", "", 200)); len(got.Machines) != 1 || got.Machines[0].Machine != "rack" {
		t.Fatalf("?state=declared after node1 booted = %+v; want rack alone", got)
	}
	all := decode[MachineList](t, f.mustCall(t, "GET", "/machines", "", 200))
	if len(all.Machines) != 2 || all.Machines[0].State != store.StateProvisioning || all.Machines[0].FirstSeen.IsZero() {
		t.Fatalf("GET /machines after node1 booted = %+v; want node1's record in place of its declared entry", all)
	}
	m := decode[Machine](t, f.mustCall(t, "GET", "/machines/node1", "", 200))
	if m.State != store.StateProvisioning || m.Provisioning == nil || !m.Provisioning.SessionOpen {
		t.Fatalf("GET /machines/node1 after its boot = %+v; want its record and session", m)
	}
}

// A machine Git declares but that never booted has no record to send back:
// reprovision and wipe say so (409) and how to get one; an id nothing knows
// stays 404.
func TestDeclaredSendBack409(t *testing.T) {
	f := newFixture(t)
	body := f.mustCall(t, "POST", "/machines/node1/reprovision", `{}`, 409)
	if !strings.Contains(body, "node1 was never seen") || !strings.Contains(body, "power it on first") {
		t.Errorf("reprovision of a declared machine: %s", body)
	}
	f.mustCall(t, "POST", "/machines/ghost/reprovision", `{}`, 404)
}
