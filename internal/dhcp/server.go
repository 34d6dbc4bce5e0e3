package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"
)

const (
	// bootServerPort is where PXE clients send boot-server REQUESTs (PXE spec 2.1).
	bootServerPort = 4011
	// maxPacketSize is UDP's maximum: a datagram is never cut into something that parses.
	maxPacketSize = 1 << 16
	// maxInFlight bounds concurrent handlers (and Booter calls); when all are busy the
	// loop stops reading and the kernel socket buffer absorbs the burst.
	maxInFlight = 64
	// booterTimeout keeps a stuck Booter from holding a handler; a PXE ROM's first
	// DISCOVER waits 4 s, so an answer later than this is of no use anyway.
	booterTimeout = 3 * time.Second
	// addressesTimeout bounds one Addresses call the same way: a client
	// retransmits long before a store that slow answers.
	addressesTimeout = 3 * time.Second
	// readBuffer is the socket receive buffer asked for, sized for a boot storm.
	readBuffer = 4 << 20
)

// service says which port a packet arrived on; the two differ in what they accept and
// where the reply goes.
type service int

const (
	serviceDHCP       service = iota // UDP 67
	serviceBootServer                // UDP 4011
)

func (s service) String() string {
	if s == serviceBootServer {
		return "boot-server"
	}
	return "dhcp"
}

// ports are the destination ports of replies; tests move them off the privileged ones.
type ports struct {
	client int // 68: where clients listen
	relay  int // 67: where relay agents listen
}

// Server answers PXE and UEFI HTTP Boot clients, and in authoritative mode every DHCP
// client. It is safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ports ports
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		ports: ports{client: dhcpv4.ClientPort, relay: dhcpv4.ServerPort},
	}, nil
}

// ListenAndServe answers on UDP 67 and 4011 of cfg.Interface until ctx is done.
// The sockets are bound to 0.0.0.0 with SO_BINDTODEVICE: Linux does not deliver broadcast
// DISCOVERs to a socket bound to a unicast address.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if s.cfg.Interface == "" {
		return errors.New("dhcp listen: no interface configured")
	}
	dhcpConn, err := s.listen(dhcpv4.ServerPort)
	if err != nil {
		return err
	}
	defer dhcpConn.Close()
	bootConn, err := s.listen(bootServerPort)
	if err != nil {
		return err
	}
	defer bootConn.Close()

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Serve(ctx, dhcpConn) })
	g.Go(func() error { return s.ServeBootServer(ctx, bootConn) })
	return g.Wait()
}

func (s *Server) listen(port int) (*net.UDPConn, error) {
	conn, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("dhcp listen on %s port %d: %w", s.cfg.Interface, port, err)
	}
	if err := conn.SetReadBuffer(readBuffer); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dhcp listen on %s port %d: read buffer: %w", s.cfg.Interface, port, err)
	}
	return conn, nil
}

// Serve answers DHCP (port 67 semantics) on conn until ctx is done, then returns nil
// once in-flight replies are sent. The caller owns conn.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	return s.serve(ctx, conn, serviceDHCP)
}

// ServeBootServer answers PXE boot-server REQUESTs (port 4011 semantics) on conn until
// ctx is done. The caller owns conn.
func (s *Server) ServeBootServer(ctx context.Context, conn net.PacketConn) error {
	return s.serve(ctx, conn, serviceBootServer)
}

func (s *Server) serve(ctx context.Context, conn net.PacketConn, svc service) error {
	// A past deadline wakes the blocked ReadFrom without closing the caller's conn.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()

	s.log.Info("dhcp listening", "service", svc.String(), "addr", conn.LocalAddr().String())
	sem := make(chan struct{}, maxInFlight)
	buf := make([]byte, maxPacketSize)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp %s: read: %w", svc, err)
		}
		pkt := bytes.Clone(buf[:n])
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.handle(ctx, conn, svc, pkt, peer)
		})
	}
}

