package server

import (
	"net/http"

	"github.com/provisiond/provisiond/internal/ipxe"
)

const ipxeContentType = "text/plain; charset=utf-8"

// chainScript serves /boot.ipxe: the same script for every machine. A GET
// that names its machine is recorded in the inventory, and refused if it
// does not come from that machine; a HEAD records nothing, so it describes
// the script alone.
func (s *Server) chainScript(w http.ResponseWriter, r *http.Request) {
	if req, err := machineRequest(r); err == nil && r.Method != http.MethodHead {
		if err := s.cfg.Core.Chained(r.Context(), req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	w.Header().Set("Content-Type", ipxeContentType)
	_, _ = w.Write([]byte(ipxe.ChainScript(s.cfg.AdvertiseURL)))
}

// machineScript serves /ipxe: this machine's boot script.
func (s *Server) machineScript(w http.ResponseWriter, r *http.Request) {
	req, err := machineRequest(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	script, err := s.cfg.Core.Script(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // it carries a one-boot token
	w.Header().Set("Content-Type", ipxeContentType)
	_, _ = w.Write([]byte(script))
}
