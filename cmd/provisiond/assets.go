package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/boot"
)

// `provisiond assets fetch flatcar|fcos|talos --version V --dest DIR`:
// download an OS release's PXE kernel and initrds, verify them, leave them
// where `serve --assets DIR` serves them and print the profile lines.

func assetsCommand() *command {
	return &command{
		name:     "assets",
		summary:  "fetch and verify OS images (Flatcar, Fedora CoreOS, Talos) for serve --assets",
		examples: []string{"provisiond assets fetch flatcar --version current --dest ./data/assets"},
		verbNoun: "verb",
		verbs: []*command{{
			name:    "fetch",
			args:    "flatcar|fcos|talos",
			summary: "download an OS release's PXE kernel and initrds into --dest, verify them and print the profile lines that boot them",
			about: `Files are written under a temporary name and renamed into place only once
verified, so --dest never holds an unverified file under a real name; a file
already in place that verifies is not downloaded again.

  flatcar  flatcar_production_pxe.vmlinuz, flatcar_production_pxe_image.cpio.gz
           from https://CHANNEL.release.flatcar-linux.net/ARCH-usr/VERSION/
           (VERSION may be "current"). Each file's SHA512 must match its
           DIGESTS, OpenPGP-signed with the Flatcar image signing key (built in).
  fcos     kernel, initramfs and rootfs of the Fedora CoreOS STREAM's release,
           from https://builds.coreos.fedoraproject.org/streams/STREAM.json.
           A stream lists only its current release: VERSION must be it, or
           "current". Each file's OpenPGP signature is checked with Fedora's
           keys (built in) and its sha256 with the stream.
  talos    vmlinuz-ARCH, initramfs-ARCH.xz from
           https://github.com/siderolabs/talos/releases/download/vVERSION/.
           Checked against the release's sha512sum.txt fetched over HTTPS only:
           Talos publishes no OpenPGP signature, so these files are NOT
           signature-verified.

Without internet access, point --flatcar-base-url, --fcos-base-url or
--talos-base-url at a mirror with the same layout.`,
			examples: []string{
				"provisiond assets fetch flatcar --version current --dest ./data/assets",
				"provisiond assets fetch fcos --version current --stream testing --dest ./data/assets",
				"provisiond assets fetch talos --version 1.11.5 --dest ./data/assets",
				"provisiond assets fetch flatcar --version current --dest /srv/assets --flatcar-base-url http://mirror.lan/flatcar",
			},
			flags: assetsFetchFlags,
		}},
	}
}

func assetsFetchFlags(fs *flagSet, c *cli) func([]string) error {
	var req assets.Request
	fs.StringVar(&req.Version, "version", "", "release `V` to fetch (required; \"current\" works for flatcar and fcos)")
	fs.StringVar(&req.Dest, "dest", "", "assets directory `DIR` (required): files go to DIR/flatcar, DIR/fcos or DIR/talos")
	fs.StringVar(&req.Arch, "arch", "amd64", "architecture `ARCH`: amd64 or arm64")
	fs.StringVar(&req.Channel, "channel", "stable", "Flatcar `CHANNEL`: stable, beta, alpha or lts")
	fs.StringVar(&req.Stream, "stream", "stable", "Fedora CoreOS `STREAM`: stable, testing or next")
	keyring := fs.String("keyring", "", "OpenPGP public keys `FILE` (armored or binary) to verify with instead of the built-in ones")
	bases := map[string]*string{
		assets.Flatcar: fs.String("flatcar-base-url", "", "`URL` of a mirror of https://CHANNEL.release.flatcar-linux.net (ARCH-usr/VERSION/ below it)"),
		assets.FCOS:    fs.String("fcos-base-url", "", "`URL` of a mirror of https://builds.coreos.fedoraproject.org (streams/ and prod/ below it)"),
		assets.Talos:   fs.String("talos-base-url", "", "`URL` of a mirror of https://github.com/siderolabs/talos/releases/download (vVERSION/ below it)"),
	}
	maxSize := byteSize(assets.DefaultMaxSize)
	fs.Var(&maxSize, "max-size", "refuse any file larger than `SIZE` (bytes, or with KiB, MiB, GiB)")
	return func(pos []string) error {
		if len(pos) != 1 {
			return usagef("want one OS: %s", strings.Join(assets.OSes(), ", "))
		}
		req.OS = pos[0]
		base, ok := bases[req.OS]
		if !ok {
			return usagef("unknown OS %q; want %s", req.OS, strings.Join(assets.OSes(), ", "))
		}
		req.BaseURL = *base
		switch {
		case req.Version == "":
			return usagef("--version is required")
		case req.Dest == "":
			return usagef("--dest is required (the directory serve --assets serves)")
		}
		if *keyring != "" {
			var err error
			if req.Keyring, err = os.ReadFile(*keyring); err != nil {
				return fmt.Errorf("read keyring: %w", err)
			}
		}
		return fetchAssets(c, req, int64(maxSize))
	}
}

