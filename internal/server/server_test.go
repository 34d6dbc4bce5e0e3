package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

const base = "http://10.99.0.2:8080"

// newCore loads profiles dir into a core with a fresh store.
func newCore(tb testing.TB, dir string) *boot.Core {
	tb.Helper()
	db := memstore.New(store.Options{})
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: base, Store: db})
	if err := core.Reload(); err != nil {
		tb.Fatal(err)
	}
	return core
}

var configURL = regexp.MustCompile(`(?:ignition\.config\.url|talos\.config)=` + regexp.QuoteMeta(base) + `(/\S+)`)

// boot fetches a machine's /ipxe script the way iPXE does and returns the path
// of the config URL it carries, token included.
func bootPath(t *testing.T, ts *httptest.Server, mac string) string {
	t.Helper()
	code, body, _ := get(t, ts, "/ipxe?mac="+mac)
	m := configURL.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("GET /ipxe?mac=%s = %d, no config URL:\n%s", mac, code, body)
	}
	return m[1]
}

// newTestServer serves the repository's examples with a small assets tree.
func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	core := newCore(t, "../../examples")
	assetsDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(assetsDir, "flatcar"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(assetsDir, "flatcar", "kernel"), []byte("0123456789abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink pointing out of the assets root must not be followed.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(assetsDir, "escape")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(assetsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	ts := httptest.NewServer(New(Config{Core: core, AdvertiseURL: base, Assets: root, Binaries: fakeBinaries{}}).Handler())
	t.Cleanup(ts.Close)
	return ts
}

type fakeBinaries struct{}

func (fakeBinaries) Open(name string) (io.ReadSeeker, int64, error) {
	if name != "ipxe.efi" {
		return nil, 0, os.ErrNotExist
	}
	return strings.NewReader("MZ-efi"), 6, nil
}

func get(t *testing.T, ts *httptest.Server, path string, header ...string) (int, string, http.Header) {
	t.Helper()
	a := request(t, ts, http.MethodGet, path, header...)
	return a.code, string(a.body), a.header
}

func TestBootPath(t *testing.T) {
	ts := newTestServer(t)
	for _, tc := range []struct {
		name, path string
		code       int
		contains   []string
	}{
		{"chain script", "/boot.ipxe", 200, []string{"#!ipxe", base + "/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&arch=${buildarch}"}},
		{"machine script hexhyp", "/ipxe?mac=52-54-00-00-00-01&uuid=&arch=x86_64", 200, []string{
			"kernel " + base + "/assets/flatcar/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz",
			"ignition.config.url=" + base + "/ignition?mac=52-54-00-00-00-01",
			"initrd --name flatcar_production_pxe_image.cpio.gz " + base + "/assets/flatcar/flatcar_production_pxe_image.cpio.gz",
			"\nboot\n",
		}},
		{"machine script upper colons", "/ipxe?mac=52:54:00:00:00:02", 200, []string{"machine node2, profile fcos-live", "initrd=fedora-coreos-live-initramfs.x86_64.img initrd=fedora-coreos-live-rootfs.x86_64.img"}},
		{"unknown machine gets default", "/ipxe?mac=52:54:00:00:00:99", 200, []string{"Default profile discovery"}},
		{"no identity", "/ipxe?arch=x86_64", 400, []string{"no usable mac or uuid"}},
		{"bad mac", "/ipxe?mac=zz", 400, []string{`mac "zz" is not a MAC address`}},
		{"placeholder uuid only", "/ipxe?uuid=00000000-0000-0000-0000-000000000000", 400, []string{"no usable mac or uuid"}},
		{"ignition without a token", "/ignition?mac=52-54-00-00-00-01", 403, []string{"config refused: token-missing"}},
		{"ignition with a forged token", "/ignition?mac=52-54-00-00-00-01&token=AAAA", 403, []string{"config refused: token-mismatch"}},
		{"ignition of a machine that never booted", "/ignition?mac=52-54-00-00-00-55&token=AAAA", 403, []string{"config refused: no-session"}},
		{"config of ignition profile", "/config?mac=52-54-00-00-00-01", 404, []string{"no config of this kind"}},
		{"asset", "/assets/flatcar/kernel", 200, []string{"0123456789abcdef"}},
		{"asset traversal", "/assets/../../etc/passwd", 404, nil},
		{"asset encoded traversal", "/assets/%2e%2e/%2e%2e/etc/passwd", 404, nil},
		{"asset symlink escape", "/assets/escape", 404, nil},
		{"asset directory", "/assets/flatcar", 404, nil},
		{"nbp", "/nbp/ipxe.efi", 200, []string{"MZ-efi"}},
		{"nbp unknown", "/nbp/evil.efi", 404, nil},
		{"health", "/healthz", 200, []string{`"status":"ok"`, `"last_reload_ok":true`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := get(t, ts, tc.path)
			if code != tc.code {
				t.Fatalf("GET %s = %d %q; want %d", tc.path, code, body, tc.code)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("GET %s body lacks %q:\n%s", tc.path, c, body)
				}
			}
		})
	}
}

