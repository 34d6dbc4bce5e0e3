package profiles

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls reload once the profiles directory dir has been quiet for debounce
// after a change, until ctx ends. A `git pull` touches many files in a burst; the
// debounce turns the burst into one reload. Hidden entries (.git) are ignored.
func Watch(ctx context.Context, dir string, debounce time.Duration, log *slog.Logger, reload func()) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch profiles: %w", err)
	}
	defer w.Close()
	if err := addTree(w, dir); err != nil {
		return fmt.Errorf("watch profiles %s: %w", dir, err)
	}

	timer := time.NewTimer(debounce)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if hidden(dir, ev.Name) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					if err := addTree(w, ev.Name); err != nil {
						log.Warn("watch new profiles subdirectory", "dir", ev.Name, "error", err)
					}
				}
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events, not the watch: reload to be safe.
			log.Warn("profiles watch error; reloading", "error", err)
			timer.Reset(debounce)
		case <-timer.C:
			reload()
		}
	}
}

// addTree watches dir and every non-hidden directory below it (fsnotify is not
// recursive).
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		return w.Add(p)
	})
}

func hidden(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if strings.HasPrefix(part, ".") && part != "." && part != ".." {
			return true
		}
	}
	return false
}
