package assets

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// fcosOfficial is where Fedora CoreOS publishes stream metadata and builds.
const fcosOfficial = "https://builds.coreos.fedoraproject.org"

// fcosStream is the part of stream metadata (streams/<stream>.json, the format
// of github.com/coreos/stream-metadata-go) this package reads.
type fcosStream struct {
	Architectures map[string]struct {
		Artifacts map[string]struct {
			Release string                             `json:"release"`
			Formats map[string]map[string]fcosArtifact `json:"formats"`
		} `json:"artifacts"`
	} `json:"architectures"`
}

type fcosArtifact struct {
	Location  string `json:"location"`
	Signature string `json:"signature"`
	Sha256    string `json:"sha256"`
}

// fcosArch maps Request.Arch to Fedora's architecture names.
var fcosArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// planFCOS reads the stream metadata. A stream lists only its current release,
// so any other version is refused rather than guessed at. Each artifact is
// later checked twice, as coreos-installer does with the signature and as the
// stream promises with the sha256: the metadata itself is not signed.
func (f *Fetcher) planFCOS(ctx context.Context, req Request) (plan, error) {
	base := req.BaseURL
	if base == "" {
		base = fcosOfficial
	}
	streamURL := base + "/streams/" + req.Stream + ".json"
	raw, err := f.getSmall(ctx, streamURL, maxMeta)
	if err != nil {
		return plan{}, fmt.Errorf("stream %s: %w", req.Stream, err)
	}
	var st fcosStream
	if err := json.Unmarshal(raw, &st); err != nil {
		return plan{}, fmt.Errorf("stream %s: %s: %w", req.Stream, streamURL, err)
	}
	arch := fcosArch[req.Arch]
	metal, ok := st.Architectures[arch].Artifacts["metal"]
	if !ok || metal.Release == "" {
		return plan{}, fmt.Errorf("stream %s: %s lists no metal release for %s", req.Stream, streamURL, arch)
	}
	if req.Version != "current" && req.Version != metal.Release {
		return plan{}, fmt.Errorf("%w: Fedora CoreOS %s is not the %s stream's release for %s, which is %s; "+
			"a stream lists only its current release, so fetch that (--version %s) or pick the stream that has %s",
			ErrVersion, req.Version, req.Stream, arch, metal.Release, metal.Release, req.Version)
	}
	pxe := metal.Formats["pxe"]
	p := plan{version: metal.Release, signed: true}
	for _, part := range []struct{ key, name, role string }{
		// The names examples/profiles.yaml and the README use, without
		// the release in them, so profiles survive an update.
		{"kernel", "fedora-coreos-live-kernel." + arch, "kernel"},
		{"initramfs", "fedora-coreos-live-initramfs." + arch + ".img", "initrd"},
		{"rootfs", "fedora-coreos-live-rootfs." + arch + ".img", "initrd"},
	} {
		a, ok := pxe[part.key]
		if !ok || a.Location == "" {
			return plan{}, fmt.Errorf("stream %s: release %s lists no pxe %s for %s", req.Stream, metal.Release, part.key, arch)
		}
		if a.Signature == "" {
			return plan{}, fmt.Errorf("%w: stream %s: pxe %s of %s has no signature", ErrUnverified, req.Stream, part.key, metal.Release)
		}
		hashes := hashSet{}
		if err := hashes.addHex("sha256", a.Sha256); err != nil {
			return plan{}, fmt.Errorf("%w: stream %s: pxe %s of %s: %v", ErrUnverified, req.Stream, part.key, metal.Release, err)
		}
		loc, err := resolve(streamURL, a.Location, req.BaseURL)
		if err != nil {
			return plan{}, fmt.Errorf("stream %s: pxe %s: %w", req.Stream, part.key, err)
		}
		sig, err := resolve(streamURL, a.Signature, req.BaseURL)
		if err != nil {
			return plan{}, fmt.Errorf("stream %s: pxe %s signature: %w", req.Stream, part.key, err)
		}
		p.artifacts = append(p.artifacts, artifact{
			name:   part.name,
			role:   part.role,
			url:    loc,
			hashes: hashes,
			sigURL: sig,
			trust:  "sha256 as in stream " + req.Stream,
		})
	}
	return p, nil
}

// resolve makes ref absolute against the stream's URL and, for a mirror
// (mirror != ""), moves URLs on the official host onto the mirror: stream
// files name the official host, and an air-gapped mirror of the whole tree
// must not send the command back out to it.
func resolve(streamURL, ref, mirror string) (string, error) {
	b, err := url.Parse(streamURL)
	if err != nil {
		return "", err
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", ref, err)
	}
	u := b.ResolveReference(r).String()
	if mirror != "" {
		if rest, ok := strings.CutPrefix(u, fcosOfficial+"/"); ok {
			u = mirror + "/" + rest
		}
	}
	return u, nil
}
