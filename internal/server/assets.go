package server

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
)

// assets serves files under --assets with Range support, at most maxRanges
// ranges a request. Opening through os.Root keeps every path, including
// symlinks, inside the assets directory.
func (s *Server) assets(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "*")
	if s.cfg.Assets == nil || !fs.ValidPath(name) || strings.Contains(name, "\\") {
		s.fail(w, r, fmt.Errorf("%w: asset %q", httperr.ErrNotFound, truncate(name)))
		return
	}
	f, err := s.cfg.Assets.Open(name)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: asset %q", httperr.ErrNotFound, truncate(name)))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.fail(w, r, fmt.Errorf("%w: asset %q is not a file", httperr.ErrNotFound, truncate(name)))
		return
	}
	if !s.rangesOK(w, r, fi.Size()) {
		return
	}
	s.log.Debug("asset served", "file", name, "method", r.Method, "range", truncate(r.Header.Get("Range")), "remote", r.RemoteAddr)
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// binary serves an iPXE binary at /nbp/{name} for UEFI HTTP Boot clients,
// which HEAD it for its length before the GET.
func (s *Server) binary(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if s.cfg.Binaries == nil {
		s.fail(w, r, fmt.Errorf("%w: no iPXE binaries configured", httperr.ErrNotFound))
		return
	}
	rs, size, err := s.cfg.Binaries.Open(name)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: iPXE binary %q", httperr.ErrNotFound, truncate(name)))
		return
	}
	if !s.rangesOK(w, r, size) {
		return
	}
	// The request names no machine; the core can often tell whose address it is.
	var id boot.Identity
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		id = s.cfg.Core.Identify(r.Context(), ap.Addr())
	}
	s.log.Info("ipxe binary served", append(id.Attrs(), "file", name, "method", r.Method, "remote", r.RemoteAddr)...)
	w.Header().Set("Content-Type", "application/efi")
	http.ServeContent(w, r, name, time.Time{}, rs)
}
