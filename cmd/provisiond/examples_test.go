package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vincent-petithory/dataurl"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/server"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

// The examples directory is what `make run` serves and what users copy. These
// tests hold every example to what its comments and examples/README.md
// promise, through the daemon's own code paths: validate and explain as the
// CLI runs them, and each config as the HTTP server serves it to its example
// Machine, checked by the upstream validators where there is one.

const examplesDir = "../../examples"

// example is one profile of examples/ and the Machine that shows it.
type example struct {
	profile string
	mac     string // the example Machine's (or, for the Default, any unlisted) MAC
	machine string // "" for the Default
	kind    profiles.ConfigKind
	args    []string // kernel arguments the example promises
	// once: after the phone-home the machine's next script is `exit`.
	once bool
	// phoneHome: the served config reports success to provisiond, and the
	// test performs that report with the URL and token the config carries.
	phoneHome bool
	// wipe: the machine gets this profile through `provisiond machines wipe`.
	wipe bool
	// check looks at the served config beyond the generic checks.
	check func(t *testing.T, body []byte)
}

var examples = []example{
	{
		profile: "flatcar-worker", mac: "52:54:00:00:00:01", machine: "node1", kind: profiles.ConfigButane,
		args:  []string{"flatcar.first_boot=yes", "console=ttyS0"},
		check: wantIgnitionFile("/etc/hostname", "node1.lab"),
	},
	{
		profile: "fcos-live", mac: "52:54:00:00:00:02", machine: "node2", kind: profiles.ConfigButane,
		args:  []string{"ignition.firstboot", "ignition.platform.id=metal"},
		check: wantIgnitionFile("/etc/hostname", "node2.lab"),
	},
	{
		profile: "flatcar-install", mac: "52:54:00:00:00:03", machine: "node3", kind: profiles.ConfigButane,
		args: []string{"flatcar.first_boot=yes"}, once: true, phoneHome: true,
		check: func(t *testing.T, body []byte) {
			unit := ignitionUnit(t, body, "provisiond-install.service")
			install := strings.Index(unit, "ExecStart=/usr/bin/flatcar-install -d /dev/sda -i /opt/provisiond/disk.ign")
			phone := strings.Index(unit, "ExecStart=/usr/bin/curl")
			reboot := strings.Index(unit, "ExecStart=/usr/bin/systemctl reboot")
			if install < 0 || phone < install || reboot < phone {
				t.Errorf("provisiond-install.service does not run flatcar-install, then the phone-home, then reboot:\n%s", unit)
			}
			disk := ignitionFile(t, body, "/opt/provisiond/disk.ign")
			validateIgnition(t, "the installed system's Ignition (/opt/provisiond/disk.ign)", disk)
			if !bytes.Contains(disk, []byte("node3.lab")) {
				t.Errorf("the installed system's Ignition lacks the hostname:\n%s", disk)
			}
		},
	},
	{
		profile: "fcos-install", mac: "52:54:00:00:00:11", machine: "node4", kind: profiles.ConfigButane,
		args: []string{"ignition.firstboot", "ignition.platform.id=metal"},
		once: true, phoneHome: true,
		check: func(t *testing.T, body []byte) {
			// coreos-installer runs because installer.d holds its options;
			// the Ignition it embeds must exist in this config and validate.
			var opts map[string]any
			if err := yaml.Unmarshal(ignitionFile(t, body, "/etc/coreos/installer.d/50-provisiond.yaml"), &opts); err != nil {
				t.Fatalf("installer config: %v", err)
			}
			if opts["dest-device"] != "/dev/sda" {
				t.Errorf("installer config dest-device = %v; want /dev/sda for a machine never inspected", opts["dest-device"])
			}
			path, _ := opts["ignition-file"].(string)
			if path == "" {
				t.Fatalf("installer config names no ignition-file: %v", opts)
			}
			if consoles, ok := opts["console"].([]any); !ok || !slices.Contains(consoles, any("ttyS0,115200n8")) {
				t.Errorf("installer config console = %#v; want a list holding ttyS0,115200n8", opts["console"])
			}
			installed := ignitionFile(t, body, path)
			validateIgnition(t, "the installed system's Ignition ("+path+")", installed)
			if !bytes.Contains(installed, []byte("node4.lab")) {
				t.Errorf("the installed system's Ignition lacks the hostname:\n%s", installed)
			}
			unit := ignitionUnit(t, body, "provisiond-installed.service")
			for _, w := range []string{"After=coreos-installer.service", "Before=coreos-installer.target", "RequiredBy=coreos-installer.target"} {
				if !strings.Contains(unit, w) {
					t.Errorf("the phone-home unit lacks %q, so it would not run between the install and the installer's reboot:\n%s", w, unit)
				}
			}
		},
	},
	{
		profile: "talos-controlplane", mac: "52:54:00:00:00:12", machine: "cp1", kind: profiles.ConfigTalos,
		args:  []string{"talos.platform=metal", "slab_nomerge", "pti=on"},
		check: checkTalos,
	},
	{
		profile: "discovery", mac: "52:54:00:00:00:99", kind: profiles.ConfigButane,
		args: []string{"flatcar.first_boot=yes"},
		check: func(t *testing.T, body []byte) {
			wantIgnitionFile("/etc/motd.d/provisiond.conf", "52:54:00:00:00:99")(t, body)
			script := string(ignitionFile(t, body, "/opt/provisiond/inspect.sh"))
			fetch := regexp.MustCompile(`curl [^\n]*-o /opt/provisiond/provisiond "http://[^"]+/agent/\$arch"`).FindStringIndex(script)
			run := strings.Index(script, "exec /opt/provisiond/provisiond agent\n")
			if fetch == nil || run < fetch[1] {
				t.Errorf("inspect.sh does not download the agent from the server, then run it with no flags:\n%s", script)
			}
			unit := ignitionUnit(t, body, "provisiond-inspect.service")
			inspect := strings.Index(unit, "ExecStart=/opt/provisiond/inspect.sh")
			off := strings.Index(unit, "ExecStart=/usr/bin/systemctl poweroff")
			if inspect < 0 || off < inspect {
				t.Errorf("provisiond-inspect.service does not inspect, then power off:\n%s", unit)
			}
		},
	},
	{
		// Runs last: it wipes node1, whose own example ran above.
		profile: "wipe", mac: "52:54:00:00:00:01", machine: "node1", kind: profiles.ConfigButane,
		args: []string{"flatcar.first_boot=yes"}, wipe: true, phoneHome: true,
		check: func(t *testing.T, body []byte) {
			script := ignitionFile(t, body, "/opt/provisiond/wipe.sh")
			for _, w := range []string{"wipefs --all --force", "sgdisk --zap-all"} {
				if !bytes.Contains(script, []byte(w)) {
					t.Errorf("wipe.sh lacks %q:\n%s", w, script)
				}
			}
			unit := ignitionUnit(t, body, "provisiond-wipe.service")
			wipe := strings.Index(unit, "ExecStart=/opt/provisiond/wipe.sh")
			phone := strings.Index(unit, "ExecStart=/usr/bin/curl")
			off := strings.Index(unit, "ExecStart=/usr/bin/systemctl poweroff")
			if wipe < 0 || phone < wipe || off < phone {
				t.Errorf("provisiond-wipe.service does not wipe, then phone home, then power off:\n%s", unit)
			}
		},
	},
}

