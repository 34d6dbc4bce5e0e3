package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
)

// Files is a read-only source of files, such as the embedded iPXE binaries.
// Open gets a name already checked by Resolve. It returns an error wrapping
// fs.ErrNotExist when it has no such file, so the server can try the next
// source; any other error fails the request. If the reader is an io.Closer,
// the server closes it when the transfer ends.
type Files interface {
	Open(name string) (io.ReadSeeker, int64, error)
}

// Dynamic is a source of files rendered per client, such as the GRUB config
// of the machine behind the client's address. Open is Files.Open with the
// client's address; an error wrapping ErrDenied refuses the client this
// file (TFTP ERROR code 2, access violation), and no other source is tried.
type Dynamic interface {
	Open(ctx context.Context, client netip.Addr, name string) (io.ReadSeeker, int64, error)
}

// ErrDenied is what a Dynamic returns for a file this client may not read.
var ErrDenied = errors.New("access violation")

// Dir is a directory served over TFTP. Nothing outside Path is served,
// whatever the request or the symlinks in it say.
type Dir struct {
	Path string
	// Prefix is the path it is served under, e.g. "assets/"; "" for the
	// root of the TFTP server.
	Prefix string
	// TopLevel serves only the files directly in Path, none in its
	// subdirectories: a directory of boot programs (shimx64.efi,
	// grubx64.efi) that lends the server nothing else.
	TopLevel bool
}

// source is one place a file is looked for, in Config order; fs.ErrNotExist
// passes to the next.
type source func(ctx context.Context, client netip.Addr, name string) (io.ReadSeeker, int64, error)

// sources lists what cfg serves, in the order they are searched: Dynamic,
// Files, each of Dirs, Root. Each directory must be readable now rather
// than fail the first request.
func sources(cfg Config) ([]source, error) {
	var out []source
	if cfg.Dynamic != nil {
		out = append(out, cfg.Dynamic.Open)
	}
	if cfg.Files != nil {
		out = append(out, func(_ context.Context, _ netip.Addr, name string) (io.ReadSeeker, int64, error) {
			return cfg.Files.Open(name)
		})
	}
	dirs := cfg.Dirs
	if cfg.Root != "" {
		dirs = append(dirs[:len(dirs):len(dirs)], Dir{Path: cfg.Root})
	}
	for _, d := range dirs {
		root, err := os.OpenRoot(d.Path)
		if err != nil {
			return nil, fmt.Errorf("tftp directory: %w", err)
		}
		root.Close()
		if d.Prefix = strings.Trim(d.Prefix, "/"); d.Prefix != "" {
			clean, err := Resolve(d.Prefix)
			if err != nil || clean != d.Prefix {
				return nil, fmt.Errorf("tftp directory %s: prefix %q: want a clean relative path such as \"assets/\"", d.Path, d.Prefix)
			}
			d.Prefix += "/"
		}
		out = append(out, d.open)
	}
	if len(out) == 0 {
		return nil, errors.New("tftp: nothing to serve: no Dynamic, Files, Dirs or Root")
	}
	return out, nil
}

// open finds name, already checked by Resolve, in the first source that has
// it. client is the requester's address.
func open(ctx context.Context, srcs []source, client netip.Addr, name string) (io.ReadSeeker, int64, error) {
	for _, src := range srcs {
		r, size, err := src(ctx, client, name)
		if err == nil {
			return r, size, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, 0, err
		}
	}
	return nil, 0, fmt.Errorf("open %q: %w", name, fs.ErrNotExist)
}

// open serves name from d: under d.Prefix, and, if d.TopLevel, no deeper.
func (d Dir) open(_ context.Context, _ netip.Addr, name string) (io.ReadSeeker, int64, error) {
	rest, ok := strings.CutPrefix(name, d.Prefix)
	if !ok || rest == "" || (d.TopLevel && strings.Contains(rest, "/")) {
		return nil, 0, fmt.Errorf("open %q: %w", name, fs.ErrNotExist)
	}
	return openInRoot(d.Path, rest)
}

// openInRoot opens name under dir through os.Root, so neither ".." nor a
// symlink can reach outside dir. The root is opened per request (one syscall)
// so that a directory the operator replaces is picked up. The file is
// streamed as the client ACKs, never read whole.
func openInRoot(dir, name string) (io.ReadSeeker, int64, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("open tftp directory: %w", err)
	}
	// Files opened through a Root stay valid after it is closed.
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("open %q in %s: %w", name, dir, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat %q in %s: %w", name, dir, err)
	}
	// Directories and devices are not files a client can boot.
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%q in %s is not a regular file: %w", name, dir, fs.ErrNotExist)
	}
	return f, fi.Size(), nil
}
