package bmc

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/provisiond/provisiond/test/bmcsim"
)

// BenchmarkRedfishReprovision is reprovision's conversation with a Redfish
// BMC on loopback: login, PXE next with read-back, power state, cycle, logout.
// It measures provisiond's and bmclib's own cost, not a real BMC's.
func BenchmarkRedfishReprovision(b *testing.B) {
	_, addr := bmcsim.StartRedfish(b, bmcsim.NewMemChassis(true), "admin", "pw")
	host, port, _ := net.SplitHostPort(addr)
	ep := Endpoint{Protocol: Redfish, Host: host, Port: port, User: "admin", Password: "pw"}
	c := New(Options{Timeout: 10 * time.Second})
	for b.Loop() {
		if _, err := c.Do(context.Background(), ep, Request{PXENext: true, EFI: true, Action: Cycle}); err != nil {
			b.Fatal(err)
		}
	}
}
