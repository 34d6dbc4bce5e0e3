package gitsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/provisiond/provisiond/internal/atomicfile"
)

// maxDepth bounds directory nesting in an exported tree.
const maxDepth = 64

// export writes the commit's files into trees/<commit> and returns that
// directory. Only regular files and directories are written: symlinks could
// point outside the tree and submodules are other repositories, so both are
// skipped with a warning. A tree already exported is reused.
func (s *Syncer) export(c *object.Commit) (string, error) {
	dst := s.treeDir(c.Hash.String())
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		return dst, nil
	}
	if err := os.MkdirAll(s.treesDir(), 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", s.treesDir(), err)
	}
	tree, err := c.Tree()
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	// Written aside and renamed, so trees/<commit> is always complete.
	tmp, err := os.MkdirTemp(s.treesDir(), ".tmp-"+c.Hash.String()[:12]+"-")
	if err != nil {
		return "", fmt.Errorf("export commit %s: %w", c.Hash, err)
	}
	defer os.RemoveAll(tmp) // nothing left after the rename
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return "", fmt.Errorf("export commit %s: %w", c.Hash, err)
	}
	defer root.Close()
	if err := s.writeTree(root, tree, "", 0); err != nil {
		return "", fmt.Errorf("export commit %s: %w", c.Hash, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("export commit %s: %w", c.Hash, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("export commit %s: %w", c.Hash, err)
	}
	return dst, nil
}

// writeTree writes t's entries under dir in root. It walks the tree itself
// rather than with object.TreeWalker, which ends quietly at a tree it cannot
// read: half a tree must fail, not load.
func (s *Syncer) writeTree(root *os.Root, t *object.Tree, dir string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: directories nested deeper than %d", dir, maxDepth)
	}
	for _, e := range t.Entries {
		name := path.Join(dir, e.Name)
		if !safeName(e.Name) {
			s.log.Warn("profiles tree: entry skipped: unsafe name", "path", name)
			continue
		}
		switch e.Mode {
		case filemode.Dir:
			sub, err := t.Tree(e.Name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := root.Mkdir(name, 0o755); err != nil {
				return err
			}
			if err := s.writeTree(root, sub, name, depth+1); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			perm := fs.FileMode(0o644)
			if e.Mode == filemode.Executable {
				perm = 0o755
			}
			f, err := t.TreeEntryFile(&e)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := writeBlob(root, name, perm, f); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case filemode.Symlink:
			s.log.Warn("profiles tree: symlink skipped; profiles read only files inside the tree", "path", name)
		case filemode.Submodule:
			s.log.Warn("profiles tree: submodule skipped; its files are not in this repository", "path", name)
		default:
			s.log.Warn("profiles tree: entry skipped: unknown mode", "path", name, "mode", e.Mode.String())
		}
	}
	return nil
}

// safeName refuses tree entry names that could leave the directory or touch
// the repository; the root refuses the rest.
func safeName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\\\x00") && !strings.EqualFold(n, ".git")
}

func writeBlob(root *os.Root, name string, perm fs.FileMode, f *object.File) error {
	r, err := f.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// prune removes every exported tree but the live one and the newest (which
// may be a rejected commit, kept for a look), and leftovers of interrupted
// exports.
func (s *Syncer) prune() {
	keep := map[string]bool{s.newest: true}
	if live := s.Live(); live != nil {
		keep[live.Commit] = true
	}
	entries, err := os.ReadDir(s.treesDir())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("list exported profiles trees", "error", err)
		}
		return
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.treesDir(), e.Name())); err != nil {
			s.log.Warn("remove an old profiles tree", "tree", e.Name(), "error", err)
		}
	}
}

// liveFile records the live commit across restarts.
const liveFile = "live.json"

// liveRecord is liveFile's content: the commit and the repository it came from.
type liveRecord struct {
	Revision
	Remote string // without credentials
}

func writeLive(dir, remote string, rev Revision) error {
	return atomicfile.Write(filepath.Join(dir, liveFile), func(w io.Writer) error {
		return json.NewEncoder(w).Encode(liveRecord{Revision: rev, Remote: remote})
	})
}

// readLive returns the recorded live commit of remote, or nil if none is
// recorded or it came from another repository.
func readLive(dir, remote string) (*Revision, error) {
	b, err := os.ReadFile(filepath.Join(dir, liveFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the last live profiles commit: %w", err)
	}
	var rec liveRecord
	if err := json.Unmarshal(b, &rec); err != nil || !isHash(rec.Commit) {
		return nil, fmt.Errorf("%s: not a recorded commit", filepath.Join(dir, liveFile))
	}
	if rec.Remote != remote {
		return nil, nil
	}
	return &rec.Revision, nil
}
