package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// LeaseLister is what GET /leases lists: the authoritative DHCP server's
// leases, from the store every instance shares.
type LeaseLister interface {
	AllLeases(ctx context.Context) ([]store.Lease, error)
}

// The states of a listed lease.
const (
	LeaseActive   = "active"   // held by its MAC until Expires
	LeaseExpired  = "expired"  // free again; kept so a returning MAC gets its address back
	LeaseDeclined = "declined" // a client reported the address in use; no one gets it until Expires
)

// Lease is one address in GET /leases.
type Lease struct {
	IP      string    `json:"ip"`
	MAC     string    `json:"mac,omitempty"`
	Network string    `json:"network"`
	State   string    `json:"state"`
	Expires time.Time `json:"expires"`
	Updated time.Time `json:"updated"`
}

// leaseJSON is l as listed at now.
func leaseJSON(l store.Lease, now time.Time) Lease {
	state := LeaseActive
	switch {
	case l.Declined:
		state = LeaseDeclined
	case !now.Before(l.Expires):
		state = LeaseExpired
	}
	return Lease{IP: l.IP, MAC: l.MAC, Network: l.Network, State: state, Expires: l.Expires, Updated: l.Updated}
}

var errNoLeases = errors.New("this provisiond lists no leases")

// leases lists every lease, ordered by address; ?state= keeps one state.
func (a *api) leases(ls LeaseLister) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ls == nil {
			writeError(w, http.StatusNotImplemented, errNoLeases)
			return
		}
		want := r.URL.Query().Get("state")
		switch want {
		case "", LeaseActive, LeaseExpired, LeaseDeclined:
		default:
			writeError(w, http.StatusBadRequest, errors.New("state: want active, expired or declined"))
			return
		}
		all, err := ls.AllLeases(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		now := time.Now()
		out := make([]Lease, 0, len(all))
		for _, l := range all {
			if j := leaseJSON(l, now); want == "" || j.State == want {
				out = append(out, j)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"leases": out})
	}
}
