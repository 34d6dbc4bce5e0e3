package assets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/assets/assetstest"
	"github.com/provisiond/provisiond/internal/testutil"
)

// recorder is an Observer that remembers what it was told.
type recorder struct {
	mu          sync.Mutex
	downloading []string
	bytes       int64
	closed      int
	done        []File
}

type countWriter struct {
	r *recorder
}

func (c countWriter) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.bytes += int64(len(p))
	return len(p), nil
}

func (c countWriter) Close() error {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.closed++
	return nil
}

func (r *recorder) Downloading(name string, size int64) io.WriteCloser {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.downloading = append(r.downloading, name)
	return countWriter{r}
}

func (r *recorder) Done(f File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = append(r.done, f)
}

// fixture is a release on a test server and the request that fetches it.
type fixture struct {
	srv   *assetstest.Server
	req   Request
	files map[string][]byte // want, by local name
	paths map[string]string // served path, by local name
}

func flatcarFixture(t *testing.T) fixture {
	srv := assetstest.NewServer(t)
	dir, files := srv.Flatcar(t, "amd64", "4230.2.1")
	paths := map[string]string{}
	for name := range files {
		paths[name] = dir + name
	}
	return fixture{srv, Request{OS: Flatcar, Version: "4230.2.1", BaseURL: srv.URL, Dest: t.TempDir(), Keyring: srv.PublicKey(t)}, files, paths}
}

func fcosFixture(t *testing.T) fixture {
	srv := assetstest.NewServer(t)
	arts := srv.FCOS(t, "stable", "x86_64", "43.20261101.3.0")
	local := map[string]string{
		"kernel":    "fedora-coreos-live-kernel.x86_64",
		"initramfs": "fedora-coreos-live-initramfs.x86_64.img",
		"rootfs":    "fedora-coreos-live-rootfs.x86_64.img",
	}
	files, paths := map[string][]byte{}, map[string]string{}
	for key, a := range arts {
		files[local[key]] = a.Data
		paths[local[key]] = a.Path
	}
	return fixture{srv, Request{OS: FCOS, Version: "43.20261101.3.0", BaseURL: srv.URL, Dest: t.TempDir(), Keyring: srv.PublicKey(t)}, files, paths}
}

func talosFixture(t *testing.T) fixture {
	srv := assetstest.NewServer(t)
	dir, all := srv.Talos(t, "1.11.5", "amd64")
	files, paths := map[string][]byte{}, map[string]string{}
	for _, name := range []string{"vmlinuz-amd64", "initramfs-amd64.xz"} {
		files[name] = all[name]
		paths[name] = dir + name
	}
	return fixture{srv, Request{OS: Talos, Version: "v1.11.5", BaseURL: srv.URL, Dest: t.TempDir()}, files, paths}
}

// checkDir fails unless dir holds exactly want (no temporary leftovers).
func checkDir(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !(len(want) == 0 && errors.Is(err, os.ErrNotExist)) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[e.Name()]; !ok || !bytes.Equal(b, w) {
			t.Errorf("%s: unexpected file or content (%d bytes)", e.Name(), len(b))
		}
	}
	if len(names) != len(want) {
		t.Errorf("%s holds %v; want %d files", dir, names, len(want))
	}
}

