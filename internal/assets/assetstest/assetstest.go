// Package assetstest serves fake OS releases for tests that must not touch the
// internet: the real directory layouts and checksum and signature formats of
// Flatcar, Fedora CoreOS and Talos, signed by a throwaway OpenPGP key, on a
// loopback httptest server.
package assetstest

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Server serves files put into it and counts requests per path.
type Server struct {
	URL string
	Key *openpgp.Entity // signs what Flatcar and FCOS put here

	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

// NewServer starts a server on loopback, closed when the test ends.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{Key: NewKey(tb, "Release Signing Test"), files: map[string][]byte{}, hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	b, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.Write(b)
}

// Put serves data at path (which starts with /).
func (s *Server) Put(path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
}

// Get returns what is served at path.
func (s *Server) Get(path string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[path]
}

// Remove stops serving path: it answers 404.
func (s *Server) Remove(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, path)
}

// Hits counts the requests for path so far.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// PublicKey is the server's key as an armored key file, for --keyring.
func (s *Server) PublicKey(tb testing.TB) []byte { return PublicKey(tb, s.Key) }

// NewKey makes a throwaway Ed25519 signing key (fast, unlike RSA).
func NewKey(tb testing.TB, name string) *openpgp.Entity {
	tb.Helper()
	e, err := openpgp.NewEntity(name, "test only", "test@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// PublicKey returns e's public key, armored.
func PublicKey(tb testing.TB, e *openpgp.Entity) []byte {
	tb.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err == nil {
		err = e.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// ClearSign returns text clearsigned by e, as gpg --clearsign writes it.
func ClearSign(tb testing.TB, e *openpgp.Entity, text []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	w, err := clearsign.Encode(&b, e.PrivateKey, nil)
	if err == nil {
		_, err = w.Write(text)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// DetachSign returns a binary detached signature by e over data, as
// gpg --detach-sign writes it.
func DetachSign(tb testing.TB, e *openpgp.Entity, data []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := openpgp.DetachSign(&b, e, bytes.NewReader(data), nil); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// ArmoredDetachSign is DetachSign, armored (gpg --armor --detach-sign).
func ArmoredDetachSign(tb testing.TB, e *openpgp.Entity, data []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, e, bytes.NewReader(data), nil); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// Content returns recognisable file content of a few hundred KiB, enough for
// several reads.
func Content(what string) []byte {
	return bytes.Repeat([]byte(what+"\n"), 300<<10/(len(what)+1))
}

// Digests returns a DIGESTS file for name as Flatcar's build writes it
// (md5sum, sha1sum and sha512sum output under "# <ALG> HASH" headers).
func Digests(name string, data []byte) []byte {
	return fmt.Appendf(nil, "# MD5 HASH\n%x  %s\n# SHA1 HASH\n%x  %s\n# SHA512 HASH\n%x  %s\n",
		md5.Sum(data), name, sha1.Sum(data), name, sha512.Sum512(data), name)
}

// FlatcarFiles are the files of a Flatcar PXE release.
var FlatcarFiles = []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"}

// Flatcar serves a Flatcar release under /<arch>-usr/<version>/: each file,
// its DIGESTS and its DIGESTS.asc clearsigned by s.Key. It returns the
// directory path and the files' content by name.
func (s *Server) Flatcar(tb testing.TB, arch, version string) (string, map[string][]byte) {
	dir := "/" + arch + "-usr/" + version + "/"
	files := map[string][]byte{}
	for _, name := range FlatcarFiles {
		data := Content("flatcar " + version + " " + arch + " " + name)
		digests := Digests(name, data)
		s.Put(dir+name, data)
		s.Put(dir+name+".DIGESTS", digests)
		s.Put(dir+name+".DIGESTS.asc", ClearSign(tb, s.Key, digests))
		s.Put(dir+name+".sig", DetachSign(tb, s.Key, data))
		files[name] = data
	}
	return dir, files
}

// FCOSArtifact is one pxe artifact of a served Fedora CoreOS release.
type FCOSArtifact struct {
	Path string // where it is served; the signature is at Path+".sig"
	Data []byte
}

// FCOS serves stream metadata at /streams/<stream>.json listing release as
// the stream's metal release for arch (x86_64 or aarch64), with kernel,
// initramfs and rootfs under /prod/streams/..., each with a binary detached
// signature by s.Key and its sha256 in the metadata. It returns the artifacts
// by their stream key.
func (s *Server) FCOS(tb testing.TB, stream, arch, release string) map[string]FCOSArtifact {
	dir := fmt.Sprintf("/prod/streams/%s/builds/%s/%s/", stream, release, arch)
	names := map[string]string{
		"kernel":    "fedora-coreos-" + release + "-live-kernel." + arch,
		"initramfs": "fedora-coreos-" + release + "-live-initramfs." + arch + ".img",
		"rootfs":    "fedora-coreos-" + release + "-live-rootfs." + arch + ".img",
	}
	out := map[string]FCOSArtifact{}
	pxe := map[string]any{}
	for key, name := range names {
		data := Content("fcos " + release + " " + name)
		p := dir + name
		s.Put(p, data)
		s.Put(p+".sig", DetachSign(tb, s.Key, data))
		out[key] = FCOSArtifact{Path: p, Data: data}
		pxe[key] = map[string]string{
			"location":  s.URL + p,
			"signature": s.URL + p + ".sig",
			"sha256":    fmt.Sprintf("%x", sha256.Sum256(data)),
		}
	}
	meta := map[string]any{
		"stream":   stream,
		"metadata": map[string]string{"last-modified": "2026-11-01T00:00:00Z", "generator": "assetstest"},
		"architectures": map[string]any{
			arch: map[string]any{
				"artifacts": map[string]any{
					"metal": map[string]any{
						"release": release,
						"formats": map[string]any{
							"pxe":    pxe,
							"raw.xz": map[string]any{"disk": map[string]string{"location": s.URL + dir + "disk.raw.xz", "sha256": strings.Repeat("0", 64)}},
						},
					},
				},
			},
		},
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	s.Put("/streams/"+stream+".json", b)
	return out
}

// Talos serves a Talos release under /v<version>/: vmlinuz-<arch>,
// initramfs-<arch>.xz and sha256sum.txt and sha512sum.txt listing them among
// other release files, as the release workflow writes them. It returns the
// directory path and the files' content by name.
func (s *Server) Talos(tb testing.TB, version, arch string) (string, map[string][]byte) {
	dir := "/v" + strings.TrimPrefix(version, "v") + "/"
	files := map[string][]byte{}
	var s256, s512 bytes.Buffer
	for _, name := range []string{"initramfs-" + arch + ".xz", "metal-" + arch + ".iso", "talosctl-linux-" + arch, "vmlinuz-" + arch} {
		data := Content("talos " + version + " " + name)
		s.Put(dir+name, data)
		files[name] = data
		fmt.Fprintf(&s256, "%x  %s\n", sha256.Sum256(data), name)
		fmt.Fprintf(&s512, "%x  %s\n", sha512.Sum512(data), name)
	}
	s.Put(dir+"sha256sum.txt", s256.Bytes())
	s.Put(dir+"sha512sum.txt", s512.Bytes())
	return dir, files
}