// TestExamplesValidate runs `provisiond validate` and `provisiond explain` on
// examples/ as a user would, and checks that every Profile there has an
// example in this file (so a new one cannot go untested).
func TestExamplesValidate(t *testing.T) {
	set, err := profiles.Load(examplesDir, profiles.LoadOptions{})
	if err != nil {
		t.Fatalf("examples do not load: %v", err)
	}
	code, out, errOut := runCmd("validate", examplesDir)
	want := fmt.Sprintf("ok: %d profile(s), %d machine(s), default: discovery\n", len(set.Profiles), len(set.Machines))
	if code != 0 || out != want {
		t.Fatalf("provisiond validate examples = %d %q %q; want 0 %q", code, out, errOut, want)
	}
	covered := map[string]bool{}
	for _, ex := range examples {
		covered[ex.profile] = true
	}
	for name := range set.Profiles {
		if !covered[name] {
			t.Errorf("profile %s in examples/ has no entry in examples_test.go", name)
		}
	}
	for _, m := range set.Machines {
		if !slices.ContainsFunc(examples, func(ex example) bool { return ex.machine == m.Name && ex.profile == m.Profile }) {
			t.Errorf("machine %s (profile %s) in examples/ has no entry in examples_test.go", m.Name, m.Profile)
		}
	}

	for _, ex := range examples {
		if ex.wipe {
			continue // explain shows what a machine matches, not a wipe in progress
		}
		t.Run("explain "+ex.profile, func(t *testing.T) {
			code, out, errOut := runCmd("explain", examplesDir, "--mac", ex.mac)
			if code != 0 {
				t.Fatalf("explain --mac %s = %d %s", ex.mac, code, errOut)
			}
			wants := []string{"profile:  " + ex.profile + " (", fmt.Sprintf("boot-once: %v", ex.once)}
			if ex.machine != "" {
				wants = append(wants, "machine:  "+ex.machine+" (machines.yaml:")
			}
			for _, a := range ex.args {
				wants = append(wants, " "+a+" ")
			}
			for _, w := range wants {
				if !strings.Contains(out, w) {
					t.Errorf("explain --mac %s lacks %q:\n%s", ex.mac, w, out)
				}
			}
		})
	}
}

