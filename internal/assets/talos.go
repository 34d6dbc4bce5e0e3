package assets

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

const talosOfficial = "https://github.com/siderolabs/talos/releases/download"

// talosSums are the checksum files a Talos release carries, preferred first.
// Talos signs those with cosign (sigstore) bundles, not OpenPGP; this package
// does not check them, so Talos files are only as trustworthy as the HTTPS
// connection to the release page.
var talosSums = []struct{ alg, file string }{
	{"sha512", "sha512sum.txt"},
	{"sha256", "sha256sum.txt"},
}

func (f *Fetcher) planTalos(ctx context.Context, req Request) (plan, error) {
	base := req.BaseURL
	if base == "" {
		base = talosOfficial
	}
	dir := base + "/v" + req.Version + "/"
	var sums []byte
	var alg, sumsFile string
	var missing []error
	for _, s := range talosSums {
		b, err := f.getSmall(ctx, dir+s.file, maxMeta)
		if errors.Is(err, ErrNotFound) {
			missing = append(missing, err)
			continue
		}
		if err != nil {
			return plan{}, err
		}
		sums, alg, sumsFile = b, s.alg, s.file
		break
	}
	if sums == nil {
		args := []any{ErrUnverified, req.Version}
		for _, err := range missing {
			args = append(args, err)
		}
		return plan{}, fmt.Errorf("%w: Talos %s has no checksum file, so nothing can be verified: "+
			strings.TrimSuffix(strings.Repeat("%w; ", len(missing)), "; "), args...)
	}
	over := "HTTPS"
	if !strings.HasPrefix(dir, "https://") {
		over = "plain HTTP"
	}
	p := plan{version: req.Version}
	for _, file := range []struct{ name, role string }{
		{"vmlinuz-" + req.Arch, "kernel"},
		{"initramfs-" + req.Arch + ".xz", "initrd"},
	} {
		hashes, err := parseSums(sums, alg, file.name)
		if err != nil {
			return plan{}, fmt.Errorf("%w: %s: %s%s: %v", ErrUnverified, file.name, dir, sumsFile, err)
		}
		if len(hashes) == 0 {
			return plan{}, fmt.Errorf("%w: %s: %s%s does not list it", ErrUnverified, file.name, dir, sumsFile)
		}
		p.artifacts = append(p.artifacts, artifact{
			name:   file.name,
			role:   file.role,
			url:    dir + file.name,
			hashes: hashes,
			trust:  fmt.Sprintf("%s as in %s fetched over %s; not signature-verified", alg, sumsFile, over),
		})
	}
	return p, nil
}
