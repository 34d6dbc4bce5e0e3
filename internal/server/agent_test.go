package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// agentServer serves Agents whose own executable is an amd64 file, with
// agentDir and exeDir searched for the others, and returns its log.
func agentServer(t *testing.T, agents Agents) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ts := httptest.NewServer(New(Config{Core: newCore(t, "../../examples"), AdvertiseURL: base, Agents: agents, Logger: log}).Handler())
	t.Cleanup(ts.Close)
	return ts, &logs
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentBinaries(t *testing.T) {
	exeDir, agentDir := t.TempDir(), t.TempDir()
	self := writeFile(t, exeDir, "provisiond", "ELF amd64 daemon")
	writeFile(t, exeDir, "provisiond-linux-arm64", "ELF arm64 beside the executable")
	writeFile(t, agentDir, "provisiond-linux-arm64", "ELF arm64 from --agent-dir")
	// Its own architecture is its own executable, not a file of that name.
	writeFile(t, agentDir, "provisiond-linux-amd64", "ELF amd64 stale copy")
	ts, _ := agentServer(t, Agents{Self: self, Arch: "amd64", Dirs: []string{agentDir, exeDir}})

	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		code                     int
	}{
		{"own arch is the executable", "GET", "/agent/amd64", "ELF amd64 daemon", nil, 200},
		{"uname -m name", "GET", "/agent/x86_64", "ELF amd64 daemon", nil, 200},
		{"other arch: --agent-dir first", "GET", "/agent/arm64", "ELF arm64 from --agent-dir", nil, 200},
		{"aarch64", "GET", "/agent/aarch64", "ELF arm64 from --agent-dir", nil, 200},
		{"HEAD has no body", "HEAD", "/agent/arm64", "", nil, 200},
		{"resumed download", "GET", "/agent/amd64", "amd64", []string{"Range", "bytes=4-8"}, 206},
		{"unknown arch", "GET", "/agent/riscv64", "no agent for architecture \"riscv64\": want amd64 (x86_64) or arm64 (aarch64)\n", nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := request(t, ts, tc.method, tc.path, tc.header...)
			if a.code != tc.code || string(a.body) != tc.body {
				t.Fatalf("%s %s = %d %q, want %d %q", tc.method, tc.path, a.code, a.body, tc.code, tc.body)
			}
		})
	}
	// HEAD states the length a GET sends, as firmware and wget expect.
	head := request(t, ts, http.MethodHead, "/agent/arm64")
	if got, want := head.header.Get("Content-Length"), strconv.Itoa(len("ELF arm64 from --agent-dir")); got != want {
		t.Errorf("HEAD Content-Length = %q, want %q", got, want)
	}
	if got := head.header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("Content-Type = %q", got)
	}
}

func TestAgentBinaryMissing(t *testing.T) {
	exeDir := t.TempDir()
	self := writeFile(t, exeDir, "provisiond", "ELF amd64 daemon")
	ts, logs := agentServer(t, Agents{Self: self, Arch: "amd64", Dirs: []string{filepath.Join(exeDir, "absent"), exeDir}})
	a := request(t, ts, http.MethodGet, "/agent/arm64")
	want := "no agent binary for arm64: put provisiond-linux-arm64 in --agent-dir or beside the provisiond executable (make build does)\n"
	if a.code != 404 || string(a.body) != want {
		t.Errorf("GET /agent/arm64 = %d %q, want 404 %q", a.code, a.body, want)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"agent binary missing\"") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	// A daemon that is no Linux binary (make run on a Mac) serves files only.
	ts, _ = agentServer(t, Agents{Dirs: []string{exeDir}})
	if a := request(t, ts, http.MethodGet, "/agent/amd64"); a.code != 404 {
		t.Errorf("GET /agent/amd64 without Self = %d %q, want 404", a.code, a.body)
	}
	// The zero value serves none.
	ts, _ = agentServer(t, Agents{})
	if a := request(t, ts, http.MethodHead, "/agent/amd64"); a.code != 404 {
		t.Errorf("HEAD /agent/amd64 with no agents = %d, want 404", a.code)
	}
}
