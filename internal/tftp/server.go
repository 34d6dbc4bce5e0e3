// Package tftp serves files read-only over TFTP: the iPXE boot programs a PXE
// ROM fetches before it can speak HTTP, files rendered per client (a
// machine's GRUB config), and directories of files (the signed shim and
// GRUB, the kernels GRUB fetches).
package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// MaxBlockSize is the largest blksize (RFC 2348) granted: a 1500-byte
// Ethernet MTU minus IP, UDP and TFTP headers, the size EDK2 and iPXE ask for.
// pin/tftp further lowers it to the MTU of the interface a request arrived
// on; clients that do not ask get RFC 1350's 512.
const MaxBlockSize = 1468

// Defaults for the zero values in Config.
const (
	DefaultTimeout         = 5 * time.Second
	DefaultRetries         = 5
	DefaultMaxTransferTime = 10 * time.Minute
	// DefaultMaxTransfers is dnsmasq's tftp-max. A transfer holds its slot
	// for a fraction of a second on a LAN, so 50 at once is a rack or more
	// asking in the same instant; only clients that stop ACKing hold one
	// for long.
	DefaultMaxTransfers = 50
	// DefaultMaxPerClient leaves a PXE client room for what it does at
	// once: EDK2's tsize probe then the transfer, plus one or two requests
	// left waiting by a client that reset, each held until it times out.
	DefaultMaxPerClient = 4
)

// ErrProbe marks a transfer the client ended at once after learning the
// file's size: UEFI firmware (EDK2) asks for tsize, then answers the OACK
// with ERROR 8 "User aborted the transfer", and fetches the file in a second
// request. It is how every UEFI PXE boot starts, not a failure.
var ErrProbe = errors.New("size probe: the client asked for the size and ended the transfer")

// ErrReadOnly is why every write request is refused.
var ErrReadOnly = errors.New("access violation: read-only server")

// errTransferTooLong ends a transfer that outlived Config.MaxTransferTime.
var errTransferTooLong = errors.New("transfer took too long")

// errShuttingDown ends transfers still running when Serve's context is done.
var errShuttingDown = errors.New("server shutting down")

// Config configures a Server. A request is answered from the first of
// Dynamic, Files, Dirs and Root that has the file; one of them is needed.
type Config struct {
	// Dynamic is searched first, with the client's address: files
	// rendered per machine.
	Dynamic Dynamic
	// Files is searched next, e.g. the embedded iPXE binaries.
	Files Files
	// Dirs are searched in order after Files.
	Dirs []Dir
	// Root is a directory served last, at the root ("" for none). Nothing
	// outside it is served, whatever the request or the symlinks in it say.
	Root string
	// Logger gets one line per transfer, at debug when OnTransfer is set (the
	// hook's owner logs it, knowing the machine); nil discards.
	Logger *slog.Logger
	// Timeout is how long to wait for an ACK before retransmitting
	// (DefaultTimeout if zero).
	Timeout time.Duration
	// Retries is how many times a packet is retransmitted before the
	// transfer is given up (DefaultRetries if zero), so a client that
	// vanishes holds its transfer for about Timeout*(Retries+1).
	Retries int
	// MaxTransferTime bounds a whole transfer, so a client that ACKs just
	// often enough cannot hold one forever (DefaultMaxTransferTime if zero).
	MaxTransferTime time.Duration
	// MaxTransfers caps the read requests served at once; one over it is
	// refused with an ERROR "server busy" (DefaultMaxTransfers if zero), and
	// a PXE ROM gives up that boot attempt on it. It bounds the sockets,
	// goroutines and retransmissions that clients which never ACK can hold,
	// each for about Timeout*(Retries+1).
	MaxTransfers int
	// MaxPerClient caps the read requests served at once to one client IP,
	// so that a single host cannot take every slot of MaxTransfers
	// (DefaultMaxPerClient if zero).
	MaxPerClient int
	// OnTransfer, if set, is called once per read request when it ends,
	// e.g. to feed metrics or to log the transfer with the machine behind
	// the client address. It must not block.
	OnTransfer func(Transfer)
}

// Transfer describes one finished read request.
type Transfer struct {
	Client   string // client address, host:port
	File     string // the name as requested
	Bytes    int64  // bytes of the file sent
	Duration time.Duration
	Err      error // nil when the client received the whole file
}

