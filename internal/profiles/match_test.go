package profiles

import (
	"errors"
	"testing"
)

func TestMatchPrecedence(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: x\nboot: {kernel: /assets/k}\n---\nkind: Profile\nname: d\nboot: {kernel: /assets/k}\n",
		"m.yaml": `kind: Machine
name: by-mac
match: {mac: "52:54:00:00:00:01"}
profile: x
---
kind: Machine
name: by-uuid
match: {uuid: "11111111-2222-3333-4444-555555555555"}
profile: x
---
kind: Machine
name: by-mac-and-label
match: {mac: "52:54:00:00:00:02", labels: {rack: r1}}
profile: x
---
kind: Machine
name: rack-r1
match: {labels: {rack: r1}}
profile: x
---
kind: Machine
name: rack-r1-arm
match: {labels: {rack: r1, arch: arm64}}
profile: x
`,
	})
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    Query
		want string // machine name; "" = no match
	}{
		{"mac beats labels", Query{MAC: "52:54:00:00:00:01", Labels: map[string]string{"rack": "r1"}}, "by-mac"},
		{"uuid alone", Query{MAC: "52:54:00:00:00:99", UUID: "11111111-2222-3333-4444-555555555555"}, "by-uuid"},
		{"mac and labels must all match", Query{MAC: "52:54:00:00:00:02"}, ""},
		{"mac and labels match", Query{MAC: "52:54:00:00:00:02", Labels: map[string]string{"rack": "r1"}}, "by-mac-and-label"},
		{"more labels beat fewer", Query{MAC: "52:54:00:00:00:98", Labels: map[string]string{"rack": "r1", "arch": "arm64"}}, "rack-r1-arm"},
		{"fewer labels still match", Query{MAC: "52:54:00:00:00:98", Labels: map[string]string{"rack": "r1", "arch": "x86_64"}}, "rack-r1"},
		{"nothing matches", Query{MAC: "52:54:00:00:00:97"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := set.Match(tc.q)
			if tc.want == "" {
				if !errors.Is(err, ErrNoMatch) {
					t.Fatalf("Match = %+v, %v; want ErrNoMatch (no Default)", res, err)
				}
				return
			}
			if err != nil || res.Machine == nil || res.Machine.Name != tc.want {
				t.Fatalf("Match = %+v, %v; want machine %s", res, err, tc.want)
			}
		})
	}
}

func TestMatchFallsBackToDefault(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: d\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: d\n",
	})
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := set.Match(Query{MAC: "52:54:00:00:00:01"})
	if err != nil || res.Machine != nil || res.Profile.Name != "d" {
		t.Fatalf("Match = %+v, %v; want the Default profile d", res, err)
	}
}
