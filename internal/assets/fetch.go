package assets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// The operating systems Fetch knows, as named on the command line and as the
// directory under Request.Dest their files go to.
const (
	Flatcar = "flatcar"
	FCOS    = "fcos"
	Talos   = "talos"
)

// OSes returns the names Fetch accepts.
func OSes() []string { return []string{Flatcar, FCOS, Talos} }

var (
	// ErrBadRequest: the Request itself is wrong (unknown OS or arch, a
	// version that is no file name, unreadable keyring).
	ErrBadRequest = errors.New("bad request")
	// ErrUnverified: a file, signature or checksum list failed verification
	// or is missing, so nothing was put in place.
	ErrUnverified = errors.New("not verified")
	// ErrNotFound: the server answered 404 or 410 (see HTTPError).
	ErrNotFound = errors.New("not found")
	// ErrNetwork: a request got no answer (name lookup, connection, TLS) or
	// its body stopped arriving. Nothing was checked, so it is never
	// ErrUnverified: a missing network is not a bad signature.
	ErrNetwork = errors.New("network failure")
	// ErrVersion: the requested Fedora CoreOS version is not the stream's.
	ErrVersion = errors.New("version not in stream")
	// ErrTooLarge: a file is larger than the Fetcher accepts.
	ErrTooLarge = errors.New("too large")
)

const (
	// DefaultMaxSize bounds one image file; a Fedora CoreOS rootfs is about
	// 1 GiB today.
	DefaultMaxSize = 4 << 30
	// DefaultStall is how long a download may receive nothing before it is
	// abandoned.
	DefaultStall = 2 * time.Minute
	// maxMeta bounds signatures, checksum lists and stream metadata.
	maxMeta = 16 << 20
)

// Request says which release to fetch and where to put it.
type Request struct {
	OS      string // Flatcar, FCOS or Talos
	Version string // release version; "current" for Flatcar's and FCOS's latest
	Arch    string // "amd64" (default) or "arm64"; x86_64 and aarch64 work too
	Channel string // Flatcar channel; default "stable"
	Stream  string // Fedora CoreOS stream; default "stable"
	// BaseURL replaces the OS's official location, for a mirror:
	//   Flatcar: https://CHANNEL.release.flatcar-linux.net (ARCH-usr/VERSION/FILE below it)
	//   FCOS:    https://builds.coreos.fedoraproject.org (streams/STREAM.json below it;
	//            artifact URLs on the official host are moved onto BaseURL)
	//   Talos:   https://github.com/siderolabs/talos/releases/download (vVERSION/FILE below it)
	BaseURL string
	Dest    string // files go to Dest/<OS>/
	// Keyring holds OpenPGP public keys (armored or binary) that replace the
	// built-in ones; nil uses the keys embedded for OS. Talos takes none.
	Keyring []byte
}

// File is one verified file in place.
type File struct {
	Name     string // file name in Result.Dir
	Role     string // "kernel" or "initrd"
	Size     int64
	Hash     string // strongest hash checked, "sha512:<hex>"
	Verified string // what vouched for it, in words
	Present  bool   // it was already there and verified; not downloaded again
}

// Result is a completed fetch: the kernel first, then the initrds in the order
// they are to be loaded.
type Result struct {
	OS, Version string // Version is the release fetched (FCOS resolves "current")
	Dir         string
	Files       []File
	Signed      bool // false for Talos: checksums over HTTPS only
}

// Observer watches a fetch, for progress output.
type Observer interface {
	// Downloading is called when a file's body starts arriving (size -1 when
	// unknown). Every byte read is written to the returned writer, which is
	// closed when the body ends, verified or not.
	Downloading(name string, size int64) io.WriteCloser
	// Done is called for each file once it is verified and in place.
	Done(f File)
}

// Fetcher downloads and verifies releases. The zero value uses
// DefaultMaxSize, DefaultStall and no Observer. Each Fetch makes its own HTTP
// client, with connect and header timeouts and no redirect from https to
// http: the trust of a checksum fetched over HTTPS depends on it.
type Fetcher struct {
	Observer Observer
	MaxSize  int64
	Stall    time.Duration

	client *http.Client // set for the duration of one Fetch
}

// artifact is one file to fetch and what it must match.
type artifact struct {
	name   string // file name in the destination directory
	role   string
	url    string
	hashes hashSet // trusted digests; never empty
	sigURL string  // detached OpenPGP signature over the file itself, or ""
	trust  string  // what vouches for hashes, in words
}

