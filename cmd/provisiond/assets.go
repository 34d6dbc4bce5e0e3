package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/provisiond/provisiond/internal/assets"
)

// `provisiond assets fetch flatcar|fcos|talos --version V --dest DIR`:
// download an OS release's PXE kernel and initrds, verify them, leave them
// where `serve --assets DIR` serves them and print the profile lines.

func assetsUsage(w io.Writer) {
	fmt.Fprint(w, `usage: provisiond assets fetch flatcar|fcos|talos --version V --dest DIR [flags]

Downloads an OS release's PXE kernel and initrd(s) into DIR/<os>/, verifies
them, and prints the profile lines that boot them. Files are written under a
temporary name and renamed into place only once verified, so DIR never holds
an unverified file under a real name; a file already in place that verifies
is not downloaded again ("already present, verified").

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

The --*-base-url flags point at a mirror with the same layout, for sites
without internet access.

flags:
`)
}

func runAssets(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		assetsUsage(stderr)
		return fmt.Errorf("%w: want a subcommand: fetch", errUsage)
	}
	switch args[0] {
	case "fetch":
	case "-h", "-help", "--help", "help":
		assetsUsage(stderr)
		return flag.ErrHelp
	default:
		assetsUsage(stderr)
		return fmt.Errorf("%w: unknown subcommand %q; want fetch", errUsage, args[0])
	}
	fs := newFlagSet("assets fetch", stderr)
	fs.Usage = func() { assetsUsage(stderr); fs.PrintDefaults() }
	var req assets.Request
	fs.StringVar(&req.Version, "version", "", "release `V` to fetch (required; \"current\" works for flatcar and fcos)")
	fs.StringVar(&req.Dest, "dest", "", "assets directory `DIR` (required): files go to DIR/flatcar, DIR/fcos or DIR/talos")
	fs.StringVar(&req.Arch, "arch", "amd64", "architecture: amd64 or arm64")
	fs.StringVar(&req.Channel, "channel", "stable", "Flatcar channel: stable, beta, alpha or lts")
	fs.StringVar(&req.Stream, "stream", "stable", "Fedora CoreOS stream: stable, testing or next")
	keyring := fs.String("keyring", "", "OpenPGP public keys `FILE` (armored or binary) to verify with instead of the built-in ones")
	bases := map[string]*string{
		assets.Flatcar: fs.String("flatcar-base-url", "", "`URL` of a mirror of https://CHANNEL.release.flatcar-linux.net (ARCH-usr/VERSION/ below it)"),
		assets.FCOS:    fs.String("fcos-base-url", "", "`URL` of a mirror of https://builds.coreos.fedoraproject.org (streams/ and prod/ below it)"),
		assets.Talos:   fs.String("talos-base-url", "", "`URL` of a mirror of https://github.com/siderolabs/talos/releases/download (vVERSION/ below it)"),
	}
	maxSize := byteSize(assets.DefaultMaxSize)
	fs.Var(&maxSize, "max-size", "refuse any file larger than this `size` (bytes, or with KiB, MiB, GiB)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one OS: %s", errUsage, strings.Join(assets.OSes(), ", "))
	}
	req.OS = pos[0]
	base, ok := bases[req.OS]
	if !ok {
		return fmt.Errorf("%w: unknown OS %q; want %s", errUsage, req.OS, strings.Join(assets.OSes(), ", "))
	}
	req.BaseURL = *base
	switch {
	case req.Version == "":
		return fmt.Errorf("%w: --version is required", errUsage)
	case req.Dest == "":
		return fmt.Errorf("%w: --dest is required (the directory serve --assets serves)", errUsage)
	}
	if *keyring != "" {
		if req.Keyring, err = os.ReadFile(*keyring); err != nil {
			return fmt.Errorf("read keyring: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, "Fetching %s\n", describe(req))
	if req.OS == assets.Talos {
		fmt.Fprintln(stderr, talosNote(req))
	}
	f := &assets.Fetcher{Observer: newObserver(stderr), MaxSize: int64(maxSize)}
	res, err := f.Fetch(ctx, req)
	switch {
	case errors.Is(err, assets.ErrBadRequest):
		return fmt.Errorf("%w: %v", errUsage, err)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("interrupted; nothing unverified was left under a real name: %w", err)
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
	fmt.Fprintf(l.w, "%s  %s  %s  %s: %s\n", f.Name, humanBytes(f.Size), f.Hash, status, f.Verified)
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

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// byteSize is a flag value: bytes, or a number with KiB, MiB, GiB or TiB
// (K, KB, M, MB... read the same: powers of 1024).
type byteSize int64

func (b *byteSize) String() string { return humanBytes(int64(*b)) }

func (b *byteSize) Set(s string) error {
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := 1.0
	if i := strings.Index("KMGT", num[max(len(num)-1, 0):]); num != "" && i >= 0 {
		mult = float64(int64(1) << (10 * (i + 1)))
		num = num[:len(num)-1]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 1 {
		return fmt.Errorf("size %q: want a positive number of bytes, or with KiB, MiB or GiB", s)
	}
	*b = byteSize(v * mult)
	return nil
}