// Outcome classifies the transfer for logs and metric labels: "ok",
// "probe" (a size probe, see ErrProbe), "not_found", "denied", "busy"
// (refused by a cap) or "error".
func (t Transfer) Outcome() string {
	switch {
	case t.Err == nil:
		return "ok"
	case errors.Is(t.Err, ErrProbe):
		return "probe"
	case errors.Is(t.Err, fs.ErrNotExist):
		return "not_found"
	case errors.Is(t.Err, ErrInvalidName), errors.Is(t.Err, ErrDenied):
		return "denied"
	case errors.Is(t.Err, ErrBusy):
		return "busy"
	default:
		return "error"
	}
}

// Server is a read-only TFTP server. It is safe to Serve several
// connections at once.
type Server struct {
	cfg     Config
	sources []source
	log     *slog.Logger
	slots   *limiter // shared by every Serve
}

// New checks cfg and fills in defaults. A Root or Dir that is not a
// readable directory is an error now rather than on the first request.
func New(cfg Config) (*Server, error) {
	srcs, err := sources(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.MaxTransferTime <= 0 {
		cfg.MaxTransferTime = DefaultMaxTransferTime
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = DefaultMaxTransfers
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = DefaultMaxPerClient
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, sources: srcs, log: log, slots: newLimiter(cfg.MaxTransfers, cfg.MaxPerClient)}, nil
}

// ListenAndServe listens on the UDP address addr (":69" for the standard
// port) and serves until ctx is done. It listens on IPv4 only, like the
// proxyDHCP: on Go's default dual-stack socket for ":69", Linux reports IPv4
// arrivals with interface index 0 and pin/tftp then grants no blksize above
// 512.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("tftp listen: %w", err)
	}
	return s.Serve(ctx, conn)
}

// Serve answers requests arriving on conn until ctx is done, then closes conn
// and waits for the transfers in flight: one that is sending stops at its
// next block, one whose client stopped ACKing after its retransmissions
// (about Timeout*(Retries+1)). Each transfer runs on its own ephemeral port,
// as TFTP requires.
//
// conn should be an IPv4 *net.UDPConn: pin/tftp grants a blksize above 512
// only when it learns the arrival interface's MTU, which it reads from the
// packet info of one (see ListenAndServe).
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	defer conn.Close()
	if udp, ok := conn.(*net.UDPConn); !ok || udp.LocalAddr().(*net.UDPAddr).IP.To4() == nil {
		s.log.Warn("tftp: not an IPv4 UDP socket, IPv4 clients limited to blksize 512",
			"conn", fmt.Sprintf("%T", conn), "addr", conn.LocalAddr().String())
	}
	srv := tftp.NewServer(
		func(name string, rf io.ReaderFrom) error { return s.read(ctx, name, rf) },
		s.refuseWrite,
	)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetBlockSize(MaxBlockSize)
	srv.SetHook(ignoredPackets{s.log})
	// pin/tftp v3.1.0 has no RFC 7440 windowsize: it leaves the option out
	// of its OACK, which clients (EDK2 asks for 4) take as lock-step. Its
	// SetAnticipate is a non-negotiated imitation and stays off.

	s.log.Info("tftp listening", "addr", conn.LocalAddr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(conn) }()
	select {
	case err := <-errc:
		return fmt.Errorf("tftp serve: %w", err)
	case <-ctx.Done():
	}
	// Shutdown closes conn and waits for transfers; boundedReader fails
	// theirs once ctx is done, so this is bounded.
	srv.Shutdown()
	<-errc
	return nil
}

// read serves one read request.
func (s *Server) read(ctx context.Context, requested string, rf io.ReaderFrom) error {
	start := time.Now()
	t := Transfer{File: requested}
	var client netip.Addr
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		addr := ot.RemoteAddr()
		t.Client = addr.String()
		client = addr.AddrPort().Addr().Unmap()
	}
	defer func() {
		t.Duration = time.Since(start)
		s.report(t)
	}()

	// pin/tftp has opened this transfer's socket before calling us and
	// offers no way in earlier, nor one to close it silently: returning an
	// error is what sends an ERROR and closes it. So a refused request costs
	// one short packet and a socket open only until this goroutine runs, and
	// only the transfers holding a slot can wait out a client that never ACKs.
	if err := s.slots.acquire(client); err != nil {
		t.Err = err
		return ErrBusy
	}
	defer s.slots.release(client)

	name, err := Resolve(requested)
	if err != nil {
		t.Err = err
		return ErrInvalidName
	}
	r, size, err := open(ctx, s.sources, client, name)
	if err != nil {
		t.Err = err
		// The client gets a short reason, not our paths.
		switch {
		case errors.Is(err, ErrDenied):
			s.accessViolation(rf, ErrDenied.Error())
			return ErrDenied
		case errors.Is(err, fs.ErrNotExist):
			return errors.New("file not found")
		}
		return errors.New("cannot read file")
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	// SetSize only fills tsize when the client asked for it (RFC 2349).
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(size)
	}
	t.Bytes, t.Err = rf.ReadFrom(&boundedReader{
		r:        r,
		ctx:      ctx,
		deadline: start.Add(s.cfg.MaxTransferTime),
	})
	if sizeProbe(t) {
		t.Err = fmt.Errorf("%w (%v)", ErrProbe, t.Err)
	}
	// ReadFrom has already sent the client an ERROR if it failed.
	return t.Err
}

