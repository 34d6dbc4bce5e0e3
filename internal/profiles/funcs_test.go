package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// renderWith renders tmpl as a config template of Load's with metadata md, a
// YAML map, as .metadata.
func renderWith(t *testing.T, tmpl, md string) (string, error) {
	t.Helper()
	var meta map[string]any
	if err := yaml.Unmarshal([]byte(md), &meta); err != nil {
		t.Fatalf("metadata %q: %v", md, err)
	}
	ct, err := parseConfigTemplate("t.txt", tmpl)
	if err != nil {
		return "", err
	}
	out, err := ct.execute(context.Background(), map[string]any{"metadata": meta, "machine": map[string]any{"labels": map[string]string{"rack": "r1", "a b": `"`}}})
	return string(out), err
}

func TestTemplateFuncs(t *testing.T) {
	for _, tc := range []struct {
		name, tmpl, md string
		want           string // the output, or with err the start of the error after "at <...>: "
		err            bool
	}{
		{"default missing via index", `{{ index .metadata "x" | default "d" }}`, `{}`, "d", false},
		{"default null", `{{ .metadata.x | default "d" }}`, `{x: null}`, "d", false},
		{"default empty string", `{{ .metadata.x | default "d" }}`, `{x: ""}`, "d", false},
		{"default empty list", `{{ .metadata.x | default "d" }}`, `{x: []}`, "d", false},
		{"default empty map", `{{ .metadata.x | default "d" }}`, `{x: {}}`, "d", false},
		{"default keeps 0", `{{ .metadata.x | default 7 }}`, `{x: 0}`, "0", false},
		{"default keeps false", `{{ .metadata.x | default true }}`, `{x: false}`, "false", false},
		{"default keeps a value", `{{ .metadata.x | default "d" }}`, `{x: v}`, "v", false},
		{"default as a call", `{{ default "d" (index .metadata "x") }}`, `{}`, "d", false},
		// missingkey=error stands: a typo must not silently become the default.
		{"default does not hide a missing key", `{{ .metadata.x | default "d" }}`, `{}`, `map has no entry for key "x"`, true},
		{"default needs a value", `{{ default "d" }}`, `{}`, "wrong number of args for default", true},

		{"quote", `{{ quote .metadata.s }}`, `{s: 'say "hi"\path'}`, `"say \"hi\"\\path"`, false},
		{"quote a number", `{{ quote .metadata.n }}|{{ .metadata.f | quote }}|{{ quote .metadata.b }}`, `{n: 42, f: 2.5, b: true}`, `"42"|"2.5"|"true"`, false},
		{"quote nothing", `{{ index .metadata "x" | quote }}`, `{}`, `""`, false},
		{"quote a list", `{{ quote .metadata.l }}`, `{l: [a]}`, "error calling quote: got a list; quote takes one string or number (toJson takes lists and maps)", true},

		{"join", `{{ join ", " .metadata.l }}`, `{l: [sda, 1, true, 2.5, null]}`, "sda, 1, true, 2.5, ", false},
		{"join piped", `{{ .metadata.l | join "," }}`, `{l: [a, b]}`, "a,b", false},
		{"join nothing", `{{ index .metadata "l" | join "," }}`, `{}`, "", false},
		{"join a map", `{{ join "," .metadata.m }}`, `{m: {a: b}}`, "error calling join: got a map; join takes a separator and a list", true},
		{"join nested", `{{ join "," .metadata.l }}`, `{l: [a, [b]]}`, "error calling join: item 1 is a list; join joins strings and numbers", true},

		{"toJson sorts keys", `{{ toJson .metadata }}`, `{b: [true, null, "x"], a: 1, c: {d: 2.5, "1": e}}`, `{"a":1,"b":[true,null,"x"],"c":{"1":"e","d":2.5}}`, false},
		{"toJson string", `{{ toJson .metadata.s }}`, `{s: "<a&b>"}`, `"<a&b>"`, false},
		{"toJson labels", `{{ toJson .machine.labels }}`, `{}`, `{"a b":"\"","rack":"r1"}`, false},
		{"toJson non-string keys", `{{ toJson .metadata.m }}`, `{m: {1: a, true: b}}`, `{"1":"a","true":"b"}`, false},
		{"toJson nothing", `{{ index .metadata "x" | toJson }}`, `{}`, `null`, false},
		{"toJson NaN", `{{ toJson .metadata.f }}`, `{f: .nan}`, "error calling toJson: json: unsupported value: NaN", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderWith(t, tc.tmpl, tc.md)
			switch {
			case tc.err && err == nil:
				t.Errorf("%s = %q; want an error %q", tc.tmpl, got, tc.want)
			case tc.err && !strings.Contains(err.Error(), tc.want):
				t.Errorf("%s: %v; want an error %q", tc.tmpl, err, tc.want)
			case !tc.err && err != nil:
				t.Errorf("%s: %v", tc.tmpl, err)
			case !tc.err && got != tc.want:
				t.Errorf("%s = %q; want %q", tc.tmpl, got, tc.want)
			}
		})
	}
}

