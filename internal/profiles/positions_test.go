package profiles

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// machineYAML is a Machine n (MAC ...:0i) of profile p with metadata md, a
// YAML flow map.
func machineYAML(name string, i int, md string) string {
	return "---\nkind: Machine\nname: " + name + "\nmatch: {mac: \"52:54:00:00:00:0" + string(rune('0'+i)) + "\"}\nprofile: p\nmetadata: " + md + "\n"
}

// A config that does not translate or validate is reported at the line of
// its own file, with the column in the message, once however many machines
// use it, and at each machine, naming the file and line. Template lines are
// found through what actions printed before them.
func TestConfigProblemsAtTheirFile(t *testing.T) {
	profile := func(kind, file string) string {
		return "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {" + kind + ": " + file + "}\n"
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // the whole problem list, in order
	}{
		{
			name: "butane unused key below a range",
			files: map[string]string{
				"p.yaml": profile("butane", "butane/worker.bu"),
				"butane/worker.bu": `variant: flatcar
version: 1.0.0
storage:
  files:
{{- range .metadata.files }}
    - path: {{ . }}
      contents: {inline: x}
{{- end }}
    - path: /etc/y
      contnts:
        inline: y
`,
				// Three files and one: the bad line is 12 and 6 of their
				// rendered configs, 10 of the Butane file.
				"machines.yaml": machineYAML("a", 1, "{files: [/a, /b, /c]}") + machineYAML("b", 2, "{files: [/a]}"),
			},
			want: []string{
				"butane/worker.bu:10: butane warning: unused key contnts (column 7)",
				`machines.yaml:2: machine "a": butane/worker.bu:10: butane warning: unused key contnts (column 7, at $.storage.files.3.contnts)`,
				`machines.yaml:8: machine "b": butane/worker.bu:10: butane warning: unused key contnts (column 7, at $.storage.files.1.contnts)`,
			},
		},
		{
			name: "butane yaml syntax",
			files: map[string]string{
				"p.yaml":           profile("butane", "butane/worker.bu"),
				"butane/worker.bu": "variant: flatcar\nversion: 1.0.0\n{{/* a comment\nover lines */}}\nstorage:\n  files:\n    - path: /etc/x\n     contents: [\n",
				"machines.yaml":    machineYAML("a", 1, "{}"),
			},
			want: []string{
				// YAML names the start of the list it was reading.
				"butane/worker.bu:7: butane error: invalid YAML: did not find expected '-' indicator",
				`machines.yaml:2: machine "a": butane/worker.bu:7: butane error: invalid YAML: did not find expected '-' indicator`,
			},
		},
		{
			name: "ignition broken by a machine's value",
			files: map[string]string{
				"p.yaml": profile("ignition", "w.ign"),
				"w.ign":  "{\"ignition\": {\"version\": \"3.4.0\"},\n \"storage\": {\"files\": [{\"path\": \"/etc/motd\",\n   \"contents\": {\"source\": \"data:,{{ .metadata.motd }}\"}}]}}\n",
				// a's value is fine; b's ends the JSON string.
				"machines.yaml": machineYAML("a", 1, "{motd: hello}") + machineYAML("b", 2, `{motd: 'say "hi"'}`),
			},
			want: []string{
				`machines.yaml:8: machine "b": w.ign:3: ignition error: invalid character 'h' after object key:value pair (column 37, in what the template action here printed)`,
				`w.ign:3: ignition error: invalid character 'h' after object key:value pair (column 37, in what the template action here printed)`,
			},
		},
		{
			name: "ignition unknown key",
			files: map[string]string{
				"p.yaml":        profile("ignition", "w.ign"),
				"w.ign":         "{\"ignition\": {\"version\": \"3.4.0\"},\n \"storag\": {}}\n",
				"machines.yaml": machineYAML("a", 1, "{}"),
			},
			want: []string{
				`machines.yaml:2: machine "a": w.ign:2: ignition warning: unused key storag (column 2, at $.storag)`,
				"w.ign:2: ignition warning: unused key storag (column 2)",
			},
		},
		{
			name: "talos yaml",
			files: map[string]string{
				"p.yaml":        profile("talos", "talos.yaml"),
				"talos.yaml":    "version: v1alpha1\nmachine:\n  type: worker\n  network: {hostname: {{ .machine.name }}\n",
				"machines.yaml": machineYAML("a", 1, "{}"),
			},
			want: []string{
				`machines.yaml:2: machine "a": talos.yaml:4: talos error: invalid YAML: did not find expected ',' or '}'`,
				"talos.yaml:4: talos error: invalid YAML: did not find expected ',' or '}'",
			},
		},
		{
			// Nothing renders, and every user of the template says so.
			name: "template parse error",
			files: map[string]string{
				"p.yaml":        profile("template", "t.txt") + "---\nkind: Default\nprofile: p\n",
				"t.txt":         "#!ipxe\n{{ .metadata.x | upper }}\n",
				"machines.yaml": machineYAML("a", 1, "{}") + machineYAML("b", 2, "{}"),
			},
			want: []string{
				`machines.yaml:2: machine "a": t.txt:2: template: function "upper" not defined; templates have Go's builtins and toJson, quote, default and join`,
				`machines.yaml:8: machine "b": t.txt:2: template: function "upper" not defined; templates have Go's builtins and toJson, quote, default and join`,
				`p.yaml:6: Default profile "p" for a machine with no metadata: t.txt:2: template: function "upper" not defined; templates have Go's builtins and toJson, quote, default and join`,
				`t.txt:2: template: function "upper" not defined; templates have Go's builtins and toJson, quote, default and join`,
			},
		},
		{
			name: "template key with a dash",
			files: map[string]string{
				"p.yaml":        profile("template", "t.txt"),
				"t.txt":         "{{ .metadata.ssh-key }}\n",
				"machines.yaml": machineYAML("a", 1, "{}"),
			},
			want: []string{
				`machines.yaml:2: machine "a": t.txt:1: template: bad character U+002D '-'; a key with a '-' is read with index, e.g. {{ index .metadata "ssh-key" }}`,
				`t.txt:1: template: bad character U+002D '-'; a key with a '-' is read with index, e.g. {{ index .metadata "ssh-key" }}`,
			},
		},
		{
			name: "missing nested metadata key",
			files: map[string]string{
				"p.yaml":        profile("template", "t.txt"),
				"t.txt":         "ip={{ .metadata.net.ip }}\n",
				"machines.yaml": machineYAML("a", 1, "{net: {}}"),
			},
			want: []string{
				`machines.yaml:2: machine "a": t.txt:1: template: executing "t.txt" at <.metadata.net.ip>: map has no entry for key "ip" (column 15); if it is optional, write {{ index .metadata.net "ip" | default "..." }}`,
				`t.txt:1: template: executing "t.txt" at <.metadata.net.ip>: map has no entry for key "ip" (column 15); if it is optional, write {{ index .metadata.net "ip" | default "..." }}`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeTree(t, tc.files), LoadOptions{})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load = %v; want Problems", err)
			}
			got := Lines(probs)
			want := slices.Clone(tc.want)
			slices.Sort(got) // machines render in parallel: the order of a line's problems varies
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A Default's config rendered on request fails with the same error, naming
// the file and what is wrong.
func TestConfigErrorOnRequest(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {butane: w.bu}\n---\nkind: Default\nprofile: p\n",
		"w.bu":   "variant: flatcar\nversion: 1.0.0\n{{ if ne .machine.mac \"00:00:00:00:00:00\" }}storag: {}{{ end }}\n",
	})
	err := defaultConfigErr(t, dir)
	var ce *configError
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "butane w.bu: butane reported problems: warning at $.storag, line 3 col 1: unused key storag") ||
		len(ce.places) != 1 || ce.places[0].line != 3 {
		t.Errorf("Config = %v (%+v); want the unused key at w.bu:3", err, ce)
	}
}

func TestOffsets(t *testing.T) {
	b := []byte("ab\nçd\n\nx")
	for _, tc := range []struct{ line, col, off int }{
		{1, 1, 0}, {1, 0, 0}, {2, 2, 5}, {2, 9, 6}, {3, 1, 7}, {4, 1, 8}, {9, 1, len(b)},
	} {
		if off := offsetOf(b, tc.line, tc.col); off != tc.off {
			t.Errorf("offsetOf(%d, %d) = %d; want %d", tc.line, tc.col, off, tc.off)
		}
		if tc.col > 0 && tc.off < len(b) && b[tc.off] != '\n' {
			if line, col := lineCol(b, tc.off); line != tc.line || col != tc.col {
				t.Errorf("lineCol(%d) = %d, %d; want %d, %d", tc.off, line, col, tc.line, tc.col)
			}
		}
	}
}

// defaultConfigErr loads dir, which must load, and returns the error of
// rendering on request the config of a machine only its Default matches.
func defaultConfigErr(t *testing.T, dir string) error {
	t.Helper()
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q := Query{MAC: "52:54:00:00:00:01"}
	res, err := set.Match(q)
	if err != nil {
		t.Fatal(err)
	}
	_, err = set.Config(res, q)
	return err
}