func TestFetch(t *testing.T) {
	tests := []struct {
		name       string
		fixture    func(*testing.T) fixture
		change     func(*testing.T, *fixture)
		wantOrder  []string
		wantSigned bool
		wantTrust  string
	}{
		{
			name:       "flatcar",
			fixture:    flatcarFixture,
			wantOrder:  []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"},
			wantSigned: true,
			wantTrust:  "sha512 as in DIGESTS signed by Release Signing Test",
		},
		{
			name:    "flatcar arm64",
			fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) {
				dir, files := f.srv.Flatcar(t, "arm64", "4230.2.1")
				f.req.Arch = "aarch64"
				for name := range files {
					f.paths[name] = dir + name
				}
				f.files = files
			},
			wantOrder:  []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"},
			wantSigned: true,
		},
		{
			name:    "flatcar, detached DIGESTS.asc",
			fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) {
				for _, p := range f.paths {
					f.srv.Put(p+".DIGESTS.asc", assetstest.ArmoredDetachSign(t, f.srv.Key, f.srv.Get(p+".DIGESTS")))
				}
			},
			wantOrder:  []string{"flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz"},
			wantSigned: true,
		},
		{
			name:       "fcos",
			fixture:    fcosFixture,
			wantOrder:  []string{"fedora-coreos-live-kernel.x86_64", "fedora-coreos-live-initramfs.x86_64.img", "fedora-coreos-live-rootfs.x86_64.img"},
			wantSigned: true,
			wantTrust:  "signed by Release Signing Test",
		},
		{
			name:       "fcos current",
			fixture:    fcosFixture,
			change:     func(t *testing.T, f *fixture) { f.req.Version = "current" },
			wantOrder:  []string{"fedora-coreos-live-kernel.x86_64", "fedora-coreos-live-initramfs.x86_64.img", "fedora-coreos-live-rootfs.x86_64.img"},
			wantSigned: true,
		},
		{
			name:      "talos",
			fixture:   talosFixture,
			wantOrder: []string{"vmlinuz-amd64", "initramfs-amd64.xz"},
			wantTrust: "sha512 as in sha512sum.txt fetched over plain HTTP; not signature-verified",
		},
		{
			name:      "talos with sha256sum.txt only",
			fixture:   talosFixture,
			change:    func(t *testing.T, f *fixture) { f.srv.Remove("/v1.11.5/sha512sum.txt") },
			wantOrder: []string{"vmlinuz-amd64", "initramfs-amd64.xz"},
			wantTrust: "sha256 as in sha256sum.txt",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fixture(t)
			if tt.change != nil {
				tt.change(t, &f)
			}
			rec := &recorder{}
			res, err := (&Fetcher{Observer: rec}).Fetch(context.Background(), f.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Signed != tt.wantSigned || res.Dir != filepath.Join(f.req.Dest, f.req.OS) {
				t.Errorf("result = %+v", res)
			}
			var order []string
			var total int64
			for i, file := range res.Files {
				order = append(order, file.Name)
				total += file.Size
				if file.Present || file.Size != int64(len(f.files[file.Name])) {
					t.Errorf("file %+v", file)
				}
				if want := fileHash(file.Hash, f.files[file.Name]); file.Hash != want {
					t.Errorf("%s hash %s; want %s", file.Name, file.Hash, want)
				}
				if file.Verified == "" || !strings.Contains(file.Verified, tt.wantTrust) {
					t.Errorf("%s verified %q; want %q in it", file.Name, file.Verified, tt.wantTrust)
				}
				if want := map[bool]string{true: "kernel", false: "initrd"}[i == 0]; file.Role != want {
					t.Errorf("%s role %s; want %s", file.Name, file.Role, want)
				}
			}
			if strings.Join(order, " ") != strings.Join(tt.wantOrder, " ") {
				t.Errorf("files %v; want %v", order, tt.wantOrder)
			}
			checkDir(t, res.Dir, f.files)
			if len(rec.done) != len(tt.wantOrder) || len(rec.downloading) != len(tt.wantOrder) || rec.closed != len(tt.wantOrder) || rec.bytes != total {
				t.Errorf("observer saw %+v; want %d files, %d bytes", rec, len(tt.wantOrder), total)
			}
		})
	}
}

