package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/store"
)

// reserved query parameters are never treated as labels.
var reserved = map[string]bool{"mac": true, "uuid": true, "arch": true, "platform": true, "token": true}

// ParseRequest reads a machine's identity from a boot-path query string. Empty
// values are absent (iPXE expands an unknown ${uuid} to nothing); a value that is
// present but malformed is a bad request rather than silently ignored.
func ParseRequest(q url.Values) (boot.Request, error) {
	var mac, uuid string
	if v := q.Get("mac"); v != "" {
		var err error
		if mac, err = ident.MAC(v); err != nil {
			return boot.Request{}, fmt.Errorf("%w: mac %q is not a MAC address", httperr.ErrBadRequest, truncate(v))
		}
	}
	if v := q.Get("uuid"); v != "" {
		var err error
		if uuid, err = ident.UUID(v); err != nil {
			return boot.Request{}, fmt.Errorf("%w: uuid %q is not a UUID", httperr.ErrBadRequest, truncate(v))
		}
	}
	// Labels match on iPXE's ${buildarch} as sent; the inventory records the
	// firmware too.
	buildarch := q.Get("arch")
	r := boot.NewRequest(mac, uuid, q.Get("platform"), buildarch)
	if r.MAC == "" && r.UUID == "" { // none given, or a placeholder UUID alone
		return r, boot.ErrNoIdentity
	}
	if !archName(r.Arch) {
		return r, fmt.Errorf("%w: arch %q and platform %q: want iPXE's ${buildarch} and ${platform}, such as x86_64 and efi", httperr.ErrBadRequest, truncate(buildarch), truncate(q.Get("platform")))
	}
	r.Token = q.Get("token")
	for k, vs := range q {
		if reserved[k] || len(vs) == 0 {
			continue
		}
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels[k] = vs[0]
	}
	if buildarch != "" {
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		r.Labels["arch"] = buildarch
	}
	return r, nil
}

// machineRequest is ParseRequest plus what the connection says: the
// requester's IP, which the boot core checks against the neighbour table.
func machineRequest(hr *http.Request) (boot.Request, error) {
	r, err := ParseRequest(hr.URL.Query())
	if err != nil {
		return r, err
	}
	if ap, err := netip.ParseAddrPort(hr.RemoteAddr); err == nil {
		r.IP = ap.Addr().Unmap().String()
	}
	return r, nil
}

// archName reports whether a is a plausible architecture name to record: the
// inventory keeps it, so anything else would be stored junk.
func archName(a string) bool {
	if len(a) > store.MaxArch {
		return false
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// truncate keeps hostile input out of long error lines.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
