package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// relayClient runs DHCP exchanges for many made-up clients as a relay agent
// forwards them: from port 67 of the relay's address, giaddr set, every
// answer coming back to that port. One socket serves every client; answers
// are told apart by transaction ID. Unlike perfdhcp it tells which MAC got
// which address.
type relayClient struct {
	conn   *net.UDPConn
	relay  net.IP
	server *net.UDPAddr

	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

// newRelayClient opens the relay's socket at relay:67 in namespace ns,
// talking to the DHCP server at server:67, until the test ends.
func (l *lab) newRelayClient(ns, relay, server string) *relayClient {
	l.t.Helper()
	c := &relayClient{
		relay:   net.ParseIP(relay).To4(),
		server:  &net.UDPAddr{IP: net.ParseIP(server), Port: dhcpv4.ServerPort},
		waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
	}
	err := inNetns(ns, func() error {
		var err error
		c.conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: c.relay, Port: dhcpv4.ServerPort})
		return err
	})
	if err != nil {
		l.t.Fatalf("relay client socket: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.read()
	}()
	l.t.Cleanup(func() {
		c.conn.Close()
		<-done
	})
	return c
}

// read hands each reply to the exchange waiting for its transaction ID;
// one nobody waits for (late, after its exchange gave up) is dropped.
func (c *relayClient) read() {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		reply, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || reply.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[reply.TransactionID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- reply:
			default: // a duplicate answer
			}
		}
	}
}

// errNoAnswer is an exchange the server did not answer in time.
var errNoAnswer = errors.New("no answer")

// exchange sends req, relayed, and returns the first answer to it, or
// errNoAnswer when ctx ends first.
func (c *relayClient) exchange(ctx context.Context, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	req.GatewayIPAddr = c.relay
	req.HopCount = 1
	ch := make(chan *dhcpv4.DHCPv4, 1)
	c.mu.Lock()
	c.waiting[req.TransactionID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, req.TransactionID)
		c.mu.Unlock()
	}()
	if _, err := c.conn.WriteToUDP(req.ToBytes(), c.server); err != nil {
		return nil, fmt.Errorf("send %s: %w", req.MessageType(), err)
	}
	select {
	case reply := <-ch:
		return reply, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s of %s: %w", req.MessageType(), req.ClientHWAddr, errNoAnswer)
	}
}

// discover sends a DISCOVER for mac and returns the OFFER.
func (c *relayClient) discover(ctx context.Context, mac net.HardwareAddr) (*dhcpv4.DHCPv4, error) {
	req, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		return nil, err
	}
	offer, err := c.exchange(ctx, req)
	if err != nil {
		return nil, err
	}
	if offer.MessageType() != dhcpv4.MessageTypeOffer {
		return nil, fmt.Errorf("DISCOVER of %s answered %s", mac, offer.MessageType())
	}
	return offer, nil
}

// request sends the REQUEST that takes offer (SELECTING) and returns the
// answer, an ACK or a NAK.
func (c *relayClient) request(ctx context.Context, offer *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		return nil, err
	}
	return c.exchange(ctx, req)
}
