package dhcp

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Mode says whether the server hands out addresses.
type Mode string

// The modes of serve --dhcp-mode.
const (
	// ModeProxy answers PXE and HTTP Boot clients with boot information
	// only, beside the site's DHCP server (the default).
	ModeProxy Mode = "proxy"
	// ModeAuthoritative is the network's only DHCP server: it hands out
	// addresses from the profiles' Networks to every client, with boot
	// information for the network boot clients the Booter boots.
	ModeAuthoritative Mode = "authoritative"
)

// Addresses hands out the addresses of an authoritative server;
// internal/leases implements it over the store. link names the network a
// packet belongs to: giaddr when relayed, else the client's ciaddr when it
// renews, else the server's own address on the interface it arrived on.
type Addresses interface {
	// Offer picks the address for mac on link's network: its reservation,
	// the address it holds, requested when that is free, else a free one
	// from the range. It writes nothing durable. ErrNoNetwork when link is
	// in no Network; ErrExhausted when the range has no free address.
	// Concurrent DISCOVERs from different MACs should not all be offered
	// the same free address (remember recent offers in memory for a few
	// seconds), or all but one of their REQUESTs are NAKed and start over.
	Offer(ctx context.Context, link netip.Addr, mac string, requested netip.Addr) (Assignment, error)
	// Ack makes ip mac's lease on link's network, durably, before the ACK
	// is sent. ErrRefused (answer NAK) when ip is not mac's to have there:
	// outside the network, reserved for another MAC, or held by another;
	// ErrNoNetwork when link is in no Network (stay silent). It serves
	// every REQUEST state: SELECTING (ip from option 54's OFFER), INIT-REBOOT
	// (a remembered address, maybe from another network: refuse it) and
	// RENEWING/REBINDING (link and ip are the client's ciaddr unless relayed).
	Ack(ctx context.Context, link netip.Addr, mac string, ip netip.Addr) (Assignment, error)
	// Network returns the options of link's network, with no IP: all a
	// DHCPINFORM, from a host with an address of its own, is answered
	// with. It picks and holds no address, so a full range still answers.
	// ErrNoNetwork when link is in no Network.
	Network(ctx context.Context, link netip.Addr) (Assignment, error)
	// Release frees ip if mac holds it (DHCPRELEASE). ErrRefused when mac
	// holds no lease of ip (a forged or late RELEASE): nothing changes.
	Release(ctx context.Context, mac string, ip netip.Addr) error
	// Decline marks ip, which mac held, as in use by someone else
	// (DHCPDECLINE): no one gets it for a while. ErrRefused as Release.
	Decline(ctx context.Context, mac string, ip netip.Addr) error
}

// Assignment is an address with what its Network tells the client.
type Assignment struct {
	IP        netip.Addr
	Network   string       // the Network's name, for logs
	Subnet    netip.Prefix // gives the subnet mask (option 1)
	Router    netip.Addr   // option 3; invalid: none
	DNS       []netip.Addr // option 6
	LeaseTime time.Duration
}

// Errors of Addresses. Any other error (a store outage) makes the server
// stay silent: a client is never NAKed because the store is down.
var (
	ErrNoNetwork = errors.New("no network for this link")
	ErrExhausted = errors.New("no free address in the range")
	ErrRefused   = errors.New("address refused")
)