// handle answers one packet, or logs why not, and reports what became of it.
func (s *Server) handle(ctx context.Context, conn net.PacketConn, svc service, pkt []byte, peer net.Addr) {
	h := s.answer(ctx, conn, svc, pkt, peer)
	if s.cfg.OnPacket != nil {
		s.cfg.OnPacket(h)
	}
}

// answer answers one packet, or logs why not. Every failure stays inside this packet.
func (s *Server) answer(ctx context.Context, conn net.PacketConn, svc service, pkt []byte, peer net.Addr) Handled {
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.log.Debug("dhcp ignored", "service", svc.String(), "peer", peer.String(), "reason", "malformed packet: "+err.Error())
		return Handled{Outcome: OutcomeMalformed}
	}
	if s.cfg.Binder != nil {
		if b, ok := s.observe(req, svc, peer); ok {
			s.cfg.Binder.Bind(ctx, b)
		}
	}
	if s.cfg.Mode == ModeAuthoritative && svc == serviceDHCP {
		return s.answerLease(ctx, conn, req, peer)
	}
	c, err := Classify(req)
	if err != nil {
		// Most broadcasts on the segment are not PXE: no logger is built
		// for them unless debug lines are wanted.
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("dhcp ignored", "service", svc.String(), "xid", req.TransactionID.String(), "mac", req.ClientHWAddr.String(), "reason", err.Error())
		}
		return Handled{Outcome: OutcomeIgnored}
	}
	h := Handled{Arch: c.Arch.String()}
	log := s.log.With("service", svc.String(), "xid", req.TransactionID.String(), "mac", req.ClientHWAddr.String(), "uuid", c.UUID, "arch", int(c.Arch))
	if err := accepts(svc, req, c, s.cfg.ServerIP); err != nil {
		log.Debug("dhcp ignored", "reason", err.Error())
		return h.with(OutcomeIgnored)
	}
	dst, err := replyAddr(svc, req, peer, s.ports)
	if err != nil {
		log.Debug("dhcp ignored", "reason", err.Error())
		return h.with(OutcomeIgnored)
	}
	v, err := s.boots(ctx, c)
	if err != nil {
		log.Error("dhcp booter failed, not answering", "machine", "", "err", err)
		return h.with(OutcomeError)
	}
	log = log.With("machine", v.Machine)
	if !v.Boot {
		log.Debug("dhcp ignored", "reason", "booter declined the client")
		return h.with(OutcomeDeclined)
	}
	reply, err := Decide(req, c, v, s.cfg)
	if err != nil {
		log.Error("dhcp reply not built", "err", err)
		return h.with(OutcomeError)
	}
	if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
		log.Warn("dhcp reply not sent", "dst", dst.String(), "err", err)
		return h.with(OutcomeError)
	}
	msg, out := "dhcp offer", OutcomeOffer
	if reply.MessageType() == dhcpv4.MessageTypeAck {
		msg, out = "dhcp ack", OutcomeAck
	}
	log.Info(msg, "file", reply.BootFileName, "dst", dst.String(), "ipxe", c.IPXE)
	return h.with(out)
}

