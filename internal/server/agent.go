package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
)

// Agents locates the binaries of the inspection agent (provisiond agent)
// that /agent/{arch} serves: the daemon's own executable for the
// architecture it was built for, and a file provisiond-linux-<arch> for any
// other. The zero value serves none.
type Agents struct {
	Self string // the daemon's own executable; "" when it is no Linux binary
	Arch string // GOARCH Self was built for
	// Dirs are searched in order for provisiond-linux-<arch>: --agent-dir,
	// then the executable's own directory (make build puts them there).
	Dirs []string
}

// agentArches are the architectures an agent is built for, by their GOARCH
// and by the name `uname -m` gives, so that a discovery image can fetch
// /agent/$(uname -m).
var agentArches = map[string]string{"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64"}

// errNoAgent: no binary of an architecture the route knows.
var errNoAgent = errors.New("no agent binary")

// path returns the file of the agent for arch (a GOARCH).
func (a Agents) path(arch string) (string, error) {
	if arch == a.Arch && a.Self != "" {
		return a.Self, nil
	}
	name := "provisiond-linux-" + arch
	for _, d := range a.Dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w for %s: put %s in --agent-dir or beside the provisiond executable (make build does)", errNoAgent, arch, name)
}

// agent serves the agent binary for the machine's architecture, to GET and
// to HEAD (with its length), with Range support for resumed downloads. The
// binary holds no secret: like /assets it needs no token.
func (s *Server) agent(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "arch")
	arch, ok := agentArches[name]
	if !ok {
		http.Error(w, fmt.Sprintf("no agent for architecture %q: want amd64 (x86_64) or arm64 (aarch64)", truncate(name)), http.StatusNotFound)
		return
	}
	// The request names no machine; the core can often tell whose address it is.
	var id boot.Identity
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		id = s.cfg.Core.Identify(r.Context(), ap.Addr())
	}
	p, err := s.cfg.Agents.path(arch)
	if err != nil {
		// The operator's to fix, and a discovery boot is stuck until then.
		s.log.Warn("agent binary missing", append(id.Attrs(), "arch", arch, "error", err, "remote", r.RemoteAddr)...)
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	f, err := os.Open(p)
	if err != nil {
		s.fail(w, r, fmt.Errorf("open agent binary %s: %w", p, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, r, fmt.Errorf("stat agent binary %s: %w", p, err))
		return
	}
	if !s.rangesOK(w, r, fi.Size()) {
		return
	}
	s.log.Info("agent binary served", append(id.Attrs(), "arch", arch, "file", p, "method", r.Method, "remote", r.RemoteAddr)...)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}
