package assets

import (
	"context"
	"errors"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Flatcar publishes, next to each image file F of a release,
// F.DIGESTS (MD5, SHA1 and SHA512 of F) and F.DIGESTS.asc, the same text
// clearsigned with the image signing key (github.com/flatcar/scripts,
// ci-automation/ci_automation_common.sh: create_digests runs gpg --clearsign
// with the release key). It also
// publishes F.sig, a detached signature over F itself; the DIGESTS route
// is used because it checks the file's hash before anything is trusted.
var flatcarFiles = []struct{ name, role string }{
	{"flatcar_production_pxe.vmlinuz", "kernel"},
	{"flatcar_production_pxe_image.cpio.gz", "initrd"},
}

func (f *Fetcher) planFlatcar(ctx context.Context, req Request, kr openpgp.EntityList) (plan, error) {
	base := req.BaseURL
	if base == "" {
		base = "https://" + req.Channel + ".release.flatcar-linux.net"
	}
	dir := base + "/" + req.Arch + "-usr/" + req.Version + "/"
	p := plan{version: req.Version, signed: true}
	for _, file := range flatcarFiles {
		url := dir + file.name
		asc, err := f.getSmall(ctx, url+".DIGESTS.asc", maxMeta)
		if err != nil {
			return plan{}, trustFileError(file.name, "signed DIGESTS", err)
		}
		// Should the .asc ever be a detached signature rather than a
		// clearsigned text, it signs the plain .DIGESTS beside it.
		text, signer, err := verifySignedText(kr, asc, func() ([]byte, error) {
			b, err := f.getSmall(ctx, url+".DIGESTS", maxMeta)
			if errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("%w: %w", ErrUnverified, err)
			}
			if err != nil {
				return nil, err
			}
			return b, nil
		})
		if err != nil {
			return plan{}, fmt.Errorf("%s: %s.DIGESTS.asc: %w", file.name, url, err)
		}
		hashes, err := parseDigests(text, file.name)
		if err != nil {
			return plan{}, fmt.Errorf("%w: %s: %s.DIGESTS: %v", ErrUnverified, file.name, url, err)
		}
		if hashes["sha512"] == "" {
			return plan{}, fmt.Errorf("%w: %s: the signed DIGESTS list no SHA512 for it", ErrUnverified, file.name)
		}
		p.artifacts = append(p.artifacts, artifact{
			name:   file.name,
			role:   file.role,
			url:    url,
			hashes: hashes,
			trust:  "sha512 as in DIGESTS signed by " + signer,
		})
	}
	return p, nil
}
