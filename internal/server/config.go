package server

import (
	"net/http"
	"strconv"
)

// config serves /ignition (ignition=true) or /config: the machine's own rendered
// config, produced at load time.
func (s *Server) config(ignition bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := ParseRequest(r.URL.Query())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out, err := s.cfg.Core.Config(r.Context(), req, ignition)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("config served", "mac", req.MAC, "uuid", req.UUID, "kind", string(out.Kind), "bytes", len(out.Body), "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", out.ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(out.Body)))
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(out.Body)
	}
}
