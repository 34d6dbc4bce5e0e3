package tftp

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// TestTransferLogLevel: the package's own transfer line is the info line
// only when no hook is set; with one, the hook's owner logs it (with the
// machine) and the package's line drops to debug, so each transfer has
// exactly one info line.
func TestTransferLogLevel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hook  bool
		level string
	}{
		{"no hook: info", false, "level=INFO"},
		{"hook: debug", true, "level=DEBUG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testutil.Buffer{}
			done := make(chan Transfer, 1)
			cfg := Config{Files: embedded, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			if tc.hook {
				cfg.OnTransfer = func(tr Transfer) { done <- tr }
			}
			addr := startServer(t, cfg)
			if _, err := fetch(t, addr, "undionly.kpxe", 1468); err != nil {
				t.Fatal(err)
			}
			if tc.hook {
				if tr := <-done; tr.File != "undionly.kpxe" || tr.Outcome() != "ok" {
					t.Errorf("hook got %+v", tr)
				}
			}
			deadline := time.Now().Add(3 * time.Second)
			for !strings.Contains(logs.String(), `msg="tftp transfer"`) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			var lines []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `msg="tftp transfer"`) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.level) {
				t.Errorf("transfer lines %q; want one at %s", lines, tc.level)
			}
		})
	}
}