// answerLease answers one packet on port 67 as the network's only DHCP server:
// every client gets an address, and a network boot client the Booter boots
// also its boot options. readLease and the reply builders decide; this only
// asks the Booter and Addresses in between, and sends.
func (s *Server) answerLease(ctx context.Context, conn net.PacketConn, req *dhcpv4.DHCPv4, peer net.Addr) Handled {
	var h Handled
	r, err := readLease(req, s.cfg.ServerIP)
	if err != nil {
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("dhcp ignored", "service", serviceDHCP.String(), "xid", req.TransactionID.String(), "mac", req.ClientHWAddr.String(), "reason", err.Error())
		}
		return h.with(OutcomeIgnored)
	}
	mac, uuid := req.ClientHWAddr.String(), clientUUID(req.GetOneOption(dhcpv4.OptionClientMachineIdentifier))
	log := s.log.With("service", serviceDHCP.String(), "xid", req.TransactionID.String(), "mac", mac, "uuid", uuid)
	if r.ip.IsValid() {
		log = log.With("ip", r.ip.String())
	}

	switch r.ask {
	case askRelease, askDecline:
		return s.forget(ctx, log, r, mac)
	}

	// Only a DISCOVER or REQUEST classifies: the rest gets no boot options.
	var boot []dhcpv4.Modifier
	if c, err := Classify(req); err == nil {
		h.Arch = c.Arch.String()
		log = log.With("arch", int(c.Arch))
		v, err := s.boots(ctx, c)
		if err != nil {
			// No address either: an address without its boot file would
			// leave the firmware with nothing to boot; it retries instead.
			log.Error("dhcp booter failed, not answering", "machine", "", "err", err)
			return h.with(OutcomeError)
		}
		log = log.With("machine", v.Machine)
		if v.Boot {
			if boot, err = bootOptions(req, c, v, s.cfg); err != nil {
				log.Error("dhcp boot options not built", "err", err)
				return h.with(OutcomeError)
			}
		}
	}

	actx, cancel := context.WithTimeout(ctx, addressesTimeout)
	defer cancel()
	var a Assignment
	switch r.ask {
	case askAck:
		a, err = s.cfg.Addresses.Ack(actx, r.link, mac, r.ip)
	case askInform:
		a, err = s.cfg.Addresses.Network(actx, r.link)
	default:
		a, err = s.cfg.Addresses.Offer(actx, r.link, mac, r.ip)
	}
	var reply *dhcpv4.DHCPv4
	switch {
	case err == nil:
		reply, err = leaseReply(req, a, boot, s.cfg.ServerIP)
	case r.ask == askAck && errors.Is(err, ErrRefused):
		// The client learns only that it was refused: the full reason may
		// name the address's holder, which is for the log alone.
		log.Info("dhcp request refused", "state", r.state, "link", r.link.String(), "err", err)
		reply, err = nakReply(req, s.cfg.ServerIP, ErrRefused.Error())
	case errors.Is(err, ErrNoNetwork):
		log.Debug("dhcp ignored", "reason", err.Error(), "link", r.link.String())
		return h.with(OutcomeIgnored)
	case errors.Is(err, ErrExhausted):
		log.Warn("dhcp no address to offer", "link", r.link.String(), "err", err)
		return h.with(OutcomeExhausted)
	default:
		// A store outage: silence, never a NAK the client would act on.
		log.Error("dhcp addresses failed, not answering", "state", r.state, "link", r.link.String(), "err", err)
		return h.with(OutcomeError)
	}
	if err != nil {
		log.Error("dhcp reply not built", "err", err)
		return h.with(OutcomeError)
	}
	if reply.MessageType() == dhcpv4.MessageTypeAck && r.ask == askAck && s.cfg.Binder != nil {
		// The ACK is the strongest binding there is: the address is now the client's.
		s.cfg.Binder.Bind(ctx, Binding{MAC: req.ClientHWAddr, UUID: uuid, IP: a.IP})
	}
	dst, err := leaseReplyAddr(req, reply, peer, s.ports)
	if err != nil {
		log.Debug("dhcp ignored", "reason", err.Error())
		return h.with(OutcomeIgnored)
	}
	if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
		log.Warn("dhcp reply not sent", "dst", dst.String(), "err", err)
		return h.with(OutcomeError)
	}
	msg, out := "dhcp offer", OutcomeOffer
	switch {
	case reply.MessageType() == dhcpv4.MessageTypeNak:
		log.Info("dhcp nak", "state", r.state, "dst", dst.String(), "reason", reply.Message())
		return h.with(OutcomeNak)
	case r.ask == askInform:
		msg, out = "dhcp inform", OutcomeInform
	case r.ask == askAck:
		msg, out = "dhcp ack", OutcomeAck
	}
	log.Info(msg, "yiaddr", reply.YourIPAddr.String(), "network", a.Network, "state", r.state, "file", reply.BootFileName, "dst", dst.String())
	return h.with(out)
}

