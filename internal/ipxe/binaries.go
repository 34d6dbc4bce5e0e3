package ipxe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tinkerbell/ipxedust/binary"
)

// Names of the iPXE network boot programs the proxyDHCP hands out and the
// TFTP and HTTP (/nbp/<name>) servers serve.
const (
	UndionlyKPXE = "undionly.kpxe" // BIOS (x86), chainloads through the PXE ROM's UNDI driver
	IPXEEFI      = "ipxe.efi"      // x86-64 UEFI
	SNPEFI       = "snp.efi"       // arm64 UEFI
)

// ErrNotFound is returned by Binaries.Open for a name that is not one of the
// binaries. It wraps fs.ErrNotExist so file servers that layer other sources
// behind the binaries can fall through without knowing this package.
var ErrNotFound = fmt.Errorf("ipxe binary: %w", fs.ErrNotExist)

// Binaries holds the iPXE boot programs in memory: the builds embedded from
// ipxedust, each replaced by a file of the same name in an override directory
// when one is given. Safe for concurrent use; the contents never change after
// NewBinaries returns.
type Binaries struct {
	files map[string][]byte
}

// NewBinaries loads the binaries. If overrideDir is not empty, every binary
// with a file of the same name in that directory is read from there (an
// operator's own build, e.g. with embedded certificates); the others stay
// embedded. Everything is read now, so a bad directory fails startup rather
// than a boot.
func NewBinaries(overrideDir string) (*Binaries, error) {
	b := &Binaries{files: map[string][]byte{
		UndionlyKPXE: binary.Undionly,
		IPXEEFI:      binary.IpxeEFI,
		SNPEFI:       binary.SNP,
	}}
	if overrideDir == "" {
		return b, nil
	}
	// The directory is operator configuration, not client input: symlinks in
	// it are followed (e.g. to a distribution's ipxe build).
	if fi, err := os.Stat(overrideDir); err != nil {
		return nil, fmt.Errorf("ipxe override dir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("ipxe override dir %q is not a directory", overrideDir)
	}
	for name := range b.files {
		path := filepath.Join(overrideDir, name)
		// Lstat, so that a dangling symlink is an error rather than a silent
		// fallback to the embedded build.
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read ipxe override %q in %q: %w", name, overrideDir, err)
		}
		// An empty boot program can never boot: refuse it now instead of
		// serving it.
		if len(data) == 0 {
			return nil, fmt.Errorf("ipxe override %q in %q is empty", name, overrideDir)
		}
		b.files[name] = data
	}
	return b, nil
}

// Open returns a reader over the binary called name and its size. name must
// be exactly one of UndionlyKPXE, IPXEEFI or SNPEFI; anything else, including
// paths such as "/ipxe.efi", yields ErrNotFound.
func (b *Binaries) Open(name string) (io.ReadSeeker, int64, error) {
	data, ok := b.files[name]
	if !ok {
		return nil, 0, fmt.Errorf("open %q: %w", name, ErrNotFound)
	}
	return bytes.NewReader(data), int64(len(data)), nil
}
