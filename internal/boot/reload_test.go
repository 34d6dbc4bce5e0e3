package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// slowTree replaces the profiles in dir with a tree that validates but takes
// minutes to load: many machines, each rendering a legitimate slow template.
func slowTree(t *testing.T, dir string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("kind: Profile\nname: p\nboot: {kernel: /assets/v2}\nconfig: {template: slow.txt}\n")
	for i := range 300 {
		fmt.Fprintf(&b, "---\nkind: Machine\nname: n%d\nmatch: {mac: \"52:54:00:00:%02x:%02x\"}\nprofile: p\n", i, i>>8, i&0xff)
	}
	write(t, dir, "slow.txt", "{{range 100000}}{{end}}{{.machine.name}}")
	write(t, dir, "p.yaml", b.String())
}

// reloadResult runs ReloadContext in the background.
func reloadResult(c *Core, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.ReloadContext(ctx) }()
	return done
}

// waitErr returns what done delivers within a second.
func waitErr(t *testing.T, what string, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		t.Fatalf("%s still running a second after it was cancelled", what)
		return nil
	}
}

// A reload in progress stops when its context ends, and when a newer reload
// supersedes it; either way the last good set and its status stay, and the
// log says cancelled rather than failed.
func TestReloadCancelled(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", good)
	var logs testutil.Buffer
	c, _ := newCore(t, dir, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	set, st := c.Profiles(), c.Status()
	slowTree(t, dir)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := reloadResult(c, ctx)
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := waitErr(t, "reload", stopped); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled reload = %v; want context.Canceled", err)
	}

	first := reloadResult(c, context.Background())
	time.Sleep(100 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	second := reloadResult(c, ctx)
	if err := waitErr(t, "superseded reload", first); !errors.Is(err, errSuperseded) {
		t.Errorf("superseded reload = %v; want errSuperseded", err)
	}
	cancel()
	if err := waitErr(t, "superseding reload", second); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled reload = %v; want context.Canceled", err)
	}

	if c.Profiles() != set || c.Status() != st {
		t.Errorf("a cancelled reload changed the live set or the status: %+v", c.Status())
	}
	out := logs.String()
	if strings.Count(out, "profiles reload cancelled") != 3 || !strings.Contains(out, "superseded by a newer reload") || strings.Contains(out, "reload failed") {
		t.Errorf("log:\n%s\nwant three cancellations, one superseded, no failure", out)
	}
	write(t, dir, "p.yaml", good)
	if err := c.Reload(); err != nil {
		t.Errorf("reload after the cancelled ones: %v", err)
	}
}
