// Package assets downloads OS release images and verifies their signatures and
// checksums.
//
// It knows where Flatcar, Fedora CoreOS and Talos publish their PXE kernel and
// initrds and how each vouches for them: Flatcar signs a DIGESTS file per image
// (OpenPGP, clearsigned), Fedora CoreOS signs each artifact (detached OpenPGP
// signature) and lists its sha256 in the stream metadata, and Talos publishes
// only checksum files next to the release, so Talos images are checked against
// checksums fetched over HTTPS, not against a signature.
//
// A file is written to a temporary name in the destination directory and
// renamed into place only after it verified, so the real name never holds an
// unverified file.
package assets
