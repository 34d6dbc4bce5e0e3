package server

import (
	"net/http"
	"net/netip"
	"strings"
)

// fromProxies makes the requester's address, for everything behind it, the
// one a trusted reverse proxy reports in X-Forwarded-For: the rightmost
// entry that is not itself a trusted proxy (entries to its left are what the
// client claimed, and anyone can claim anything). A request from any other
// peer keeps its own address, whatever it sends. An entry that does not parse
// gives an address nothing is bound to, so the identity check refuses it.
func fromProxies(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(trusted) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, err := netip.ParseAddrPort(r.RemoteAddr)
			if err != nil || !isProxy(trusted, peer.Addr().Unmap()) {
				next.ServeHTTP(w, r)
				return
			}
			hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					r.RemoteAddr = "unparseable-forwarded-for:0"
					break
				}
				if a = a.Unmap(); !isProxy(trusted, a) {
					r.RemoteAddr = netip.AddrPortFrom(a, 0).String()
					break
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// isProxy reports whether a is one of the trusted reverse proxies.
func isProxy(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
