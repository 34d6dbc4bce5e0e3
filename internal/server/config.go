package server

import (
	"net/http"
	"strconv"
)

// config serves /ignition (ignition=true) or /config: the machine's own rendered
// config, produced at load time, to the machine itself during its session.
func (s *Server) config(ignition bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := machineRequest(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out, body, err := s.cfg.Core.Config(r.Context(), req, ignition)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", out.ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	}
}
