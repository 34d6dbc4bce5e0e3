// Package profiles loads, validates, indexes and renders a profiles directory: the
// Git-kept YAML that says which Machine gets which Profile and what config it is served,
// and, for authoritative DHCP, the address plans (Networks) and reservations (Machine ip).
//
// Everything expensive happens in Load: YAML parsing, template parsing, rendering every
// Machine's config and translating Butane to Ignition. A *Set is immutable once returned,
// so a server can swap it atomically and answer requests with map lookups only. The
// package is pure: no sockets, no state store.
package profiles
