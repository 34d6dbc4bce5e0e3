// Package testutil holds helpers shared by tests that run the real daemon.
package testutil

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback TCP address nothing listened on a moment ago, for
// a daemon the test starts with --http-addr.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