// TestExamplesServed boots each example Machine against the HTTP server on
// the examples: its iPXE script, its config fetched with the URL and token
// the script carries, the config checked (ignition-validate for Ignition),
// then, where the example phones home, the phone-home it would send and the
// script the machine gets next.
func TestExamplesServed(t *testing.T) {
	validator := ignitionValidator(t)
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "provisiond.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// The advertise URL must be where the test server listens: configs carry
	// the phone-home URL built from it.
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	core := boot.New(boot.Config{ProfilesDir: examplesDir, AdvertiseURL: base, Store: db, WipeProfile: "wipe"})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	const operatorToken = "operator-token"
	ts.Config.Handler = server.New(server.Config{
		Core:         core,
		AdvertiseURL: base,
		API:          api.New(api.Config{Backend: core, Token: operatorToken}),
	}).Handler()
	ts.Start()
	t.Cleanup(ts.Close)

	for _, ex := range examples {
		t.Run(ex.profile, func(t *testing.T) {
			ctx := context.Background()
			if ex.wipe {
				if _, _, err := core.Wipe(ctx, ex.mac, "examples_test", "wipe example", false); err != nil {
					t.Fatalf("wipe %s: %v", ex.mac, err)
				}
			}
			id := strings.ReplaceAll(ex.mac, ":", "-")
			code, script := httpGet(t, ts, "/ipxe?mac="+id)
			if code != 200 {
				t.Fatalf("GET /ipxe?mac=%s = %d %s", id, code, script)
			}
			describe := "Default profile " + ex.profile
			if ex.machine != "" {
				describe = "machine " + ex.machine + ", profile " + ex.profile
			}
			kernel := kernelLine(script)
			if !strings.Contains(script, describe) || kernel == "" {
				t.Fatalf("script for %s is not %q:\n%s", ex.mac, describe, script)
			}
			for _, a := range ex.args {
				if !slices.Contains(strings.Fields(kernel), a) {
					t.Errorf("kernel line lacks %q:\n%s", a, kernel)
				}
			}
			param := "ignition.config.url="
			if ex.kind == profiles.ConfigTalos {
				param = "talos.config="
			}
			configURL := ""
			for _, f := range strings.Fields(kernel) {
				if v, ok := strings.CutPrefix(f, param); ok {
					configURL = v
				}
			}
			if !strings.HasPrefix(configURL, base+"/") {
				t.Fatalf("kernel line has no %s<advertise URL>...:\n%s", param, kernel)
			}
			u, err := url.Parse(configURL)
			if err != nil {
				t.Fatal(err)
			}
			token := u.Query().Get("token")
			if core.Profiles().Profiles[ex.profile].Inspect && !strings.Contains(kernel+" ", " provisiond.url="+base+" provisiond.mac="+id+" provisiond.token="+token+" ") {
				t.Errorf("kernel line of an inspect: true profile lacks the agent's provisiond.url=, provisiond.mac= and provisiond.token= (this boot's):\n%s", kernel)
			}

			code, body := httpGet(t, ts, u.RequestURI())
			if code != 200 {
				t.Fatalf("GET %s = %d %s", u.RequestURI(), code, body)
			}
			if strings.Contains(body, "PROVISIOND_") {
				t.Errorf("served config still holds a session placeholder:\n%s", body)
			}
			if ex.kind.Ignition() {
				// Butane stores some files base64-encoded; the load re-encodes
				// those holding session values so that they are filled in too.
				for _, f := range parseIgnition(t, []byte(body)).Storage.Files {
					if b, err := decodeData(f.Contents.Source); err != nil || bytes.Contains(b, []byte("PROVISIOND_")) {
						t.Errorf("file %s of the served config holds an unfilled session placeholder (%v):\n%s", f.Path, err, b)
					}
				}
				t.Run("ignition-validate", func(t *testing.T) {
					if validator == "" {
						t.Skip(noValidator)
					}
					validateIgnition(t, "the served config", []byte(body))
				})
			}
			if ex.check != nil {
				ex.check(t, []byte(body))
			}
			if ex.phoneHome {
				phoneHome(t, ts, body, id, token)
				m, err := core.Machine(ctx, ex.mac)
				want := store.StateInstalled
				if ex.wipe {
					want = store.StateWiped
				}
				if err != nil || m.State != want {
					t.Fatalf("after the phone-home %s is %q (%v); want %q", ex.mac, m.State, err, want)
				}
			}
			if ex.once {
				if code, next := httpGet(t, ts, "/ipxe?mac="+id); code != 200 || strings.Contains(next, "kernel ") || !strings.Contains(next, "\nexit\n") {
					t.Errorf("next boot of an installed once-profile machine = %d:\n%s\nwant an iPXE exit (boot from disk)", code, next)
				}
			}
		})
	}
}

