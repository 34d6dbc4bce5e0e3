package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// leaseList is a LeaseLister over fixed leases, or failing with err.
type leaseList struct {
	leases []store.Lease
	err    error
}

func (l leaseList) AllLeases(context.Context) ([]store.Lease, error) { return l.leases, l.err }

func TestLeases(t *testing.T) {
	now := time.Now().UTC()
	list := leaseList{leases: []store.Lease{
		{IP: "10.99.0.100", MAC: "52:54:00:00:00:01", Network: "prov", Expires: now.Add(time.Hour), Updated: now},
		{IP: "10.99.0.101", MAC: "52:54:00:00:00:02", Network: "prov", Expires: now.Add(-time.Minute), Updated: now.Add(-time.Hour)},
		{IP: "10.99.0.102", Network: "prov", Declined: true, Expires: now.Add(10 * time.Minute), Updated: now},
	}}
	f := serveAPI(t, Config{Leases: list, Token: apiToken})

	for _, c := range []struct {
		query string
		want  []string // ip/state
	}{
		{"", []string{"10.99.0.100/active", "10.99.0.101/expired", "10.99.0.102/declined"}},
		{"?state=active", []string{"10.99.0.100/active"}},
		{"?state=expired", []string{"10.99.0.101/expired"}},
		{"?state=declined", []string{"10.99.0.102/declined"}},
	} {
		code, body := f.call(t, http.MethodGet, "/leases"+c.query, apiToken, "")
		if code != http.StatusOK {
			t.Fatalf("GET /leases%s = %d %s", c.query, code, body)
		}
		var a struct{ Leases []Lease }
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range a.Leases {
			got = append(got, l.IP+"/"+l.State)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("GET /leases%s = %v, want %v", c.query, got, c.want)
		}
	}

	if code, body := f.call(t, http.MethodGet, "/leases?state=mine", apiToken, ""); code != http.StatusBadRequest {
		t.Errorf("unknown state: %d %s, want 400", code, body)
	}
	if code, _ := f.call(t, http.MethodGet, "/leases", "", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", code)
	}
	if code, _ := f.call(t, http.MethodGet, "/leases", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("with a wrong token: %d, want 401", code)
	}

	down := serveAPI(t, Config{Leases: leaseList{err: fmt.Errorf("list leases: %w", store.ErrUnavailable)}, Token: apiToken})
	if code, body := down.call(t, http.MethodGet, "/leases", apiToken, ""); code != http.StatusServiceUnavailable {
		t.Errorf("store down: %d %s, want 503", code, body)
	}
	none := serveAPI(t, Config{Token: apiToken})
	if code, body := none.call(t, http.MethodGet, "/leases", apiToken, ""); code != http.StatusNotImplemented {
		t.Errorf("no lister: %d %s, want 501", code, body)
	}
}
