package profiles

import (
	"errors"
	"strings"
	"testing"
)

// TestShapeProblems: a field written in the wrong shape is reported at its
// key, in the words of the YAML the operator wrote (map, list, value) and
// with an example, never as yaml.v3's `cannot unmarshal !!seq into
// map[string]string`; the whole list of problems is exactly want.
func TestShapeProblems(t *testing.T) {
	const profile = "kind: Profile\nname: p\nboot: {kernel: /assets/k}\n"
	const machine = "kind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n"
	for _, tc := range []struct {
		name, profile, machine string // documents of p.yaml and machines.yaml; "" is the default
		want                   []string
	}{
		{
			name: "labels as a list", machine: machine + "#\n#\nlabels: [r9]\n",
			want: []string{"machines.yaml:7: labels must be a map of key: value, e.g. {rack: r1}; got a list"},
		},
		{
			name: "labels as a block list", machine: machine + "labels:\n  - rack=r1\n",
			want: []string{"machines.yaml:5: labels must be a map of key: value, e.g. {rack: r1}; got a list"},
		},
		{
			name: "labels as one value", machine: machine + "labels: rack=r1\n",
			want: []string{`machines.yaml:5: labels must be a map of key: value, e.g. {rack: r1}; got "rack=r1"`},
		},
		{
			name: "label value a map", machine: machine + "labels:\n  rack: {row: 1}\n",
			want: []string{"machines.yaml:6: labels.rack must be a single value; got a map"},
		},
		{
			name: "metadata as a list", machine: machine + "metadata: [hostname=node1]\n",
			want: []string{"machines.yaml:5: metadata must be a map of key: value, e.g. {hostname: node1.lab}; got a list"},
		},
		{
			name:    "match as one value",
			machine: "kind: Machine\nname: n1\nmatch: 52:54:00:00:00:01\nprofile: p\n",
			want:    []string{`machines.yaml:3: match must be a map with fields hardware, labels, mac, serial, uuid, e.g. {mac: "52:54:00:00:00:01"}; got "52:54:00:00:00:01"`},
		},
		{
			name:    "two macs",
			machine: "kind: Machine\nname: n1\nmatch:\n  mac: [\"52:54:00:00:00:01\", \"52:54:00:00:00:02\"]\nprofile: p\n",
			want:    []string{`machines.yaml:4: match.mac must be a single value, e.g. "52:54:00:00:00:01"; got a list`},
		},
		{
			name:    "match labels as a list",
			machine: "kind: Machine\nname: n1\nmatch: {labels: [rack=r1]}\nprofile: p\n",
			want:    []string{"machines.yaml:3: match.labels must be a map of key: value, e.g. {rack: r1}; got a list"},
		},
		{
			// It would match every request that does not send rack.
			name:    "match label without a value",
			machine: "kind: Machine\nname: n1\nmatch:\n  labels:\n    rack:\n    row: \"\"\nprofile: p\n",
			want: []string{
				"machines.yaml:5: match.labels.rack has no value, which would match every request without a rack label; give it one, e.g. rack: r1",
				"machines.yaml:6: match.labels.row has no value, which would match every request without a row label; give it one, e.g. row: r1",
			},
		},
		{
			name: "bmc as one value", machine: machine + "bmc: ipmi://10.0.0.5\n",
			want: []string{`machines.yaml:5: bmc must be a map with fields address, credentials, e.g. {address: ipmi://10.0.0.5, credentials: env:NODE1_BMC}; got "ipmi://10.0.0.5"`},
		},
		{
			name:    "initrd as one value",
			profile: "kind: Profile\nname: p\nboot:\n  kernel: /assets/k\n  initrd: /assets/i.img\n",
			want:    []string{`p.yaml:5: boot.initrd must be a list, e.g. [/assets/initrd.img]; got "/assets/i.img"`},
		},
		{
			name:    "args as one string",
			profile: "kind: Profile\nname: p\nboot:\n  kernel: /assets/k\n  args: console=ttyS0 quiet\n",
			want:    []string{`p.yaml:5: boot.args must be a list, e.g. [console=ttyS0, quiet]; got "console=ttyS0 quiet"`},
		},
		{
			name:    "an arg as a list",
			profile: "kind: Profile\nname: p\nboot:\n  kernel: /assets/k\n  args:\n    - quiet\n    - [a, b]\n",
			want:    []string{"p.yaml:7: boot.args[1] must be a single value; got a list"},
		},
		{
			name:    "kernel as a list",
			profile: "kind: Profile\nname: p\nboot: {kernel: [/assets/k]}\n",
			want:    []string{"p.yaml:3: boot.kernel must be a single value, e.g. /assets/vmlinuz; got a list"},
		},
		{
			name:    "boot as a list",
			profile: "kind: Profile\nname: p\nboot: [/assets/k]\n",
			want:    []string{"p.yaml:3: boot must be a map with fields args, initrd, kernel, loader, uki, e.g. {kernel: /assets/vmlinuz, initrd: [/assets/initrd.img]}; got a list"},
		},
		{
			name:    "config as a path",
			profile: profile + "config: worker.bu\n",
			want:    []string{`p.yaml:4: config must be a map with fields butane, ignition, talos, template, e.g. {butane: butane/worker.bu}; got "worker.bu"`},
		},
		{
			name:    "once not a boolean",
			profile: profile + "once: sometimes\n",
			want:    []string{`p.yaml:4: once must be true or false; got "sometimes"`},
		},
		{
			name:    "name as a list",
			profile: "kind: Profile\nname: [p]\nboot: {kernel: /assets/k}\n",
			want:    []string{`machines.yaml:1: machine "n1" uses unknown profile "p"`, "p.yaml:2: name must be a single value; got a list"},
		},
		{
			name:    "kind as a list",
			profile: "kind: [Profile]\nname: p\n",
			want:    []string{`machines.yaml:1: machine "n1" uses unknown profile "p"`, "p.yaml:1: kind must be Profile, Machine, Network or Default; got a list"},
		},
		{
			name:    "document a list",
			profile: "- kind: Profile\n  name: p\n",
			want:    []string{`machines.yaml:1: machine "n1" uses unknown profile "p"`, "p.yaml:1: document must be a map with a kind (Profile, Machine, Network or Default); got a list"},
		},
		{
			name: "typos", machine: machine + "metdata: {a: b}\nLabels: {a: b}\nbmc: {adress: ipmi://x, credentials: env:X}\nsomething: x\n",
			want: []string{
				`machines.yaml:5: unknown field "metdata" in machine, did you mean "metadata"? (known: bmc, ip, kind, labels, match, metadata, name, profile)`,
				`machines.yaml:6: unknown field "Labels" in machine, did you mean "labels"? (known: bmc, ip, kind, labels, match, metadata, name, profile)`,
				`machines.yaml:7: unknown field "adress" in bmc, did you mean "address"? (known: address, credentials)`,
				`machines.yaml:8: unknown field "something" in machine (known: bmc, ip, kind, labels, match, metadata, name, profile)`,
			},
		},
		{
			// An alias is judged by what it stands for.
			name:    "aliases",
			profile: "kind: Profile\nname: p\nboot:\n  kernel: /assets/k\n  args: &args [quiet]\n  initrd: *args\n---\nkind: Default\nprofile: p\n",
			want:    []string{"p.yaml:6: boot.initrd: must be /assets/<path> or an http(s) URL (got quiet)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.profile == "" {
				tc.profile = profile
			}
			if tc.machine == "" {
				tc.machine = machine
			}
			_, err := Load(writeTree(t, map[string]string{"p.yaml": tc.profile, "machines.yaml": tc.machine}), LoadOptions{})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load = %v; want Problems", err)
			}
			if got := strings.Join(Lines(probs), "\n"); got != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestEditDistance: the typos an operator makes each cost one edit, a swap
// of neighbours included, and the distance is symmetric.
func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"initrd", "initrd", 0},
		{"intrd", "initrd", 1},   // a letter left out
		{"initrdd", "initrd", 1}, // one too many
		{"inutrd", "initrd", 1},  // one wrong
		{"intird", "initrd", 1},  // two neighbours swapped: 2 for Levenshtein
		{"lsit", "list", 1},
		{"ca", "abc", 3}, // optimal string alignment edits no substring twice
		{"kernel", "cmdline", 6},
	} {
		for _, ab := range [][2]string{{tc.a, tc.b}, {tc.b, tc.a}} {
			if got := EditDistance(ab[0], ab[1]); got != tc.want {
				t.Errorf("EditDistance(%q, %q) = %d, want %d", ab[0], ab[1], got, tc.want)
			}
		}
	}
}