// forget answers a RELEASE or DECLINE: Addresses learns of it, the client
// hears nothing (RFC 2131 4.3.3, 4.3.4).
func (s *Server) forget(ctx context.Context, log *slog.Logger, r leaseRequest, mac string) Handled {
	ctx, cancel := context.WithTimeout(ctx, addressesTimeout)
	defer cancel()
	what, out, call := "release", OutcomeRelease, s.cfg.Addresses.Release
	if r.ask == askDecline {
		what, out, call = "decline", OutcomeDecline, s.cfg.Addresses.Decline
	}
	err := call(ctx, mac, r.ip)
	switch {
	case errors.Is(err, ErrRefused):
		// Not the client's address (anyone can send a RELEASE naming
		// any address): nothing changed, and nothing failed.
		log.Info("dhcp "+what+" ignored", "reason", err.Error())
		return Handled{Outcome: OutcomeIgnored}
	case err != nil:
		log.Error("dhcp "+what+" not recorded", "err", err)
		return Handled{Outcome: OutcomeError}
	}
	log.Info("dhcp " + what)
	return Handled{Outcome: out}
}

// observe is the package's observe, less what an authoritative server knows
// better: on its port 67 an address is the client's only once it is ACKed
// (answerLease binds it then), so the addresses REQUESTs merely claim (a
// ciaddr, an option 50 it may NAK) bind nothing.
func (s *Server) observe(req *dhcpv4.DHCPv4, svc service, peer net.Addr) (Binding, bool) {
	b, ok := observe(req, svc, peer)
	if ok && s.cfg.Mode == ModeAuthoritative && svc == serviceDHCP {
		b.IP = netip.Addr{}
		ok = b.UUID != ""
	}
	return b, ok
}

func (h Handled) with(o Outcome) Handled {
	h.Outcome = o
	return h
}

func (s *Server) boots(ctx context.Context, c Client) (Verdict, error) {
	if s.cfg.Booter == nil {
		return Verdict{Boot: true}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, booterTimeout)
	defer cancel()
	v, err := s.cfg.Booter.BootPXE(ctx, c)
	if err != nil {
		return Verdict{}, fmt.Errorf("boot pxe %s: %w", c.MAC, err)
	}
	return v, nil
}

// accepts applies the per-port rules to an already classified request.
func accepts(svc service, req *dhcpv4.DHCPv4, c Client, serverIP net.IP) error {
	mt := c.MessageType
	if svc == serviceBootServer {
		if mt != dhcpv4.MessageTypeRequest {
			return fmt.Errorf("boot-server port answers REQUEST, not %s", mt)
		}
		return nil
	}
	// On 67 only a REQUEST that names us is ours. One naming another server completes
	// the client's lease with the site's DHCP server, and one naming no server is an
	// INIT-REBOOT or renewal for the site server too: a proxy ACK (yiaddr 0) could beat
	// that server's answer and only confuse the client. PXE clients that want more from
	// a proxy ask on 4011.
	if mt == dhcpv4.MessageTypeRequest {
		if id := req.ServerIdentifier(); id == nil || !id.Equal(serverIP) {
			return fmt.Errorf("REQUEST on port 67 is for server %v, not us", id)
		}
	}
	return nil
}

// replyAddr is where the reply to req goes.
func replyAddr(svc service, req *dhcpv4.DHCPv4, peer net.Addr, p ports) (*net.UDPAddr, error) {
	if svc == serviceBootServer {
		// Reply to the source address and port the client used: EDK2 arm64 sends from
		// 4011, iPXE from 68.
		src, ok := peer.(*net.UDPAddr)
		if !ok {
			return nil, fmt.Errorf("peer %v is not a UDP address", peer)
		}
		if !isSet(src.IP) {
			return &net.UDPAddr{IP: net.IPv4bcast, Port: src.Port}, nil
		}
		return src, nil
	}
	switch {
	case isSet(req.GatewayIPAddr):
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: p.relay}, nil
	case isSet(req.ClientIPAddr):
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: p.client}, nil
	}
	// The client has no address yet, and a proxy gives none: broadcast.
	return &net.UDPAddr{IP: net.IPv4bcast, Port: p.client}, nil
}

func isSet(ip net.IP) bool {
	return ip != nil && !ip.IsUnspecified()
}
