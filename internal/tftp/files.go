package tftp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Files is a read-only source of files, such as the embedded iPXE binaries.
// Open gets a name already checked by Resolve. It returns an error wrapping
// fs.ErrNotExist when it has no such file, so the server can try the next
// source; any other error fails the request. If the reader is an io.Closer,
// the server closes it when the transfer ends.
type Files interface {
	Open(name string) (io.ReadSeeker, int64, error)
}

// open finds name first in files, then under root. Either may be empty.
func open(files Files, root, name string) (io.ReadSeeker, int64, error) {
	if files != nil {
		r, size, err := files.Open(name)
		if err == nil {
			return r, size, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, 0, err
		}
	}
	if root == "" {
		return nil, 0, fmt.Errorf("open %q: %w", name, fs.ErrNotExist)
	}
	return openInRoot(root, name)
}

// openInRoot opens name under dir through os.Root, so neither ".." nor a
// symlink can reach outside dir. The root is opened per request (one syscall)
// so that a directory the operator replaces is picked up.
func openInRoot(dir, name string) (io.ReadSeeker, int64, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("open tftp root: %w", err)
	}
	// Files opened through a Root stay valid after it is closed.
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("open %q in tftp root: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat %q in tftp root: %w", name, err)
	}
	// Directories and devices are not files a client can boot.
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%q in tftp root is not a regular file: %w", name, fs.ErrNotExist)
	}
	return f, fi.Size(), nil
}