// The config URL an /ipxe script carries works once, for that machine only.
func TestConfigSecrecy(t *testing.T) {
	ts := newTestServer(t)
	bootPath(t, ts, "52-54-00-00-00-02") // node2 has a session of its own
	node1 := bootPath(t, ts, "52-54-00-00-00-01")
	unknown := bootPath(t, ts, "52-54-00-00-00-99")
	for _, tc := range []struct {
		name, path string
		code       int
		contains   string
	}{
		{"own config", node1, 200, "node1.lab"},
		{"fetched twice", node1, 403, "already-served"},
		{"Default machine's own config", unknown, 200, "52%3A54%3A00%3A00%3A00%3A99"},
		{"node1's token for node2", strings.Replace(node1, "52-54-00-00-00-01", "52-54-00-00-00-02", 1), 403, "token-mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := get(t, ts, tc.path)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("GET %s = %d %q; want %d with %q", tc.path, code, body, tc.code, tc.contains)
			}
			if code == 200 && h.Get("Cache-Control") != "no-store" {
				t.Errorf("config served with Cache-Control %q; want no-store", h.Get("Cache-Control"))
			}
		})
	}
}

func TestUnknownMachineWithoutDefault(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("kind: Profile\nname: x\nboot: {kernel: /assets/k}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{Core: newCore(t, dir), AdvertiseURL: base}).Handler())
	defer ts.Close()
	code, body, _ := get(t, ts, "/ipxe?mac=52-54-00-00-00-01")
	if code != 404 || strings.Count(strings.TrimSpace(body), "\n") != 0 || !strings.Contains(body, "unknown machine") {
		t.Fatalf("GET /ipxe for unknown machine = %d %q; want 404 with a one-line reason", code, body)
	}
}

func TestAssetRange(t *testing.T) {
	ts := newTestServer(t)
	code, body, h := get(t, ts, "/assets/flatcar/kernel", "Range", "bytes=4-7")
	if code != http.StatusPartialContent || body != "4567" || h.Get("Content-Range") != "bytes 4-7/16" {
		t.Fatalf("range GET = %d %q %q; want 206 \"4567\"", code, body, h.Get("Content-Range"))
	}
}

// TestServedIgnitionPassesUpstreamValidator runs the real ignition-validate on
// every Machine's served config.
func TestServedIgnitionPassesUpstreamValidator(t *testing.T) {
	validator, err := exec.LookPath("ignition-validate")
	if err != nil {
		t.Skip("ignition-validate not installed (Debian package ignition)")
	}
	ts := newTestServer(t)
	for _, mac := range []string{"52-54-00-00-00-01", "52-54-00-00-00-02", "52-54-00-00-00-03", "52-54-00-00-00-77"} {
		code, body, _ := get(t, ts, bootPath(t, ts, mac))
		if code != 200 {
			t.Fatalf("GET /ignition?mac=%s = %d %s", mac, code, body)
		}
		f := filepath.Join(t.TempDir(), "config.ign")
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(validator, f).CombinedOutput(); err != nil {
			t.Errorf("ignition-validate rejects the config for %s: %v\n%s\n%s", mac, err, out, body)
		}
	}
}

// FuzzBootQuery throws arbitrary query strings at the boot endpoints: nothing may
// panic, and every answer is a deliberate status.
func FuzzBootQuery(f *testing.F) {
	for _, s := range []string{"mac=52-54-00-00-00-01", "mac=%zz", "uuid=" + strings.Repeat("a", 5000), "mac=&uuid=&arch=", "mac=52:54:00:00:00:01&mac=x", "a=b&c"} {
		f.Add(s)
	}
	h := New(Config{Core: newCore(f, "../../examples"), AdvertiseURL: base}).Handler()
	f.Fuzz(func(t *testing.T, q string) {
		for _, p := range []string{"/ipxe", "/ignition", "/config"} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL = &url.URL{Path: p, RawQuery: q}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch rec.Code {
			case 200, 400, 403, 404:
			default:
				t.Fatalf("GET %s?%s = %d %s", p, q, rec.Code, rec.Body)
			}
		}
	})
}

// A chain request that names its machine puts it in the inventory.
func TestChainScriptRecordsMachine(t *testing.T) {
	core := newCore(t, "../../examples")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = core.Run(ctx) }()
	ts := httptest.NewServer(New(Config{Core: core, AdvertiseURL: base}).Handler())
	defer ts.Close()
	if code, body, _ := get(t, ts, "/boot.ipxe?mac=52-54-00-00-00-42&platform=efi&arch=x86_64"); code != 200 {
		t.Fatalf("GET /boot.ipxe = %d %s", code, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := core.Machine(ctx, "52:54:00:00:00:42")
		if err == nil {
			if m.State != store.StateDiscovered || m.Arch != "efi-x86_64" {
				t.Errorf("recorded %+v; want discovered efi-x86_64", m)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine not recorded: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The inventory records the arch a request names: a huge or strange one is
// a bad request, not a record (a 500 KB arch once grew the store by 89 MB).
func TestArchBounded(t *testing.T) {
	ts := newTestServer(t)
	for _, q := range []string{"arch=" + strings.Repeat("x", 500<<10), "arch=%3Cscript%3E", "platform=efi&arch=" + strings.Repeat("a", 61)} {
		// Past the header limit the server answers 431 before any handler runs.
		if code, body, _ := get(t, ts, "/ipxe?mac=52-54-00-00-00-42&"+q); code != http.StatusBadRequest && code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("GET /ipxe?...&%.40s = %d %.100s; want 400 or 431", q, code, body)
		}
	}
	if code, body, _ := get(t, ts, "/ipxe?mac=52-54-00-00-00-42&platform=efi&arch=x86_64"); code != http.StatusOK {
		t.Errorf("a real arch: %d %s", code, body)
	}
}
