// Package grubfiles serves the GRUB configs of machines booted under Secure
// Boot through shim and GRUB as TFTP files: it is the tftp.Dynamic that
// answers grub/grub.cfg, the same for every machine, and
// grub/machines/<mac>.cfg, each machine's own, from the boot core.
package grubfiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/grub"
	"github.com/provisiond/provisiond/internal/tftp"
)

// Decider renders a machine's GRUB config; *boot.Decider implements it.
type Decider interface {
	GrubConfig(ctx context.Context, r boot.Request) (string, error)
}

// Files answers the GRUB configs' TFTP requests. Its zero value is not
// usable; call New.
type Files struct {
	decider Decider
	log     *slog.Logger
}

// New returns the Files answering from d; log nil discards.
func New(d Decider, log *slog.Logger) *Files {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Files{decider: d, log: log}
}

// chain is grub.ChainConfig, rendered once.
var chain = []byte(grub.ChainConfig())

// Open implements tftp.Dynamic. The machine a per-MAC file is for must be
// the client asking (the core's identity check, from the client's
// address): another client is refused with tftp.ErrDenied, and nothing is
// recorded. A machine that has no profile here, or whose profile does not
// boot through shim, gets a not-found, so the TFTP server's directories may
// still answer. Other names are not found.
func (f *Files) Open(ctx context.Context, client netip.Addr, name string) (io.ReadSeeker, int64, error) {
	if name == grub.ConfigFile {
		return bytes.NewReader(chain), int64(len(chain)), nil
	}
	mac, ok, err := grub.MachineMAC(name)
	switch {
	case !ok:
		return nil, 0, fmt.Errorf("%q: %w", name, fs.ErrNotExist)
	case err != nil:
		// Unauthenticated and free to send: debug only.
		f.log.Debug("grub config: not a machine's file name", "file", name, "client", client.String(), "error", err)
		return nil, 0, fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	cfg, err := f.decider.GrubConfig(ctx, boot.Request{MAC: mac, IP: client.String()})
	if err == nil {
		return bytes.NewReader([]byte(cfg)), int64(len(cfg)), nil
	}
	// The core logged its decision at its level (refusals windowed against
	// floods), and the TFTP server logs the transfer with this error.
	f.log.Debug("grub config not served", "mac", mac, "client", client.String(), "error", err)
	var refused *boot.RefusedError
	switch {
	case errors.As(err, &refused):
		return nil, 0, fmt.Errorf("grub config of %s to %s: %w: %w", mac, client, tftp.ErrDenied, err)
	case errors.Is(err, boot.ErrUnknownMachine), errors.Is(err, boot.ErrLoader), errors.Is(err, boot.ErrNotLoaded), errors.Is(err, boot.ErrNoIdentity):
		return nil, 0, fmt.Errorf("grub config of %s: %w: %w", mac, fs.ErrNotExist, err)
	}
	return nil, 0, fmt.Errorf("grub config of %s: %w", mac, err)
}
