// Package dhcp is provisiond's DHCP server. Its job is to answer PXE and UEFI HTTP Boot
// clients with boot file information, in one of two modes:
//   - proxy (the default): it never hands out addresses, so it runs beside the site's
//     own DHCP server;
//   - authoritative: it is the network's only DHCP server and hands every client an
//     address from Addresses, with the boot information for the clients the Booter boots.
//
// It listens on UDP 67 and on UDP 4011, where EDK2 and iPXE send their PXE boot-server
// REQUESTs. A packet is parsed, classified once (Classify; readLease in authoritative
// mode), offered to the Booter, and answered with a reply built by a pure function
// (Decide; leaseReply and nakReply in authoritative mode).
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"

	"github.com/provisiond/provisiond/internal/ipxe"
)

// Booter is the policy the responder asks before answering; cmd/provisiond adapts the
// boot core to it.
type Booter interface {
	// BootPXE records that this PXE client was seen (MAC, UUID, arch, time) and reports
	// whether provisiond will boot it (Boot false: stay silent, another PXE server may
	// own it).
	BootPXE(ctx context.Context, c Client) (Verdict, error)
}

// Verdict is the Booter's answer about one client.
type Verdict struct {
	Boot bool
	// Machine names the client in the reply's log line (the Machine it matched), so a
	// boot can be followed from DHCP on; "" when it matched none.
	Machine string
	// Loader is what the machine's profile boots through: "" for iPXE,
	// LoaderShim for Secure Boot (UEFI x86-64 PXE clients get shimx64.efi
	// over TFTP), LoaderUKI (UEFI HTTP Boot clients get the UKI's URL
	// as their boot file).
	Loader string
	// UKI is the http(s) URL of the profile's unified kernel image, for
	// LoaderUKI.
	UKI string
}

// The loaders a Verdict may name besides iPXE.
const (
	LoaderShim = "shim"
	LoaderUKI  = "uki"
)

// Outcome is what became of one packet, for metrics: a small fixed set.
type Outcome string

// The outcomes.
const (
	OutcomeOffer     Outcome = "offer"     // an OFFER was sent
	OutcomeAck       Outcome = "ack"       // an ACK was sent
	OutcomeIgnored   Outcome = "ignored"   // not a network boot client, or not for this port, server or network
	OutcomeDeclined  Outcome = "declined"  // the Booter said another server owns the client (proxy mode)
	OutcomeMalformed Outcome = "malformed" // not a DHCP packet
	OutcomeError     Outcome = "error"     // the Booter or Addresses failed, or the reply could not be built or sent

	// Authoritative mode only.
	OutcomeNak       Outcome = "nak"       // a NAK was sent: the address asked for is not the client's
	OutcomeRelease   Outcome = "release"   // a DHCPRELEASE was honoured
	OutcomeDecline   Outcome = "decline"   // a DHCPDECLINE was honoured (the address is in use by someone else)
	OutcomeInform    Outcome = "inform"    // a DHCPINFORM got its ACK
	OutcomeExhausted Outcome = "exhausted" // no free address for the client's network: no OFFER
)

// Handled is what Config.OnPacket learns about one packet. It holds nothing that
// identifies the client, so a metric built from it stays bounded.
type Handled struct {
	// Arch is the client's architecture as iana names it ("EFI x86-64"; "unknown" for
	// an unassigned number), "" when the packet was not classified.
	Arch    string
	Outcome Outcome
}

// Config configures a Server.
type Config struct {
	// Mode is ModeProxy ("" too) or ModeAuthoritative.
	Mode Mode
	// Addresses hands out the addresses in ModeAuthoritative, where it is required.
	Addresses Addresses
	// Interface is the network interface to answer on (SO_BINDTODEVICE); ListenAndServe needs it.
	Interface string
	// ServerIP is this server's IPv4 address on Interface: siaddr (next server) and option 54.
	// Nil: New looks it up on Interface.
	ServerIP net.IP
	// AdvertiseURL is the base URL clients reach provisiond's HTTP server at,
	// e.g. http://10.99.0.2:8080. iPXE gets <AdvertiseURL>/boot.ipxe, UEFI HTTP Boot
	// <AdvertiseURL>/nbp/<program>.
	AdvertiseURL string
	// Booter decides which network boot clients get boot information (in proxy mode:
	// which are answered at all); nil boots every one.
	Booter Booter
	// Binder learns who uses which address from every DISCOVER and REQUEST,
	// answered or not, and in authoritative mode from every ACK it sends (then the
	// only source of addresses on port 67); nil: nothing is learned.
	Binder Binder
	// Logger receives one info line per reply and debug lines for ignored packets; nil discards.
	Logger *slog.Logger
	// OnPacket, if set, is called once for every packet read, with what became of it,
	// e.g. to feed metrics. It must not block.
	OnPacket func(Handled)
}

// longestBootFile is the longest suffix Decide appends to AdvertiseURL.
const longestBootFile = "/nbp/" + ipxe.IPXEEFI

// validate checks cfg and returns it with the defaults filled in.
func (cfg Config) validate() (Config, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeProxy
	}
	if err := cfg.Mode.Check(); err != nil {
		return cfg, fmt.Errorf("dhcp config: %w", err)
	}
	if cfg.Mode == ModeAuthoritative && cfg.Addresses == nil {
		return cfg, errors.New("dhcp config: authoritative mode needs Addresses to hand out")
	}
	if cfg.ServerIP == nil && cfg.Interface != "" {
		ip, err := InterfaceIPv4(cfg.Interface)
		if err != nil {
			return cfg, err
		}
		cfg.ServerIP = ip
	}
	if cfg.ServerIP.To4() == nil {
		return cfg, fmt.Errorf("dhcp config: server IP %v is not an IPv4 address", cfg.ServerIP)
	}
	cfg.ServerIP = cfg.ServerIP.To4()

	u, err := url.Parse(cfg.AdvertiseURL)
	if err != nil {
		return cfg, fmt.Errorf("dhcp config: advertise URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("dhcp config: advertise URL %q is not an absolute http(s) URL", cfg.AdvertiseURL)
	}
	// Boot URLs travel in the 128-byte BOOTP file field.
	if n := len(cfg.AdvertiseURL) + len(longestBootFile); n > maxFileLen {
		return cfg, fmt.Errorf("dhcp config: advertise URL %q is too long: boot URLs would be %d bytes, the file field holds %d", cfg.AdvertiseURL, n, maxFileLen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// InterfaceIPv4 returns the first global unicast IPv4 address of the named interface:
// the address PXE clients on that link reach this server at.
func InterfaceIPv4(name string) (net.IP, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("dhcp interface %q: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("dhcp interface %q: addresses: %w", name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip := ipn.IP.To4(); ip != nil && ip.IsGlobalUnicast() {
			return ip, nil
		}
	}
	return nil, fmt.Errorf("dhcp interface %q: %w", name, ErrNoIPv4)
}

// ErrNoIPv4 reports an interface without an address to advertise as the server.
var ErrNoIPv4 = errors.New("no global unicast IPv4 address")
