package assets

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// flatcarKeys is the Flatcar image signing key, "Flatcar Buildbot (Official
// Builds) <buildbot@flatcar-linux.org>", primary fingerprint
// F88C FEDE FF29 A5B4 D952  3864 E25D 9AED 0593 B34A, as published at
// https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc
// (github.com/flatcar/flatcar-website,
// static/security/image-signing-key/Flatcar_Image_Signing_Key.asc, commit
// 08bdee0a "update to 2025 subkey"). Flatcar signs with a subkey it replaces
// about once a year; the one current when this was embedded,
// 52F1 45DF D00B BDCD 928C  BB5A 32DA 80F9 1EF5 2974, expires 2027-03-08.
// After that, pass the refreshed key file with --keyring.
//
//go:embed keys/flatcar.asc
var flatcarKeys []byte

// fedoraKeys holds the Fedora 43, 44 and 45 primary keys, the set
// coreos-installer embeds to verify Fedora CoreOS artifacts
// (github.com/coreos/coreos-installer, src/signing-keys.asc, commit 24434604,
// without its Red Hat key):
//
//	Fedora 43  C6E7 F081 CF80 E131 4667  6E88 829B 6066 3164 5531
//	Fedora 44  36F6 12DC F27F 7D1A 48A8  35E4 DBFC F71C 6D9F 90A6
//	Fedora 45  4F50 A611 4CD5 C697 6A7F  1179 655A 4B02 F577 861E
//
// A stream built on a newer Fedora needs that release's key from
// https://fedoraproject.org/security/ through --keyring.
//
//go:embed keys/fedora.asc
var fedoraKeys []byte

// embeddedKeys returns the keys built in for os, or nil when os publishes no
// signatures.
func embeddedKeys(os string) []byte {
	switch os {
	case Flatcar:
		return flatcarKeys
	case FCOS:
		return fedoraKeys
	}
	return nil
}

// readKeyring parses OpenPGP public keys: binary, or one or more ASCII-armored
// key blocks one after another (as key files that bundle several keys are).
// Each block is cut out and decoded on its own: go-crypto's
// ReadArmoredKeyRing stops after the first, and its armor decoder reads ahead
// into the next.
func readKeyring(data []byte) (openpgp.EntityList, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("no keys")
	}
	if !bytes.Contains(data, []byte(armorBegin)) {
		kr, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		return kr, nil
	}
	var all openpgp.EntityList
	for rest := data; ; {
		start := bytes.Index(rest, []byte(armorBegin))
		if start < 0 {
			break
		}
		n := bytes.Index(rest[start:], []byte(armorEnd))
		if n < 0 {
			return nil, errors.New("read armored keys: a key block has no end line")
		}
		end := start + n + len(armorEnd)
		block, err := armor.Decode(bytes.NewReader(rest[start:end]))
		if err != nil {
			return nil, fmt.Errorf("read armored keys: %w", err)
		}
		kr, err := openpgp.ReadKeyRing(block.Body)
		if err != nil {
			return nil, fmt.Errorf("read armored keys: %w", err)
		}
		all = append(all, kr...)
		rest = rest[end:]
	}
	if len(all) == 0 {
		return nil, errors.New("read armored keys: no keys")
	}
	return all, nil
}

const (
	armorBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	armorEnd   = "-----END PGP PUBLIC KEY BLOCK-----"
)