func TestFetchRefuses(t *testing.T) {
	other := assetstest.NewKey(t, "Someone Else")
	const (
		fk = "flatcar_production_pxe.vmlinuz"
		fi = "flatcar_production_pxe_image.cpio.gz"
		ck = "fedora-coreos-live-kernel.x86_64"
		cr = "fedora-coreos-live-rootfs.x86_64.img"
		tk = "vmlinuz-amd64"
	)
	tamper := func(f *fixture, name string) {
		b := append([]byte{}, f.srv.Get(f.paths[name])...)
		b[len(b)/2] ^= 1
		f.srv.Put(f.paths[name], b)
	}
	tests := []struct {
		name    string
		fixture func(*testing.T) fixture
		change  func(*testing.T, *fixture)
		want    []error
		wantMsg []string
		keep    []string // files that verified before the refusal and stay
		maxSize int64
	}{
		{
			name: "flatcar tampered image", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { tamper(f, fi) },
			want:   []error{ErrUnverified}, wantMsg: []string{fi, "sha512 is"}, keep: []string{fk},
		},
		{
			name: "flatcar DIGESTS altered after signing", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) {
				tamper(f, fk)
				p := f.paths[fk] + ".DIGESTS.asc"
				d := assetstest.Digests(fk, f.srv.Get(f.paths[fk]))
				signed := f.srv.Get(p)
				orig := assetstest.Digests(fk, f.files[fk])
				f.srv.Put(p, bytes.Replace(signed, orig[bytes.Index(orig, []byte("# SHA512")):], d[bytes.Index(d, []byte("# SHA512")):], 1))
			},
			want: []error{ErrUnverified}, wantMsg: []string{"signature", fk + ".DIGESTS.asc"},
		},
		{
			name: "flatcar signed by another key", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) {
				f.srv.Put(f.paths[fk]+".DIGESTS.asc", assetstest.ClearSign(t, other, f.srv.Get(f.paths[fk]+".DIGESTS")))
			},
			want: []error{ErrUnverified}, wantMsg: []string{"not in the keyring"},
		},
		{
			name: "flatcar embedded key does not trust a test signature", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { f.req.Keyring = nil },
			want:   []error{ErrUnverified}, wantMsg: []string{"not in the keyring"},
		},
		{
			name: "flatcar DIGESTS.asc missing", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { f.srv.Remove(f.paths[fi] + ".DIGESTS.asc") },
			want:   []error{ErrUnverified, ErrNotFound}, wantMsg: []string{"no signed DIGESTS", "/amd64-usr/4230.2.1/" + fi + ".DIGESTS.asc: 404 Not Found"},
		},
		{
			name: "flatcar DIGESTS without SHA512", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) {
				d := assetstest.Digests(fk, f.files[fk])
				d = d[:bytes.Index(d, []byte("# SHA512"))]
				f.srv.Put(f.paths[fk]+".DIGESTS.asc", assetstest.ClearSign(t, f.srv.Key, d))
			},
			want: []error{ErrUnverified}, wantMsg: []string{"no SHA512"},
		},
		{
			name: "flatcar DIGESTS for another file", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) {
				f.srv.Put(f.paths[fk]+".DIGESTS.asc", assetstest.ClearSign(t, f.srv.Key, assetstest.Digests(fi, f.files[fk])))
			},
			want: []error{ErrUnverified}, wantMsg: []string{"no SHA512"},
		},
		{
			name: "flatcar image 404", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { f.srv.Remove(f.paths[fi]) },
			want:   []error{ErrNotFound}, wantMsg: []string{"GET " + "http://", "/amd64-usr/4230.2.1/" + fi + ": 404 Not Found"}, keep: []string{fk},
		},
		{
			name: "flatcar too large", fixture: flatcarFixture, maxSize: 1000,
			want: []error{ErrTooLarge}, wantMsg: []string{fk, "at most 1000 accepted"},
		},
		{
			name: "fcos tampered rootfs", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) { tamper(f, cr) },
			want:   []error{ErrUnverified}, wantMsg: []string{cr, "sha256 is"},
			keep: []string{ck, "fedora-coreos-live-initramfs.x86_64.img"},
		},
		{
			name: "fcos tampered kernel with a matching stream sha256", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) {
				tamper(f, ck)
				sum := fmt.Sprintf("%x", sha256.Sum256(f.srv.Get(f.paths[ck])))
				orig := fmt.Sprintf("%x", sha256.Sum256(f.files[ck]))
				f.srv.Put("/streams/stable.json", bytes.Replace(f.srv.Get("/streams/stable.json"), []byte(orig), []byte(sum), 1))
			},
			want: []error{ErrUnverified}, wantMsg: []string{ck, "signature"},
		},
		{
			name: "fcos signature by another key", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) {
				f.srv.Put(f.paths[cr]+".sig", assetstest.DetachSign(t, other, f.files[cr]))
			},
			want: []error{ErrUnverified}, wantMsg: []string{cr, "not in the keyring"},
			keep: []string{ck, "fedora-coreos-live-initramfs.x86_64.img"},
		},
		{
			name: "fcos signature over other data", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) {
				f.srv.Put(f.paths[ck]+".sig", assetstest.DetachSign(t, f.srv.Key, []byte("something else")))
			},
			want: []error{ErrUnverified}, wantMsg: []string{ck, "signature"},
		},
		{
			name: "fcos signature missing", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) { f.srv.Remove(f.paths[ck] + ".sig") },
			want:   []error{ErrUnverified, ErrNotFound}, wantMsg: []string{"no signature", ".sig: 404 Not Found"},
		},
		{
			name: "fcos stream without signature URL", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) {
				var st map[string]any
				if err := json.Unmarshal(f.srv.Get("/streams/stable.json"), &st); err != nil {
					t.Fatal(err)
				}
				pxe := st["architectures"].(map[string]any)["x86_64"].(map[string]any)["artifacts"].(map[string]any)["metal"].(map[string]any)["formats"].(map[string]any)["pxe"].(map[string]any)
				delete(pxe["rootfs"].(map[string]any), "signature")
				b, _ := json.Marshal(st)
				f.srv.Put("/streams/stable.json", b)
			},
			want: []error{ErrUnverified}, wantMsg: []string{"rootfs", "no signature"},
		},
		{
			name: "fcos version not the stream's", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) { f.req.Version = "42.20250901.3.0" },
			want:   []error{ErrVersion}, wantMsg: []string{"42.20250901.3.0 is not the stable stream's release for x86_64, which is 43.20261101.3.0", "--version 43.20261101.3.0"},
		},
		{
			name: "fcos stream missing", fixture: fcosFixture,
			change: func(t *testing.T, f *fixture) { f.req.Stream = "testing" },
			want:   []error{ErrNotFound}, wantMsg: []string{"/streams/testing.json: 404 Not Found"},
		},
		{
			name: "fcos arch not in stream", fixture: fcosFixture,
			change:  func(t *testing.T, f *fixture) { f.req.Arch = "arm64" },
			wantMsg: []string{"no metal release for aarch64"},
		},
		{
			name: "talos tampered kernel", fixture: talosFixture,
			change: func(t *testing.T, f *fixture) { tamper(f, tk) },
			want:   []error{ErrUnverified}, wantMsg: []string{tk, "sha512 is"},
		},
		{
			name: "talos checksum files missing", fixture: talosFixture,
			change: func(t *testing.T, f *fixture) {
				f.srv.Remove("/v1.11.5/sha512sum.txt")
				f.srv.Remove("/v1.11.5/sha256sum.txt")
			},
			want: []error{ErrUnverified, ErrNotFound}, wantMsg: []string{"no checksum file", "/v1.11.5/sha256sum.txt: 404 Not Found"},
		},
		{
			name: "talos kernel not listed", fixture: talosFixture,
			change: func(t *testing.T, f *fixture) {
				f.srv.Put("/v1.11.5/sha512sum.txt", []byte(strings.Repeat("a", 128)+"  talosctl-linux-amd64\n"))
			},
			want: []error{ErrUnverified}, wantMsg: []string{"sha512sum.txt does not list it"},
		},
		{
			name: "talos with a keyring", fixture: talosFixture,
			change: func(t *testing.T, f *fixture) { f.req.Keyring = assetstest.PublicKey(t, other) },
			want:   []error{ErrBadRequest},
		},
		{
			name: "unknown OS", fixture: talosFixture,
			change: func(t *testing.T, f *fixture) { f.req.OS = "windows" },
			want:   []error{ErrBadRequest}, wantMsg: []string{"flatcar, fcos, talos"},
		},
		{
			name: "version escaping the directory", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { f.req.Version = "../x" },
			want:   []error{ErrBadRequest},
		},
		{
			name: "unknown arch", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { f.req.Arch = "riscv64" },
			want:   []error{ErrBadRequest},
		},
		{
			name: "unreadable keyring", fixture: flatcarFixture,
			change: func(t *testing.T, f *fixture) { f.req.Keyring = []byte("not a key") },
			want:   []error{ErrBadRequest}, wantMsg: []string{"keyring"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.fixture(t)
			if tt.change != nil {
				tt.change(t, &f)
			}
			_, err := (&Fetcher{MaxSize: tt.maxSize}).Fetch(context.Background(), f.req)
			if err == nil {
				t.Fatal("Fetch succeeded; want a refusal")
			}
			t.Logf("refused: %v", err)
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q is not %v", err, w)
				}
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			kept := map[string][]byte{}
			for _, name := range tt.keep {
				kept[name] = f.files[name]
			}
			checkDir(t, filepath.Join(f.req.Dest, f.req.OS), kept)
		})
	}
}

