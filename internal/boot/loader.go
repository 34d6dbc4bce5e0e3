package boot

import (
	"fmt"

	"github.com/provisiond/provisiond/internal/grub"
	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/profiles"
)

// loader is a boot loader the core writes its boot decision for: iPXE's
// script (/ipxe) or GRUB's config (over TFTP, after shim under Secure Boot).
// The decision, session and token are the same for both (serveBoot).
type loader struct {
	what string // the request in log lines: "script", "grub config"
	// uki is what the loader is told of a profile with boot.loader uki
	// (ukiScript); nil: this loader cannot boot one.
	uki func(res profiles.Result) string
	// accept refuses a machine matched to res, which boots plan now, when
	// this loader cannot boot it; it runs before anything is recorded.
	accept func(res profiles.Result, plan bootPlan, r Request) error
	// asset names a profile's kernel or initrd as the loader fetches it.
	asset func(ref string) string
	boot  func(b ipxe.Boot) (string, error) // the boot of a profile
	local func(comment string) string       // the boot from disk
}

// ipxeLoader boots every profile: BIOS machines, and UEFI machines of
// profiles with boot.loader ipxe, chain iPXE, which fetches over HTTP; the
// script of a boot.loader uki profile says to use HTTP Boot, and exits
// (ukiScript).
func (d *Decider) ipxeLoader() loader {
	return loader{
		what:   "script",
		accept: func(profiles.Result, bootPlan, Request) error { return nil },
		asset:  d.assetURL,
		boot:   func(b ipxe.Boot) (string, error) { return ipxe.BootScript(b), nil },
		local:  ipxe.LocalBootScript,
		uki:    func(res profiles.Result) string { return ukiScript(describe(res)) },
	}
}

// grubLoader boots profiles with boot.loader shim. GRUB fetches over TFTP
// from provisiond, which serves --assets under /assets/: a profile's
// "/assets/..." reference is the TFTP path as is.
func (d *Decider) grubLoader() loader {
	l := loader{
		what:  "grub config",
		asset: func(ref string) string { return ref },
		boot:  func(b ipxe.Boot) (string, error) { return grub.Config(grub.Boot(b)) },
		local: grub.LocalConfig,
	}
	l.accept = func(res profiles.Result, plan bootPlan, r Request) error {
		p := res.Profile
		if p.Boot.Loader != profiles.LoaderShim {
			return fmt.Errorf("profile %s boots with loader %q, not %q: %w", p.Name, p.Boot.Loader, profiles.LoaderShim, ErrLoader)
		}
		// Refused now, not after a session was opened for a config
		// that cannot be written: that of the profile it boots now,
		// the wipe profile while it is being wiped.
		if _, err := d.render(l, res, plan, r, ""); err != nil {
			return fmt.Errorf("profile %s: %w", plan.profile.Name, err)
		}
		return nil
	}
	return l
}

// render is plan in l's language: the disk boot, or the boot of the profile
// plan chose with the session token in its config URL.
func (d *Decider) render(l loader, res profiles.Result, plan bootPlan, r Request, token string) (string, error) {
	if plan.local {
		return l.local(describe(res) + ", installed: booting from disk"), nil
	}
	res.Profile = plan.profile
	if res.Profile.Boot.Loader == profiles.LoaderUKI {
		// The UKI's own command line names its config, without a token.
		if l.uki == nil {
			return "", fmt.Errorf("profile %s boots a UKI, which the %s cannot: %w", res.Profile.Name, l.what, ErrLoader)
		}
		return l.uki(res), nil
	}
	return l.boot(d.bootFor(res, r, token, l.asset))
}
