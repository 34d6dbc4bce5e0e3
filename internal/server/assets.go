package server

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"strconv"
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
		s.assetStep(r, name, boot.AssetNotFound)
		s.fail(w, r, fmt.Errorf("%w: asset %q", httperr.ErrNotFound, truncate(name)))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.assetStep(r, name, boot.AssetNotFound)
		s.fail(w, r, fmt.Errorf("%w: asset %q is not a file", httperr.ErrNotFound, truncate(name)))
		return
	}
	if !s.rangesOK(w, r, fi.Size()) {
		return
	}
	s.log.Debug("asset served", "file", name, "method", r.Method, "range", truncate(r.Header.Get("Range")), "remote", r.RemoteAddr)
	if r.Method == http.MethodHead {
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f) // a size probe: no step of the boot
		return
	}
	s.assetStep(r, name, boot.AssetStarted)
	sw := &sentWriter{ResponseWriter: w}
	http.ServeContent(sw, r, fi.Name(), fi.ModTime(), f)
	s.assetStep(r, name, sw.outcome())
}

// assetStep tells the boot timeline of a fetch from /assets; the core puts
// the requester's address to a machine later, off the request path.
func (s *Server) assetStep(r *http.Request, name, outcome string) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		s.cfg.Core.AssetFetch(ap.Addr().Unmap(), name, outcome)
	}
}

// sentWriter counts the body bytes sent through it, so that a download the
// client broke off is told from a completed one. It passes io.ReaderFrom
// on, so that http.ServeContent still sends the file with sendfile(2).
type sentWriter struct {
	http.ResponseWriter
	sent int64
}

func (w *sentWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.sent += int64(n)
	return n, err
}

func (w *sentWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.sent += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *sentWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// outcome is the asset step of the answer sent: aborted when fewer bytes
// went out than its Content-Length promised.
func (w *sentWriter) outcome() string {
	want, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64)
	if err == nil && w.sent < want {
		return boot.AssetAborted
	}
	return boot.AssetCompleted
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
