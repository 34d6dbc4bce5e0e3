package assets

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Hash algorithms this package checks, strongest first. MD5 and SHA-1, which
// Flatcar's DIGESTS also list, are not trusted and not checked.
var hashAlgs = []string{"sha512", "sha256"}

func newHash(alg string) hash.Hash {
	switch alg {
	case "sha512":
		return sha512.New()
	case "sha256":
		return sha256.New()
	}
	return nil
}

// hashSet maps an algorithm in hashAlgs to a lowercase hex digest.
type hashSet map[string]string

// strongest returns "alg:hex" for the strongest hash in h.
func (h hashSet) strongest() string {
	for _, alg := range hashAlgs {
		if v, ok := h[alg]; ok {
			return alg + ":" + v
		}
	}
	return ""
}

// addHex records digest for alg after checking it looks like one.
func (h hashSet) addHex(alg, digest string) error {
	want := newHash(alg).Size() * 2
	digest = strings.ToLower(digest)
	if len(digest) != want {
		return fmt.Errorf("%s digest %q has %d hex digits, want %d", alg, digest, len(digest), want)
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return fmt.Errorf("%s digest %q: %w", alg, digest, err)
	}
	if old, ok := h[alg]; ok && old != digest {
		return fmt.Errorf("two different %s digests listed", alg)
	}
	h[alg] = digest
	return nil
}

// hasher computes every hash in a hashSet over what is written to it.
type hasher map[string]hash.Hash

func newHasher(want hashSet) hasher {
	h := hasher{}
	for alg := range want {
		h[alg] = newHash(alg)
	}
	return h
}

func (h hasher) Write(p []byte) (int, error) {
	for _, x := range h {
		x.Write(p) // hash.Hash writes never fail
	}
	return len(p), nil
}

// check compares the computed hashes with want, which must not be empty.
func (h hasher) check(name string, want hashSet) (hashSet, error) {
	if len(want) == 0 {
		return nil, fmt.Errorf("%w: %s: no trusted checksum to compare with", ErrUnverified, name)
	}
	got := hashSet{}
	for alg, x := range h {
		got[alg] = hex.EncodeToString(x.Sum(nil))
	}
	for _, alg := range hashAlgs {
		if w, ok := want[alg]; ok && got[alg] != w {
			return nil, fmt.Errorf("%w: %s: %s is %s, the release lists %s", ErrUnverified, name, alg, got[alg], w)
		}
	}
	return got, nil
}

// verifySignature checks a detached OpenPGP signature (armored or binary) over
// signed and returns who made it. signed is read once, or twice when the
// signing key has expired since (see below).
func verifySignature(kr openpgp.EntityList, signed io.ReadSeeker, sig []byte) (string, error) {
	s, signer, err := verifyOnce(kr, signed, sig, nil)
	if s != nil && errors.Is(err, pgperrors.ErrKeyExpired) {
		// Releases outlive signing keys: Flatcar replaces its signing subkey
		// yearly, so last year's release carries a signature by a key that has
		// expired since. Like gpg, accept it when the key was valid at the time
		// it signed. Revocation was already checked against the present
		// (go-crypto reports a revoked key before an expired one), and a
		// signature that itself carries an expiry must not have passed it.
		when := s.CreationTime
		s, signer, err = verifyOnce(kr, signed, sig, &packet.Config{Time: func() time.Time { return when }})
		if err == nil && s.SigExpired(time.Now()) {
			err = pgperrors.ErrSignatureExpired
		}
	}
	if err != nil {
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			return "", fmt.Errorf("%w: signature: made by key %s, which is not in the keyring", ErrUnverified, issuer(sig))
		}
		return "", fmt.Errorf("%w: signature: %v", ErrUnverified, err)
	}
	name := "unnamed key"
	if id := signer.PrimaryIdentity(); id != nil {
		name = id.Name
	}
	return fmt.Sprintf("%s, key %016X", name, *s.IssuerKeyId), nil
}