// TestExamplesInstallToInspectedDisk boots node3 (flatcar-install) and node4
// (fcos-install) after their inspection reported two disks: each config
// names the smaller one by its stable /dev/disk/by-id path, not /dev/sda.
func TestExamplesInstallToInspectedDisk(t *testing.T) {
	ctx := context.Background()
	db := memstore.New(store.Options{})
	core := boot.New(boot.Config{ProfilesDir: examplesDir, AdvertiseURL: "http://192.0.2.1:8080", Store: db})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	hw := store.Hardware{Disks: []store.Disk{
		{Name: "vda", Serial: "DATA1", Size: 64 << 30, ByID: []string{"/dev/disk/by-id/virtio-DATA1"}},
		{Name: "vdb", Serial: "ROOT1", Size: 20 << 30, ByID: []string{"/dev/disk/by-id/virtio-ROOT1"}},
	}}
	const disk = "/dev/disk/by-id/virtio-ROOT1"
	for _, tc := range []struct {
		mac   string
		check func(t *testing.T, body []byte)
	}{
		{"52:54:00:00:00:03", func(t *testing.T, body []byte) {
			if unit := ignitionUnit(t, body, "provisiond-install.service"); !strings.Contains(unit, "flatcar-install -d "+disk+" ") {
				t.Errorf("provisiond-install.service does not install to %s:\n%s", disk, unit)
			}
		}},
		{"52:54:00:00:00:11", wantIgnitionFile("/etc/coreos/installer.d/50-provisiond.yaml", `dest-device: "`+disk+`"`)},
	} {
		t.Run(tc.mac, func(t *testing.T) {
			r := boot.Request{MAC: tc.mac}
			if _, err := core.Script(ctx, r); err != nil { // the machine is in the inventory
				t.Fatal(err)
			}
			if _, _, err := db.Update(ctx, tc.mac, func(m *store.Machine, _ *store.Provisioning) ([]store.Event, error) {
				m.Hardware = &hw
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			script, err := core.Script(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(strings.TrimPrefix(regexp.MustCompile(`ignition\.config\.url=\S+`).FindString(script), "ignition.config.url="))
			if err != nil || u.Query().Get("token") == "" {
				t.Fatalf("script carries no config URL with a token (%v):\n%s", err, script)
			}
			r.Token = u.Query().Get("token")
			_, body, err := core.Config(ctx, r, true)
			if err != nil {
				t.Fatal(err)
			}
			validateIgnition(t, "the served config", body)
			tc.check(t, body)
		})
	}
}

// TestExamplesAssetsDocumented checks that examples/README.md names every file
// the example profiles boot, at the path the profile gives under --assets.
func TestExamplesAssetsDocumented(t *testing.T) {
	set, err := profiles.Load(examplesDir, profiles.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(examplesDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range set.Profiles {
		for _, ref := range append([]string{p.Boot.Kernel}, p.Boot.Initrd...) {
			rel, ok := strings.CutPrefix(ref, profiles.AssetPrefix)
			if ok && !bytes.Contains(readme, []byte(rel)) {
				t.Errorf("profile %s boots %s, which examples/README.md does not mention", name, ref)
			}
		}
	}
}

// TestExampleSystemdUnit checks that the example unit starts `serve` with
// flags serve accepts, and that the environment file names only real flags.
func TestExampleSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(examplesDir, "systemd", "provisiond.service"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(unit, []byte("\\\n"), nil)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			args = strings.Fields(v)
		}
	}
	if len(args) < 2 || filepath.Base(args[0]) != "provisiond" || args[1] != "serve" {
		t.Fatalf("ExecStart = %q; want provisiond serve ...", args)
	}
	if _, err := parseServe(args[2:]); err != nil {
		t.Errorf("serve rejects the unit's flags %q: %v", args[2:], err)
	}

	env, err := os.ReadFile(filepath.Join(examplesDir, "systemd", "provisiond.env"))
	if err != nil {
		t.Fatal(err)
	}
	// serve's flags, as its help lists them.
	fs, _ := serveCommand().flagSet(&cli{stdout: io.Discard, stderr: io.Discard, host: testHost})
	known := map[string]bool{}
	for _, f := range fs.longFlags() {
		known[envName(f.Name)] = true
	}
	if !known["PROVISIOND_PROFILES"] {
		t.Fatalf("serve has no --profiles")
	}
	names := regexp.MustCompile(`(?m)^#?\s*(PROVISIOND_[A-Z_]+)=`).FindAllSubmatch(env, -1)
	if len(names) == 0 {
		t.Fatal("provisiond.env names no PROVISIOND_ variable")
	}
	for _, n := range names {
		if !known[string(n[1])] {
			t.Errorf("provisiond.env sets %s, which is no serve flag", n[1])
		}
	}
}

const noValidator = "ignition-validate not installed (Debian package ignition); set PROVISIOND_REQUIRE_LAB=1 to make this a failure"

// ignitionValidator returns the path of ignition-validate, "" when it is
// missing (the Ignition checks then skip), or fails the test when it is
// missing and PROVISIOND_REQUIRE_LAB=1.
func ignitionValidator(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ignition-validate")
	if err != nil {
		if os.Getenv("PROVISIOND_REQUIRE_LAB") == "1" {
			t.Fatalf("ignition-validate not installed (PROVISIOND_REQUIRE_LAB=1)")
		}
		t.Log(noValidator)
		return ""
	}
	return p
}

// validateIgnition runs the upstream ignition-validate on config.
func validateIgnition(t *testing.T, what string, config []byte) {
	t.Helper()
	validator := ignitionValidator(t)
	if validator == "" {
		return
	}
	f := filepath.Join(t.TempDir(), "config.ign")
	if err := os.WriteFile(f, config, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(validator, f).CombinedOutput(); err != nil {
		t.Errorf("ignition-validate rejects %s: %v\n%s\n%s", what, err, out, config)
	}
}

// ignitionConfig is the part of an Ignition config the checks look at.
type ignitionConfig struct {
	Storage struct {
		Files []struct {
			Path     string
			Contents struct{ Source string }
		}
	}
	Systemd struct {
		Units []struct{ Name, Contents string }
	}
}

func parseIgnition(t *testing.T, body []byte) ignitionConfig {
	t.Helper()
	var c ignitionConfig
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("served config is not JSON: %v\n%s", err, body)
	}
	return c
}

// ignitionFile returns the contents of the file at path in an Ignition config.
func ignitionFile(t *testing.T, body []byte, path string) []byte {
	t.Helper()
	for _, f := range parseIgnition(t, body).Storage.Files {
		if f.Path == path {
			b, err := decodeData(f.Contents.Source)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return b
		}
	}
	t.Fatalf("config writes no file %s", path)
	return nil
}

// ignitionUnit returns the contents of the systemd unit name.
func ignitionUnit(t *testing.T, body []byte, name string) string {
	t.Helper()
	for _, u := range parseIgnition(t, body).Systemd.Units {
		if u.Name == name {
			return u.Contents
		}
	}
	t.Fatalf("config has no unit %s", name)
	return ""
}

func wantIgnitionFile(path, contains string) func(*testing.T, []byte) {
	return func(t *testing.T, body []byte) {
		if b := ignitionFile(t, body, path); !bytes.Contains(b, []byte(contains)) {
			t.Errorf("%s = %q; want it to hold %q", path, b, contains)
		}
	}
}

// checkTalos checks the served Talos machine config: a v1alpha1 document with
// the Machine's metadata rendered in, and the HostnameConfig document.
func checkTalos(t *testing.T, body []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(body))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Talos config is not YAML: %v\n%s", err, body)
		}
		docs = append(docs, d)
	}
	if len(docs) != 2 {
		t.Fatalf("Talos config has %d documents; want the v1alpha1 config and a HostnameConfig", len(docs))
	}
	cfg := docs[0]
	for _, k := range []string{"version", "machine", "cluster"} {
		if cfg[k] == nil {
			t.Errorf("Talos config lacks top-level key %q", k)
		}
	}
	if cfg["version"] != "v1alpha1" {
		t.Errorf("version = %v; want v1alpha1", cfg["version"])
	}
	machine, _ := cfg["machine"].(map[string]any)
	install, _ := machine["install"].(map[string]any)
	if machine["type"] != "controlplane" || install["disk"] != "/dev/sda" || !strings.HasPrefix(fmt.Sprint(install["image"]), "ghcr.io/siderolabs/installer:v1.") {
		t.Errorf("machine = type %v, install %v; want controlplane installing to the Machine's /dev/sda", machine["type"], install)
	}
	cluster, _ := cfg["cluster"].(map[string]any)
	cp, _ := cluster["controlPlane"].(map[string]any)
	if ep, _ := cp["endpoint"].(string); !strings.HasPrefix(ep, "https://") || cluster["clusterName"] == nil {
		t.Errorf("cluster = %v; want a clusterName and an https controlPlane.endpoint", cluster)
	}
	if h := docs[1]; h["apiVersion"] != "v1alpha1" || h["kind"] != "HostnameConfig" || h["hostname"] != "cp1" {
		t.Errorf("second document = %v; want HostnameConfig hostname cp1", h)
	}
}