// TestFetchKeepsVerifiedFiles: a second run finds the files in place and
// verified and downloads nothing big; a file changed on disk is replaced.
func TestFetchKeepsVerifiedFiles(t *testing.T) {
	for _, mk := range []func(*testing.T) fixture{flatcarFixture, fcosFixture, talosFixture} {
		f := mk(t)
		t.Run(f.req.OS, func(t *testing.T) {
			if _, err := (&Fetcher{}).Fetch(context.Background(), f.req); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			res, err := (&Fetcher{Observer: rec}).Fetch(context.Background(), f.req)
			if err != nil {
				t.Fatal(err)
			}
			for _, file := range res.Files {
				if !file.Present {
					t.Errorf("%s downloaded again", file.Name)
				}
				if hits := f.srv.Hits(f.paths[file.Name]); hits != 1 {
					t.Errorf("%s requested %d times; want 1", file.Name, hits)
				}
			}
			if len(rec.downloading) != 0 || len(rec.done) != len(f.files) {
				t.Errorf("observer saw %+v", rec)
			}

			// Someone changed one file on disk: it no longer verifies and
			// is fetched again, the others are kept.
			name := res.Files[0].Name
			if err := os.WriteFile(filepath.Join(res.Dir, name), []byte("changed"), 0o644); err != nil {
				t.Fatal(err)
			}
			res, err = (&Fetcher{}).Fetch(context.Background(), f.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Files[0].Present || !res.Files[1].Present || f.srv.Hits(f.paths[name]) != 2 {
				t.Errorf("after a change on disk: %+v, %d requests", res.Files, f.srv.Hits(f.paths[name]))
			}
			checkDir(t, res.Dir, f.files)
		})
	}
}

// TestFetchStalledDownload: a server that stops sending mid-body is given up
// on, and nothing is left behind.
func TestFetchStalledDownload(t *testing.T) {
	f := talosFixture(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "vmlinuz-amd64") {
			http.Redirect(w, r, f.srv.URL+r.URL.Path, http.StatusFound)
			return
		}
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	f.req.BaseURL = srv.URL
	start := time.Now()
	_, err := (&Fetcher{Stall: 200 * time.Millisecond}).Fetch(context.Background(), f.req)
	if err == nil || !strings.Contains(err.Error(), "nothing received for 200ms") {
		t.Fatalf("Fetch = %v; want a stall error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s", d)
	}
	checkDir(t, filepath.Join(f.req.Dest, Talos), nil)
}

// TestFetchCanceled: cancelling the context (SIGINT in the command) stops the
// download and leaves nothing behind.
func TestFetchCanceled(t *testing.T) {
	f := talosFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "vmlinuz-amd64") {
			http.Redirect(w, r, f.srv.URL+r.URL.Path, http.StatusFound)
			return
		}
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		cancel()
		<-r.Context().Done()
	}))
	defer srv.Close()
	f.req.BaseURL = srv.URL
	_, err := (&Fetcher{}).Fetch(ctx, f.req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch = %v; want context.Canceled", err)
	}
	checkDir(t, filepath.Join(f.req.Dest, Talos), nil)
}

