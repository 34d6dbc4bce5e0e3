package server

import (
	"net/http"

	"github.com/provisiond/provisiond/internal/ipxe"
)

const ipxeContentType = "text/plain; charset=utf-8"

// chainScript serves /boot.ipxe: the same script for every machine.
func (s *Server) chainScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", ipxeContentType)
	_, _ = w.Write([]byte(ipxe.ChainScript(s.cfg.AdvertiseURL)))
}

// machineScript serves /ipxe: this machine's boot script.
func (s *Server) machineScript(w http.ResponseWriter, r *http.Request) {
	req, err := ParseRequest(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	script, err := s.cfg.Core.Script(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("ipxe script served", "mac", req.MAC, "uuid", req.UUID, "arch", req.Arch, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", ipxeContentType)
	_, _ = w.Write([]byte(script))
}
