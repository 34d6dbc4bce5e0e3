package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// The lease table shows each address with its holder, state and expiry
// ahead or past, and a declined address with no holder.
func TestLeaseTable(t *testing.T) {
	now := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	err := leaseTable(&b, []api.Lease{
		{IP: "10.99.0.100", MAC: "52:54:00:00:00:01", Network: "prov", State: api.LeaseActive, Expires: now.Add(42 * time.Minute)},
		{IP: "10.99.0.101", Network: "prov", State: api.LeaseDeclined, Expires: now.Add(10 * time.Minute)},
		{IP: "10.99.0.102", MAC: "52:54:00:00:00:02", Network: "prov", State: api.LeaseExpired, Expires: now.Add(-2 * time.Hour)},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"IP", "MAC", "NETWORK", "STATE", "EXPIRES"},
		{"10.99.0.100", "52:54:00:00:00:01", "prov", "active", "(in 42m0s)"},
		{"10.99.0.101", "-", "prov", "declined", "(in 10m0s)"},
		{"10.99.0.102", "52:54:00:00:00:02", "prov", "expired", "(2h ago)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", b.String())
	}
	for i, w := range want {
		got := strings.Fields(lines[i])
		for j, cell := range w[:4] {
			if got[j] != cell {
				t.Errorf("line %d column %d = %q, want %q\n%s", i, j, got[j], cell, b.String())
			}
		}
		if !strings.HasSuffix(lines[i], strings.Join(strings.Fields(w[4]), " ")) && i > 0 {
			t.Errorf("line %d does not end in %q:\n%s", i, w[4], b.String())
		}
	}
}