// fileHash is data's digest in the algorithm hash names ("sha512:..."), in
// the same spelling.
func fileHash(hash string, data []byte) string {
	switch alg, _, _ := strings.Cut(hash, ":"); alg {
	case "sha256":
		return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	case "sha512":
		return fmt.Sprintf("sha512:%x", sha512.Sum512(data))
	}
	return "a sha256: or sha512: digest"
}

// TestFetchNetworkFailure: without a network, or with a server that fails,
// every OS says so the same way: a download failure (ErrNetwork), or the
// server's status, and never "not verified", which reads like a bad
// signature.
func TestFetchNetworkFailure(t *testing.T) {
	down := "http://" + testutil.FreeAddr(t) // nothing listens
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	for _, name := range OSes() {
		for _, tc := range []struct {
			name, base string
			network    bool
		}{
			{"unreachable", down, true},
			{"503", failing.URL, false},
		} {
			t.Run(name+" "+tc.name, func(t *testing.T) {
				req := Request{OS: name, Version: "1.2.3", BaseURL: tc.base, Dest: t.TempDir()}
				_, err := (&Fetcher{}).Fetch(context.Background(), req)
				if err == nil || errors.Is(err, ErrUnverified) || errors.Is(err, ErrNetwork) != tc.network {
					t.Errorf("Fetch = %v; want a failure that is ErrNetwork %v and never ErrUnverified", err, tc.network)
				}
				if !tc.network && !strings.Contains(err.Error(), "503 Service Unavailable") {
					t.Errorf("Fetch = %v; want the server's status", err)
				}
			})
		}
	}
}