func fetchAssets(c *cli, req assets.Request, maxSize int64) error {
	stderr, stdout := c.stderr, c.stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, "Fetching %s\n", describe(req))
	if req.OS == assets.Talos {
		fmt.Fprintln(stderr, talosNote(req))
	}
	f := &assets.Fetcher{Observer: newObserver(stderr), MaxSize: maxSize}
	res, err := f.Fetch(ctx, req)
	switch {
	case errors.Is(err, assets.ErrBadRequest):
		return usagef("%v", err)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("interrupted; nothing unverified was left under a real name: %w", err)
	case errors.Is(err, assets.ErrNetwork):
		return fmt.Errorf("%w\nthe download failed; nothing unverified was put in place. Without internet access, "+
			"point --%s-base-url at a mirror with the same layout", err, req.OS)
	case errors.Is(err, assets.ErrUnverified):
		if hint := keyHint(req); hint != "" && strings.Contains(err.Error(), "not in the keyring") {
			return fmt.Errorf("%w\n%s", err, hint)
		}
		return fmt.Errorf("%w\nrefused: nothing unverified was put in place", err)
	case err != nil:
		return err
	}
	printResult(stdout, req, res)
	return nil
}

// talosNote says plainly how little a Talos download is checked.
func talosNote(req assets.Request) string {
	over := "over HTTPS"
	if strings.HasPrefix(req.BaseURL, "http://") {
		over = "over plain HTTP from the mirror"
	}
	return "Note: Talos publishes no OpenPGP signature. These files are checked against the release's checksum file, fetched " +
		over + ", and are not signature-verified."
}

func describe(req assets.Request) string {
	arch := req.Arch
	if arch == "" {
		arch = "amd64"
	}
	switch req.OS {
	case assets.Flatcar:
		return fmt.Sprintf("Flatcar %s (%s, channel %s) into %s", req.Version, arch, req.Channel, filepath.Join(req.Dest, req.OS))
	case assets.FCOS:
		return fmt.Sprintf("Fedora CoreOS %s (%s, stream %s) into %s", req.Version, arch, req.Stream, filepath.Join(req.Dest, req.OS))
	}
	return fmt.Sprintf("Talos %s (%s) into %s", req.Version, arch, filepath.Join(req.Dest, req.OS))
}

// keyHint says where a newer key comes from when the built-in ones did not
// know the signer: Flatcar rotates its signing subkey yearly and each Fedora
// release brings a new key.
func keyHint(req assets.Request) string {
	switch req.OS {
	case assets.Flatcar:
		return "The Flatcar image signing key (primary F88CFEDEFF29A5B4D9523864E25D9AED0593B34A) may have a new subkey:\n" +
			"download https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc, check its fingerprint, and pass it with --keyring."
	case assets.FCOS:
		return "The release may be signed by a newer Fedora key: download it from https://fedoraproject.org/security/,\n" +
			"check its fingerprint there, and pass it with --keyring."
	}
	return ""
}

// printResult tells where the files went and the profile lines naming them.
func printResult(w io.Writer, req assets.Request, res *assets.Result) {
	fmt.Fprintf(w, "%s %s is in %s:\n", map[string]string{assets.Flatcar: "Flatcar", assets.FCOS: "Fedora CoreOS", assets.Talos: "Talos"}[res.OS], res.Version, res.Dir)
	var kernel string
	var initrds []string
	for _, f := range res.Files {
		fmt.Fprintf(w, "  %s\n", filepath.Join(res.Dir, f.Name))
		served := path.Join("/assets", res.OS, f.Name)
		if f.Role == "kernel" {
			kernel = served
		} else {
			initrds = append(initrds, served)
		}
	}
	if !res.Signed {
		fmt.Fprintln(w, talosNote(req))
	}
	fmt.Fprintf(w, "\nProfile lines, with `provisiond serve --assets %s`:\n\nboot:\n  kernel: %s\n", req.Dest, kernel)
	if len(initrds) == 1 {
		fmt.Fprintf(w, "  initrd: [%s]\n", initrds[0])
	} else {
		fmt.Fprintln(w, "  initrd:")
		for _, i := range initrds {
			fmt.Fprintf(w, "    - %s\n", i)
		}
	}
	fmt.Fprintln(w, "  # args: see the matching profile in examples/profiles.yaml")
}

// newObserver draws a progress bar per file when w is a terminal, and
// otherwise only a line per finished file, so logs get no bar redraws.
func newObserver(w io.Writer) assets.Observer {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return barObserver{w}
	}
	return lineObserver{w}
}

// lineObserver prints one line per verified file: name, size, hash and what
// verified it.
type lineObserver struct{ w io.Writer }

func (lineObserver) Downloading(string, int64) io.WriteCloser { return nopWriteCloser{io.Discard} }

func (l lineObserver) Done(f assets.File) {
	status := "verified"
	if f.Present {
		status = "already present, verified"
	}
	fmt.Fprintf(l.w, "%s  %s  %s  %s: %s\n", f.Name, boot.Bytes(uint64(f.Size)), f.Hash, status, f.Verified)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// barObserver is lineObserver plus a progress bar while a file downloads.
type barObserver struct{ w io.Writer }

func (b barObserver) Downloading(name string, size int64) io.WriteCloser {
	return barWriter{progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetRenderBlankState(true),
	)}
}

func (b barObserver) Done(f assets.File) { lineObserver(b).Done(f) }

// barWriter clears its bar when the download ends; the file's line follows.
type barWriter struct{ *progressbar.ProgressBar }

func (b barWriter) Close() error {
	b.Clear()
	return b.Exit()
}

// byteSize is a flag value: bytes, or a number with KiB, MiB, GiB or TiB
// (K, KB, M, MB... read the same: powers of 1024).
type byteSize int64

func (b *byteSize) String() string { return boot.Bytes(uint64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := api.ParseBytes(s)
	if err != nil || n < 1 || n > math.MaxInt64 {
		return fmt.Errorf("size %q: want a positive number of bytes, or with KiB, MiB or GiB", s)
	}
	*b = byteSize(n)
	return nil
}
