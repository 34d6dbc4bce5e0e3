package main

import (
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// `provisiond leases`: the authoritative DHCP server's leases, through the API.

func leasesCommand() *command {
	return &command{
		name:    "leases",
		summary: "list the addresses the authoritative DHCP server handed out, through the daemon's API",
		about: "Lists every lease of serve --dhcp-mode authoritative, ordered by address: the\n" +
			"holder's MAC, the Network it is from, and its state: active (held until\n" +
			"EXPIRES), expired (free again, offered first to its last holder) or declined\n" +
			"(a client reported the address in use; no one gets it until EXPIRES).",
		examples: []string{
			"provisiond leases",
			"provisiond leases --state active -o json | jq -r '.leases[].ip'",
		},
		flags: func(fs *flagSet, c *cli) func([]string) error {
			cf := addClientFlags(fs, c)
			state := fs.String("state", "", "only leases in `STATE`: active, expired or declined")
			return func(pos []string) error { return runLeases(c, cf, *state, pos) }
		},
	}
}

func runLeases(c *cli, cf *clientFlags, state string, pos []string) error {
	if len(pos) != 0 {
		return usagef("leases takes no arguments, got %q", pos)
	}
	switch state {
	case "", api.LeaseActive, api.LeaseExpired, api.LeaseDeclined:
	default:
		return usagef("--state %q: want active, expired or declined", state)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	var a struct{ Leases []api.Lease }
	b, err := cl.get("/leases", q, &a)
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	return printListing(c, cf, b, len(a.Leases), "leases", func(w io.Writer) error { return leaseTable(w, a.Leases, time.Now()) })
}

// leaseTable prints leases as IP MAC NETWORK STATE EXPIRES.
func leaseTable(w io.Writer, ls []api.Lease, now time.Time) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "IP\tMAC\tNETWORK\tSTATE\tEXPIRES")
	for _, l := range ls {
		mac := l.MAC
		if mac == "" {
			mac = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", tableCell(l.IP), tableCell(mac), tableCell(l.Network), tableCell(l.State), untilString(l.Expires, now))
	}
	return tw.Flush()
}

// untilString is t in local time with how far ahead of now it is ("in
// 42m"), or its age once past.
func untilString(t, now time.Time) string {
	if !t.After(now) {
		return timeWithAge(t, now)
	}
	d := t.Sub(now).Round(time.Second)
	return fmt.Sprintf("%s (in %s)", t.Local().Format(time.RFC3339), d)
}
