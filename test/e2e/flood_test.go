package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// tftpFloodRate is the rate at which tftpFlood sends read requests: ~50 times
// what a rack of booting machines sends, yet low enough that the emulated
// VMs on the same two cores still boot in their timeouts.
const tftpFloodRate = 500

// tftpFloodMax bounds the flood however long the boots take.
const tftpFloodMax = 5 * time.Minute

// tftpFlood sends TFTP read requests for ipxe.efi to provisiond from
// namespace ns, from fresh source ports and never acknowledging anything,
// until ctx ends or tftpFloodMax passes: the flood a host on the network
// can send while the UEFI VM fetches that same file. The function it returns
// waits for the flood to end and tells how many requests it sent.
func (l *lab) tftpFlood(ctx context.Context, ns string) (sent func() int64) {
	var n atomic.Int64
	done := make(chan struct{})
	rrq := binary.BigEndian.AppendUint16(nil, 1)
	rrq = append(rrq, "ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00"...)
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(ctx, tftpFloodMax)
		defer cancel()
		var conns []net.PacketConn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// Sixteen source ports, reused: each request is a new transfer to
		// the server, and the flooder holds a bounded number of sockets.
		err := inNetns(ns, func() error {
			for range 16 {
				c, err := net.ListenPacket("udp4", ":0")
				if err != nil {
					return err
				}
				conns = append(conns, c)
			}
			return nil
		})
		if err != nil {
			l.t.Errorf("tftp flood from %s: %v", ns, err)
			return
		}
		to := &net.UDPAddr{IP: net.ParseIP(provAddr), Port: 69}
		tick := time.NewTicker(time.Second / tftpFloodRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := conns[i%len(conns)].WriteTo(rrq, to); err == nil {
				n.Add(1)
			}
		}
	}()
	return func() int64 {
		<-done
		return n.Load()
	}
}

// floodSummary is the line the test logs about a flood.
func floodSummary(sent int64, took time.Duration) string {
	return fmt.Sprintf("TFTP flood: %d read requests from the routed attacker in %.0f s (%.0f/s), none acknowledged",
		sent, took.Seconds(), float64(sent)/took.Seconds())
}