// hostile are values an SSH key, hostname or script may hold that break YAML
// or JSON when placed raw.
var hostile = []string{
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host",
	`it's "quoted"`,
	"line1\nline2\r\n\ttabbed",
	`back\slash \n not a newline \u0041`,
	"key: value # not a comment",
	"- not a list",
	"[not, a, list]",
	"{not: a map}",
	"&anchor *alias !tag %directive @at `tick` |",
	"yes", "no", "null", "~", "1e3", "0x1F", "08", "", "   padded   ",
	"---\n...\n",
	"é ü 日本語 🚀 \u202eRTL",
	"\x00\x01\x1b[31m\x7f",
	"nel\u0085 ls\u2028 ps\u2029 bom\ufeff c1\u0090",
	"\ufffe\uffff",
	"{{ .metadata.x }}",
	"</script><!--",
}

// TestQuoteAndToJSONRoundTrip places each hostile string, and a structure of
// them, in YAML and JSON: both read back exactly what was placed.
func TestQuoteAndToJSONRoundTrip(t *testing.T) {
	md, err := yaml.Marshal(map[string]any{"all": hostile, "nested": map[string]any{"list": hostile, "bad": "a\xffb"}})
	if err != nil {
		t.Fatal(err)
	}
	// A YAML document, and a JSON one that YAML reads too.
	formats := []struct {
		tmpl string
		json bool
	}{
		{"k: {{ quote (index .metadata.all %d) }}\n", false},
		{"k: {{ toJson (index .metadata.all %d) }}\n", false},
		{"k:\n  - {{ quote (index .metadata.all %d) }}\n  - x\n", false},
		{`{"k": {{ quote (index .metadata.all %d) }}}`, true},
		{`{"k": {{ toJson (index .metadata.all %d) }}}`, true},
	}
	for i, s := range hostile {
		for _, f := range formats {
			tmpl := fmt.Sprintf(f.tmpl, i)
			out, err := renderWith(t, tmpl, string(md))
			if err != nil {
				t.Fatalf("%s: %v", tmpl, err)
			}
			var y struct {
				K any `yaml:"k"`
			}
			if err := yaml.Unmarshal([]byte(out), &y); err != nil || y.K != s && !reflect.DeepEqual(y.K, []any{s, "x"}) {
				t.Errorf("%q placed by %s as %s: YAML reads back %q, %v", s, tmpl, out, y.K, err)
			}
			var j struct {
				K string `json:"k"`
			}
			if f.json {
				if err := json.Unmarshal([]byte(out), &j); err != nil || j.K != s {
					t.Errorf("%q placed by %s as %s: JSON reads back %q, %v", s, tmpl, out, j.K, err)
				}
			}
		}
	}
	// The same in a structure, and an invalid byte as U+FFFD.
	want := map[string]any{"list": toAny(hostile), "bad": "a\ufffdb"}
	for _, tmpl := range []string{"k: {{ toJson .metadata.nested }}\n", `{"k": {{ toJson .metadata.nested }}}`} {
		out, err := renderWith(t, tmpl, string(md))
		if err != nil {
			t.Fatal(err)
		}
		var y, j struct {
			K map[string]any `yaml:"k" json:"k"`
		}
		if err := yaml.Unmarshal([]byte(out), &y); err != nil || !reflect.DeepEqual(y.K, want) {
			t.Errorf("%s: YAML reads back %q, %v", tmpl, y.K, err)
		}
		if tmpl[0] == '{' {
			if err := json.Unmarshal([]byte(out), &j); err != nil || !reflect.DeepEqual(j.K, want) {
				t.Errorf("%s: JSON reads back %q, %v", tmpl, j.K, err)
			}
		}
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestFuncsInConfigs loads Butane, Ignition and Talos configs that place
// hostile metadata with quote and toJson: each translates and validates, and
// the served config holds the values exactly.
func TestFuncsInConfigs(t *testing.T) {
	keys := []string{hostile[0], `ssh-rsa AAAAB3NzaC1yc2E "quoted comment" é日本 🚀`}
	meta := map[string]any{
		"hostname": "node1.lab # not: a comment",
		"motd":     strings.Join(hostile, "\n"),
		"keys":     keys,
	}
	md, err := yaml.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	machine := "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\nmetadata:\n" + indent(string(md), "  ")
	for _, tc := range []struct {
		kind, file, tmpl string
	}{
		{"butane", "w.bu", `variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: {{ toJson .metadata.keys }}
storage:
  files:
    - path: /etc/hostname
      contents:
        inline: {{ quote .metadata.hostname }}
    - path: /etc/motd
      contents:
        inline: {{ .metadata.motd | quote }}
    - path: /etc/role
      contents:
        inline: {{ index .metadata "role" | default "worker" | quote }}
`},
		{"ignition", "w.ign", `{"ignition": {"version": "3.4.0"},
 "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": {{ toJson .metadata.keys }}}]},
 "storage": {"files": [
  {"path": "/etc/hostname", "contents": {"source": {{ printf "data:,%s" (urlquery .metadata.hostname) | quote }}}},
  {"path": "/etc/motd", "contents": {"source": {{ printf "data:,%s" (.metadata.motd | urlquery) | toJson }}}},
  {"path": "/etc/role", "contents": {"source": {{ index .metadata "role" | default "worker" | printf "data:,%s" | quote }}}}]}}
`},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := writeTree(t, map[string]string{
				"p.yaml":        "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {" + tc.kind + ": " + tc.file + "}\n",
				tc.file:         tc.tmpl,
				"machines.yaml": machine,
			})
			set, err := Load(dir, LoadOptions{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			body := set.configs[set.Machines[0]].Body
			for path, want := range map[string]string{"/etc/hostname": meta["hostname"].(string), "/etc/motd": meta["motd"].(string), "/etc/role": "worker"} {
				got := string(fileContents(t, body, path))
				if tc.kind == "ignition" {
					// urlquery spells a space +, which a data URL keeps.
					want = strings.ReplaceAll(want, " ", "+")
				}
				if got != want {
					t.Errorf("%s = %q; want %q", path, got, want)
				}
			}
			var cfg struct {
				Passwd struct {
					Users []struct{ SSHAuthorizedKeys []string }
				}
			}
			if err := json.Unmarshal(body, &cfg); err != nil || len(cfg.Passwd.Users) != 1 || !reflect.DeepEqual(cfg.Passwd.Users[0].SSHAuthorizedKeys, keys) {
				t.Errorf("ssh keys %+v, %v; want %q", cfg.Passwd.Users, err, keys)
			}
		})
	}
	t.Run("talos", func(t *testing.T) {
		dir := writeTree(t, map[string]string{
			"p.yaml":        "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {talos: t.yaml}\n",
			"t.yaml":        "version: v1alpha1\nmachine:\n  type: worker\n  network:\n    hostname: {{ quote .metadata.hostname }}\n  certSANs: {{ toJson .metadata.keys }}\n  motd: {{ toJson .metadata.motd }}\n",
			"machines.yaml": machine,
		})
		set, err := Load(dir, LoadOptions{})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		var cfg struct {
			Machine struct {
				Network  struct{ Hostname string }
				CertSANs []string `yaml:"certSANs"`
				Motd     string
			}
		}
		body := set.configs[set.Machines[0]].Body
		if err := yaml.Unmarshal(body, &cfg); err != nil || cfg.Machine.Network.Hostname != meta["hostname"] || !reflect.DeepEqual(cfg.Machine.CertSANs, keys) || cfg.Machine.Motd != meta["motd"] {
			t.Errorf("talos config %s reads back %+v, %v", body, cfg, err)
		}
	})
}

// TestFuncLimits: the new functions count what they build against the
// render's limit and check it as they build: a value YAML aliases repeat, or
// a function called in a loop, fails the template at once, at its line.
func TestFuncLimits(t *testing.T) {
	long := strings.Repeat("x", 50_000)
	// yaml.v3 refuses a document of mostly aliases, but not these.
	flat := strings.Repeat("*s, ", 100)
	md := "metadata:\n  s: &s " + long + "\n" +
		"  l1: &l1 [*s, *s, *s, *s, *s, *s, *s, *s, *s, *s]\n" + // 500 kB
		"  l2: [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\n" + // 5 MB
		"  flat: [" + flat + "*s]\n" // 5 MB
	for _, tc := range []struct{ name, tmpl, want string }{
		{"toJson of aliases", "ok\n{{ toJson .metadata.l2 }}", "t.txt:2: toJson: the strings built by"},
		{"toJson in a loop", "{{ range 10000 }}\n{{ $j := toJson $.metadata.l1 }}{{ end }}", "t.txt:2: toJson: the strings built by"},
		{"quote in a loop", "{{ range 10000 }}{{ $q := quote $.metadata.s }}{{ end }}", "t.txt:1: quote: the strings built by"},
		{"join of aliases", "{{ join \",\" .metadata.flat }}", "t.txt:1: join: the strings built by"},
		// 9 separators of 512 kB between 500 kB of items.
		{"join with a long separator", "{{ $sep := printf \"%4000d\" 0 }}{{ range 7 }}{{ $sep = print $sep $sep }}{{ end }}\n{{ join $sep .metadata.l1 }}", "t.txt:2: join: the strings built by"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{
				"p.yaml":        "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {template: t.txt}\n",
				"t.txt":         tc.tmpl,
				"machines.yaml": "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n" + md,
			})
			start := time.Now()
			_, err := Load(dir, LoadOptions{})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load = %v; want Problems", err)
			}
			if len(probs) != 1 || !strings.HasPrefix(probs[0].String(), tc.want) || !strings.Contains(probs[0].Msg, "passed the limit of 4 MiB") {
				t.Errorf("problems:\n%v\nwant one starting %q", probs, tc.want)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Load took %v", took)
			}
		})
	}
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+prefix) + "\n"
}