type plan struct {
	version   string
	signed    bool
	artifacts []artifact
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// Fetch downloads req's kernel and initrds into req.Dest/<OS>/, verifies them
// and returns what is in place. Files already there with the right hashes are
// kept. On error, nothing unverified is left under a real file name.
func (f *Fetcher) Fetch(ctx context.Context, req Request) (*Result, error) {
	req, err := normalize(req)
	if err != nil {
		return nil, err
	}
	// One client for the whole fetch, so connections are reused, and closed
	// when it is done.
	g := *f
	g.client = newClient()
	defer g.client.CloseIdleConnections()
	f = &g
	var kr openpgp.EntityList
	if req.OS != Talos {
		keys := req.Keyring
		if keys == nil {
			keys = embeddedKeys(req.OS)
		}
		if kr, err = readKeyring(keys); err != nil {
			return nil, fmt.Errorf("%w: keyring: %v", ErrBadRequest, err)
		}
	}
	var p plan
	switch req.OS {
	case Flatcar:
		p, err = f.planFlatcar(ctx, req, kr)
	case FCOS:
		p, err = f.planFCOS(ctx, req)
	case Talos:
		p, err = f.planTalos(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(req.Dest, req.OS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	res := &Result{OS: req.OS, Version: p.version, Dir: dir, Signed: p.signed}
	for _, a := range p.artifacts {
		file, err := f.place(ctx, dir, a, kr)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, file)
		if f.Observer != nil {
			f.Observer.Done(file)
		}
	}
	return res, nil
}

func normalize(req Request) (Request, error) {
	bad := func(format string, a ...any) (Request, error) {
		return req, fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
	}
	switch req.OS {
	case Flatcar, FCOS, Talos:
	default:
		return bad("unknown OS %q; want one of %s", req.OS, strings.Join(OSes(), ", "))
	}
	switch req.Arch {
	case "", "amd64", "x86_64":
		req.Arch = "amd64"
	case "arm64", "aarch64":
		req.Arch = "arm64"
	default:
		return bad("unknown arch %q; want amd64 or arm64", req.Arch)
	}
	if req.OS == Talos {
		req.Version = strings.TrimPrefix(req.Version, "v")
	}
	if req.Channel == "" {
		req.Channel = "stable"
	}
	if req.Stream == "" {
		req.Stream = "stable"
	}
	// These become URL path segments and hostnames: no slashes, no "..".
	for _, v := range []struct{ what, val string }{{"version", req.Version}, {"channel", req.Channel}, {"stream", req.Stream}} {
		if !safeName.MatchString(v.val) {
			return bad("%s %q: want letters, digits, '.', '_', '+' or '-'", v.what, v.val)
		}
	}
	if req.OS == Talos && req.Version == "current" {
		return bad("Talos has no \"current\" release; name a version such as 1.9.5")
	}
	if req.OS == Talos && req.Keyring != nil {
		return bad("Talos publishes no OpenPGP signatures to check a keyring against")
	}
	if req.Dest == "" {
		return bad("no destination directory")
	}
	req.BaseURL = strings.TrimRight(req.BaseURL, "/")
	return req, nil
}

// place puts a verified copy of a in dir, reusing one already there.
func (f *Fetcher) place(ctx context.Context, dir string, a artifact, kr openpgp.EntityList) (File, error) {
	var sig []byte
	if a.sigURL != "" {
		var err error
		// Fetched first, so a release without signatures fails before a
		// large download.
		if sig, err = f.getSmall(ctx, a.sigURL, maxMeta); err != nil {
			return File{}, trustFileError(a.name, "signature", err)
		}
	}
	if file, ok := present(filepath.Join(dir, a.name), a, kr, sig); ok {
		return file, nil
	}
	return f.download(ctx, dir, a, kr, sig)
}

// present reports whether path already holds a verified copy of a.
func present(path string, a artifact, kr openpgp.EntityList, sig []byte) (File, bool) {
	fh, err := os.Open(path)
	if err != nil {
		return File{}, false
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return File{}, false
	}
	h := newHasher(a.hashes)
	if _, err := io.Copy(h, fh); err != nil {
		return File{}, false
	}
	got, err := h.check(a.name, a.hashes)
	if err != nil {
		return File{}, false
	}
	verified := a.trust
	if sig != nil {
		signer, err := verifySignature(kr, fh, sig)
		if err != nil {
			return File{}, false
		}
		verified = "signed by " + signer + "; " + a.trust
	}
	return File{Name: a.name, Role: a.role, Size: st.Size(), Hash: got.strongest(), Verified: verified, Present: true}, true
}

// download fetches a into a temporary file in dir, verifies it and renames it
// into place.
func (f *Fetcher) download(ctx context.Context, dir string, a artifact, kr openpgp.EntityList, sig []byte) (_ File, err error) {
	maxSize := f.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	body, size, err := f.get(ctx, a.url)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", a.name, err)
	}
	defer body.Close()
	if size > maxSize {
		return File{}, fmt.Errorf("%s: GET %s: %w: %d bytes, at most %d accepted", a.name, a.url, ErrTooLarge, size, maxSize)
	}
	tmp, err := os.CreateTemp(dir, "."+a.name+".part-*")
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", a.name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	h := newHasher(a.hashes)
	w := io.MultiWriter(tmp, h)
	var progress io.WriteCloser
	if f.Observer != nil {
		progress = f.Observer.Downloading(a.name, size)
		w = io.MultiWriter(tmp, h, progress)
	}
	n, err := io.Copy(w, io.LimitReader(body, maxSize+1))
	if progress != nil {
		progress.Close()
	}
	switch {
	case err != nil:
		return File{}, fmt.Errorf("%s: GET %s: %w", a.name, a.url, readError(err))
	case n > maxSize:
		return File{}, fmt.Errorf("%s: GET %s: %w: more than %d bytes", a.name, a.url, ErrTooLarge, maxSize)
	case size >= 0 && n != size:
		return File{}, fmt.Errorf("%s: GET %s: got %d of %d bytes", a.name, a.url, n, size)
	}

	got, err := h.check(a.name, a.hashes)
	if err != nil {
		return File{}, err
	}
	verified := a.trust
	if sig != nil {
		signer, err := verifySignature(kr, tmp, sig)
		if err != nil {
			return File{}, fmt.Errorf("%s: %w", a.name, err)
		}
		verified = "signed by " + signer + "; " + a.trust
	}
	if err = tmp.Chmod(0o644); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, a.name))
	}
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", a.name, err)
	}
	return File{Name: a.name, Role: a.role, Size: n, Hash: got.strongest(), Verified: verified}, nil
}
