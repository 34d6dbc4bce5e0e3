package main

// serve's side of the inspection agent: which binaries /agent/{arch}
// serves (internal/server Agents).

import (
	"os"
	"path/filepath"
	"runtime"

	"github.com/provisiond/provisiond/internal/server"
)

// declareAgentFlags declares serve's --agent-dir into dir.
func declareAgentFlags(fs *flagSet, dir *string) {
	fs.StringVar(dir, "agent-dir", "", "`DIR` holding provisiond-linux-ARCH binaries (amd64, arm64) served at /agent/ARCH for the architectures other than this daemon's own, which serves itself (default: beside the provisiond executable)")
}

// agentFiles is what /agent/{arch} serves: this executable for its own
// architecture when it is a Linux binary, and provisiond-linux-<arch> from
// dir (--agent-dir) or beside the executable.
func agentFiles(dir string) server.Agents {
	var a server.Agents
	if dir != "" {
		a.Dirs = append(a.Dirs, dir)
	}
	exe, err := os.Executable()
	if err != nil {
		return a // no executable to serve or look beside: --agent-dir alone
	}
	if exe, err = filepath.EvalSymlinks(exe); err == nil {
		if runtime.GOOS == "linux" {
			a.Self, a.Arch = exe, runtime.GOARCH
		}
		a.Dirs = append(a.Dirs, filepath.Dir(exe))
	}
	return a
}