func verifyOnce(kr openpgp.EntityList, signed io.ReadSeeker, sig []byte, config *packet.Config) (*packet.Signature, *openpgp.Entity, error) {
	if _, err := signed.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	var body io.Reader = bytes.NewReader(sig)
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN ")) {
		block, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return nil, nil, fmt.Errorf("read armored signature: %w", err)
		}
		if block.Type != openpgp.SignatureType {
			return nil, nil, fmt.Errorf("got a %q block, want %q", block.Type, openpgp.SignatureType)
		}
		body = block.Body
	}
	return openpgp.VerifyDetachedSignature(kr, signed, body, config)
}

// issuer names the key a signature claims to be by, for an error message.
func issuer(sig []byte) string {
	var r io.Reader = bytes.NewReader(sig)
	if block, err := armor.Decode(bytes.NewReader(sig)); err == nil {
		r = block.Body
	}
	p, err := packet.NewReader(r).Next()
	if s, ok := p.(*packet.Signature); err == nil && ok && s.IssuerKeyId != nil {
		return fmt.Sprintf("%016X", *s.IssuerKeyId)
	}
	return "(unknown)"
}

// verifySignedText returns the verified text of a signed small file: either a
// clearsigned message (what Flatcar publishes as DIGESTS.asc), or, when asc is
// a plain detached signature, the separately fetched text it signs.
func verifySignedText(kr openpgp.EntityList, asc []byte, detachedText func() ([]byte, error)) (text []byte, signer string, err error) {
	if bytes.Contains(asc, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		block, _ := clearsign.Decode(asc)
		if block == nil {
			return nil, "", fmt.Errorf("%w: malformed clearsigned message", ErrUnverified)
		}
		sig, err := io.ReadAll(block.ArmoredSignature.Body)
		if err != nil {
			return nil, "", fmt.Errorf("%w: read clearsigned signature: %v", ErrUnverified, err)
		}
		// block.Bytes is the canonical text the signature covers;
		// block.Plaintext is the same text as published.
		signer, err := verifySignature(kr, bytes.NewReader(block.Bytes), sig)
		if err != nil {
			return nil, "", err
		}
		return block.Plaintext, signer, nil
	}
	text, err = detachedText()
	if err != nil {
		return nil, "", err
	}
	signer, err = verifySignature(kr, bytes.NewReader(text), asc)
	if err != nil {
		return nil, "", err
	}
	return text, signer, nil
}

// parseDigests reads a Gentoo-style DIGESTS file as Flatcar's build writes it:
//
//	# MD5 HASH
//	<hex>  <file>
//	# SHA1 HASH
//	<hex>  <file>
//	# SHA512 HASH
//	<hex>  <file>
//
// and returns the trusted hashes it lists for file.
func parseDigests(text []byte, file string) (hashSet, error) {
	got := hashSet{}
	alg := ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if h, ok := strings.CutPrefix(line, "#"); ok {
			f := strings.Fields(strings.ToLower(h))
			alg = ""
			if len(f) == 2 && f[1] == "hash" && newHash(f[0]) != nil {
				alg = f[0]
			}
			continue
		}
		digest, name, ok := splitSumLine(line)
		if !ok || alg == "" || name != file {
			continue
		}
		if err := got.addHex(alg, digest); err != nil {
			return nil, fmt.Errorf("DIGESTS line %d: %w", n, err)
		}
	}
	return got, sc.Err()
}

// parseSums reads a sha256sum/sha512sum style file ("<hex>  <file>" lines,
// "*" before the name in binary mode) and returns alg's digest for file.
func parseSums(text []byte, alg, file string) (hashSet, error) {
	got := hashSet{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		digest, name, ok := splitSumLine(strings.TrimSpace(sc.Text()))
		if !ok || name != file {
			continue
		}
		if err := got.addHex(alg, digest); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	return got, sc.Err()
}

func splitSumLine(line string) (digest, name string, ok bool) {
	digest, name, ok = strings.Cut(line, " ")
	if !ok {
		return "", "", false
	}
	name = strings.TrimPrefix(strings.TrimLeft(name, " "), "*")
	return digest, name, digest != "" && name != ""
}
