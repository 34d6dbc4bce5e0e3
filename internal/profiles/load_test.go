package profiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree creates files (path -> content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const baseProfile = `kind: Profile
name: worker
boot:
  kernel: /assets/k
  initrd: [/assets/i.gz]
  args: [console=ttyS0]
config:
  butane: worker.bu
`

const workerButane = `variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hostname
      contents:
        inline: {{ .metadata.hostname }}
`

func TestLoadExamples(t *testing.T) {
	set, err := Load("../../examples", LoadOptions{})
	if err != nil {
		t.Fatalf("examples do not load: %v", err)
	}
	if len(set.Machines) == 0 || set.Default == nil {
		t.Fatalf("examples: %d machines, default %v; want machines and a Default", len(set.Machines), set.Default)
	}
	for _, m := range set.Machines {
		if set.configs[m] == nil {
			t.Errorf("machine %s has no rendered config", m.Name)
		}
	}
}

func TestValidationProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // each must appear, as "file:line: substring"
	}{
		{
			name:  "unknown kind",
			files: map[string]string{"a.yaml": "kind: Profle\nname: x\n"},
			want:  []string{`a.yaml:1: unknown kind "Profle"`},
		},
		{
			name:  "missing kind",
			files: map[string]string{"a.yaml": "name: x\n"},
			want:  []string{"a.yaml:1: document has no kind"},
		},
		{
			name:  "unknown field with line",
			files: map[string]string{"a.yaml": "kind: Profile\nname: x\nboot:\n  kernel: /assets/k\n  intrd: [/assets/i]\n"},
			want:  []string{`a.yaml:5: unknown field "intrd" in boot`},
		},
		{
			// yaml.v3 numbers this one from 0: it said line 1.
			name:  "yaml syntax error",
			files: map[string]string{"a.yaml": "kind: Profile\nname: [x\n"},
			want:  []string{"a.yaml:2: invalid YAML: did not find expected ',' or ']'"},
		},
		{
			name:  "yaml syntax error below a block",
			files: map[string]string{"a.yaml": "kind: Profile\nname: x\nboot:\n  kernel: /assets/k\n - y\n"},
			want:  []string{"a.yaml:5: invalid YAML: did not find expected key"},
		},
		{
			name:  "type error",
			files: map[string]string{"a.yaml": "kind: Profile\nname: x\nonce: maybe\nboot: {kernel: /assets/k}\n"},
			want:  []string{`a.yaml:3: once must be true or false; got "maybe"`},
		},
		{
			name: "missing profile and config file",
			files: map[string]string{
				"p.yaml": baseProfile,
				"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: nope\n",
			},
			want: []string{"p.yaml:8: config.butane: worker.bu does not exist", `m.yaml:1: machine "n1" uses unknown profile "nope"`},
		},
		{
			name: "duplicate mac in two spellings and duplicate uuid",
			files: map[string]string{
				"p.yaml": baseProfile, "worker.bu": workerButane,
				"m.yaml": `kind: Machine
name: n1
match: {mac: "52:54:00:00:00:01", uuid: "4c4c4544-0042-3510-8057-b7c04f4e3732"}
profile: worker
metadata: {hostname: a}
---
kind: Machine
name: n2
match: {mac: "52-54-00-00-00-01"}
profile: worker
metadata: {hostname: b}
---
kind: Machine
name: n3
match: {uuid: "4C4C4544-0042-3510-8057-B7C04F4E3732"}
profile: worker
metadata: {hostname: c}
`,
			},
			want: []string{
				`m.yaml:7: machine "n2" claims MAC 52:54:00:00:00:01, already claimed by machine "n1" at m.yaml:1`,
				`m.yaml:13: machine "n3" claims UUID 4c4c4544-0042-3510-8057-b7c04f4e3732, already claimed by machine "n1"`,
			},
		},
		{
			name: "template missing metadata key",
			files: map[string]string{
				"p.yaml": baseProfile, "worker.bu": workerButane,
				"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\nmetadata: {host: a}\n",
			},
			want: []string{
				`m.yaml:1: machine "n1": worker.bu:7: template: executing "worker.bu" at <.metadata.hostname>: map has no entry for key "hostname" (column 28); if it is optional, write {{ index .metadata "hostname" | default "..." }}`,
				`worker.bu:7: template: executing "worker.bu" at <.metadata.hostname>: map has no entry`,
			},
		},
		{
			name: "template syntax error",
			files: map[string]string{
				"p.yaml": baseProfile, "worker.bu": "variant: flatcar\nversion: 1.0.0\n{{ if }}\n",
			},
			want: []string{"worker.bu:3: template: "},
		},
		{
			name: "butane that does not translate",
			files: map[string]string{
				"p.yaml": baseProfile, "worker.bu": "variant: flatcar\nversion: 1.0.0\nstorage:\n  filez: []\n",
				"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\n",
			},
			want: []string{`m.yaml:1: machine "n1": worker.bu:4: butane warning: unused key filez (column 3, at $.storage.filez)`, "\nworker.bu:4: butane warning: unused key filez"},
		},
		{
			name: "invalid ignition",
			files: map[string]string{
				"p.yaml": strings.Replace(baseProfile, "butane: worker.bu", "ignition: w.ign", 1),
				"w.ign":  `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"relative/path"}]}}`,
				"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\n",
			},
			want: []string{`m.yaml:1: machine "n1": w.ign:1: ignition error: path not absolute (column 61, at $.storage.files.0.path)`, "\nw.ign:1: ignition error: path not absolute"},
		},
		{
			name: "config path escapes",
			files: map[string]string{
				"p.yaml": strings.Replace(baseProfile, "worker.bu", "../../etc/passwd", 1),
			},
			want: []string{`p.yaml:8: config.butane: "../../etc/passwd" must be a relative path inside the profiles directory`},
		},
		{
			name: "kernel path escapes and args with spaces",
			files: map[string]string{
				"p.yaml": "kind: Profile\nname: x\nboot:\n  kernel: /assets/../../etc/shadow\n  args: [\"a b\", ignition.config.url=x]\n",
			},
			want: []string{"p.yaml:4: boot.kernel: path /assets/../../etc/shadow is not a plain path inside the assets directory", `p.yaml:5: boot.args: "a b" must be one non-empty word`, `p.yaml:5: boot.args: "ignition.config.url=x" is added by provisiond`},
		},
		{
			// The /assets handler refuses these, so they must not validate.
			name: "asset paths the server would refuse",
			files: map[string]string{
				"p.yaml": "kind: Profile\nname: x\nboot:\n  kernel: /assets/a//k\n  initrd: [/assets/./i, /assets/x/../i]\n",
			},
			want: []string{"p.yaml:4: boot.kernel: path /assets/a//k is not a plain path", "p.yaml:5: boot.initrd: path /assets/./i is not a plain path", "p.yaml:5: boot.initrd: path /assets/x/../i is not a plain path"},
		},
		{
			name: "inline bmc password",
			files: map[string]string{
				"p.yaml": "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n",
				"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: x\nbmc:\n  address: ipmi://10.0.0.1\n  credentials: admin:hunter2\n",
			},
			want: []string{"m.yaml:7: bmc.credentials must be env:VAR or file:PATH"},
		},
		{
			name: "same labels twice",
			files: map[string]string{
				"p.yaml": "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n",
				"m.yaml": "kind: Machine\nname: a\nmatch: {labels: {rack: r1}}\nprofile: x\n---\nkind: Machine\nname: b\nmatch: {labels: {rack: r1}}\nprofile: x\n",
			},
			want: []string{`m.yaml:6: machine "b" has the same labels as machine "a"`},
		},
		{
			name: "two defaults and bad mac",
			files: map[string]string{
				"p.yaml": "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: x\n---\nkind: Default\nprofile: x\n",
				"m.yaml": "kind: Machine\nname: a\nmatch: {mac: \"52:54:00:zz:00:01\"}\nprofile: x\n",
			},
			want: []string{"p.yaml:8: second Default (the first is at p.yaml:5)", `m.yaml:3: match.mac: "52:54:00:zz:00:01" is not a MAC address`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeTree(t, tc.files), LoadOptions{})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v; want Problems", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(probs.Error(), w) {
					t.Errorf("problems do not contain %q; got:\n%v", w, probs)
				}
			}
		})
	}
}