var (
	bearerRe    = regexp.MustCompile(`Authorization: Bearer ([A-Za-z0-9_-]+)`)
	installedRe = regexp.MustCompile(`(https?://[^\s"\\]+/api/v1/machines/([^/\s"\\]+)/installed)`)
)

// phoneHome sends the phone-home the config describes: its URL and token,
// which must be this machine's and this boot's.
func phoneHome(t *testing.T, ts *httptest.Server, config, id, token string) {
	t.Helper()
	b := bearerRe.FindStringSubmatch(config)
	u := installedRe.FindStringSubmatch(config)
	if b == nil || u == nil {
		t.Fatalf("config carries no phone-home (Authorization: Bearer ... and .../installed):\n%s", config)
	}
	if b[1] != token || u[2] != id {
		t.Fatalf("phone-home with token %q for %q; want this boot's token %q for %q", b[1], u[2], token, id)
	}
	req, err := http.NewRequest(http.MethodPost, u[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+b[1])
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		out, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s = %d %s", u[1], resp.StatusCode, out)
	}
}

func httpGet(t *testing.T, ts *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := ts.Client().Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// kernelLine returns the script's kernel command.
func kernelLine(script string) string {
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(l, "kernel ") {
			return l
		}
	}
	return ""
}

// decodeData is the content of a data URL, the form Butane gives inline files.
func decodeData(src string) ([]byte, error) {
	du, err := dataurl.DecodeString(src)
	if err != nil {
		return nil, err
	}
	return du.Data, nil
}