// sizeProbe reports whether a failed transfer was a size probe: the client
// answered our OACK (block 0: sent only when it asked for options such as
// tsize) with an ERROR, before any data. pin/tftp reports a client's ERROR
// only as text ("sending block 0: code=8, error: ..."), so the text is what
// there is to go by.
func sizeProbe(t Transfer) bool {
	return t.Err != nil && t.Bytes == 0 && strings.HasPrefix(t.Err.Error(), "sending block 0: code=")
}

func (s *Server) report(t Transfer) {
	attrs := []any{
		"client", t.Client, "file", t.File, "bytes", t.Bytes,
		"duration", t.Duration, "outcome", t.Outcome(),
	}
	if t.Err != nil {
		attrs = append(attrs, "error", t.Err)
	}
	if s.cfg.OnTransfer == nil {
		s.log.Info("tftp transfer", attrs...)
		return
	}
	// A request names no machine; the hook's owner can, and logs the one info line.
	s.log.Debug("tftp transfer", attrs...)
	s.cfg.OnTransfer(t)
}

// boundedReader fails the transfer once it runs past its deadline or the
// server shuts down. pin/tftp reads once per block, so the check runs
// between blocks.
type boundedReader struct {
	r        io.Reader
	ctx      context.Context
	deadline time.Time
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.ctx.Err() != nil {
		return 0, errShuttingDown
	}
	if time.Now().After(b.deadline) {
		return 0, errTransferTooLong
	}
	return b.r.Read(p)
}

// refuseWrite answers a write request with ERROR code 2, access violation.
func (s *Server) refuseWrite(name string, wt io.WriterTo) error {
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		client := it.RemoteAddr()
		s.log.Info("tftp write refused", "client", client.String(), "file", name)
	}
	s.accessViolation(wt, ErrReadOnly.Error())
	return ErrReadOnly
}

// accessViolation sends the client of transfer t (a pin/tftp sender or
// receiver) an ERROR with code 2, access violation. pin/tftp sends every
// error as code 1 (file not found), so the code-2 ERROR goes out first
// from a socket of our own, a new TID as RFC 1350 wants; pin's own code-1
// ERROR follows when the handler returns, and the client has stopped
// listening by then.
func (s *Server) accessViolation(t any, msg string) {
	var client net.UDPAddr
	switch t := t.(type) {
	case tftp.IncomingTransfer:
		client = t.RemoteAddr()
	case tftp.OutgoingTransfer:
		client = t.RemoteAddr()
	}
	var local net.IP
	if info, ok := t.(tftp.RequestPacketInfo); ok {
		local = info.LocalIP()
	}
	if err := sendError(local, &client, 2, msg); err != nil {
		s.log.Warn("tftp access violation not sent", "client", client.String(), "error", err)
	}
}

// sendError sends one TFTP ERROR packet from a fresh port on local.
func sendError(local net.IP, to *net.UDPAddr, code uint16, msg string) error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: local})
	if err != nil {
		return fmt.Errorf("send tftp error: %w", err)
	}
	defer conn.Close()
	pkt := binary.BigEndian.AppendUint16(nil, 5) // opcode ERROR
	pkt = binary.BigEndian.AppendUint16(pkt, code)
	pkt = append(append(pkt, msg...), 0)
	if _, err := conn.WriteToUDP(pkt, to); err != nil {
		return fmt.Errorf("send tftp error: %w", err)
	}
	return nil
}

// ignoredPackets logs the packets pin/tftp drops before a transfer exists
// (garbage, stray ACKs on port 69). It reports those with no remote address;
// transfer failures, which have one, are logged by read.
type ignoredPackets struct{ log *slog.Logger }

func (h ignoredPackets) OnSuccess(tftp.TransferStats) {}

func (h ignoredPackets) OnFailure(stats tftp.TransferStats, err error) {
	if stats.RemoteAddr == nil {
		h.log.Debug("tftp packet ignored", "error", err)
	}
}