func TestConfigFileIsNotAProfileDocument(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml":            "kind: Profile\nname: talos\nboot: {kernel: /assets/k}\nconfig: {talos: talos/worker.yaml}\n---\nkind: Default\nprofile: talos\n",
		"talos/worker.yaml": "version: v1alpha1\nmachine:\n  type: worker\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: x\n",
	})
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	res, err := set.Match(Query{MAC: "52:54:00:00:00:09"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := set.Config(res, Query{MAC: "52:54:00:00:00:09"})
	if err != nil || out == nil || !strings.Contains(string(out.Body), "HostnameConfig") || out.ContentType != "application/yaml" {
		t.Fatalf("Config = %+v, %v; want the Talos YAML", out, err)
	}
}

func TestRenderedIgnitionPerMachine(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": baseProfile, "worker.bu": workerButane,
		"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\nmetadata: {hostname: one.lab}\n---\nkind: Machine\nname: n2\nmatch: {mac: \"52:54:00:00:00:02\"}\nprofile: worker\nmetadata: {hostname: two.lab}\n",
	})
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for mac, host := range map[string]string{"52:54:00:00:00:01": "one.lab", "52:54:00:00:00:02": "two.lab"} {
		res, err := set.Match(Query{MAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		out, err := set.Config(res, Query{MAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Ignition struct{ Version string }
			Storage  struct {
				Files []struct{ Contents struct{ Source string } }
			}
		}
		if err := json.Unmarshal(out.Body, &cfg); err != nil {
			t.Fatalf("%s: not JSON: %v", mac, err)
		}
		if !strings.HasPrefix(cfg.Ignition.Version, "3.") || len(cfg.Storage.Files) != 1 || !strings.Contains(cfg.Storage.Files[0].Contents.Source, host) {
			t.Fatalf("%s: config %s; want Ignition 3.x with hostname %s", mac, out.Body, host)
		}
	}
}

func TestReloadReusesTranslations(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": baseProfile, "worker.bu": workerButane,
		"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\nmetadata: {hostname: one.lab}\n",
	})
	cache := NewCache()
	first, err := Load(dir, LoadOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Load(dir, LoadOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	a, b := first.configs[first.Machines[0]], second.configs[second.Machines[0]]
	if a != b {
		t.Fatal("an unchanged machine was translated again on reload")
	}
	if len(cache.entries) != 1 {
		t.Fatalf("cache holds %d entries after two identical loads; want 1", len(cache.entries))
	}
}

func TestCacheFileRoundTrip(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": baseProfile, "worker.bu": workerButane,
		"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\nmetadata: {hostname: one.lab}\n",
	})
	file := filepath.Join(t.TempDir(), "translations.cache")
	cache := NewCache()
	if _, err := Load(dir, LoadOptions{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if err := cache.SaveFile(file); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file %v, %v; want mode 0600", fi, err)
	}
	restored := NewCache()
	if err := restored.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	if len(restored.entries) != 1 {
		t.Fatalf("restored %d entries; want 1", len(restored.entries))
	}
	var saved *Rendered
	for _, r := range restored.entries {
		saved = r
	}
	set, err := Load(dir, LoadOptions{Cache: restored})
	if err != nil {
		t.Fatal(err)
	}
	if got := set.configs[set.Machines[0]]; got != saved || !strings.Contains(string(got.Body), "one.lab") {
		t.Fatalf("config served after a restore = %p %s; want the restored entry %p, not a new translation", got, got.Body, saved)
	}
	if err := os.WriteFile(file, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := NewCache().LoadFile(file); err == nil {
		t.Fatal("a corrupt cache file loaded without error")
	}
}

// A load keeps every translation it made, however many: the bound on
// on-demand (Default) entries must not evict them before they are pinned.
func TestCacheKeepsLoadEntries(t *testing.T) {
	files := map[string]string{"p.yaml": "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {template: c.txt}\n", "c.txt": "host {{ .machine.name }}\n"}
	var ms strings.Builder
	for i := range 5 {
		fmt.Fprintf(&ms, "---\nkind: Machine\nname: n%d\nmatch: {mac: \"52:54:00:00:00:%02x\"}\nprofile: p\n", i, i)
	}
	files["m.yaml"] = ms.String()
	cache := NewCache()
	cache.limit = 2
	if _, err := Load(writeTree(t, files), LoadOptions{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if len(cache.entries) != 5 || len(cache.pinned) != 5 {
		t.Fatalf("after loading 5 machines the cache keeps %d entries, %d pinned; want 5 and 5", len(cache.entries), len(cache.pinned))
	}
}

// A failed save is tried again at the next one, even with nothing new.
func TestCacheSaveRetries(t *testing.T) {
	cache := NewCache()
	dir := writeTree(t, map[string]string{
		"p.yaml": baseProfile, "worker.bu": workerButane,
		"m.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: worker\nmetadata: {hostname: one.lab}\n",
	})
	if _, err := Load(dir, LoadOptions{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if err := cache.SaveFile(filepath.Join(t.TempDir(), "missing", "dir", "translations.cache")); err == nil {
		t.Fatal("saving into a missing directory succeeded")
	}
	file := filepath.Join(t.TempDir(), "translations.cache")
	if err := cache.SaveFile(file); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the save after a failed one wrote nothing: %v", err)
	}
}
