package boot

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// A file is missing when the assets directory lacks it or holds a directory
// there; each missing path is listed once, with every profile that boots it.
func TestMissingFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.yaml", `kind: Profile
name: a
boot: {kernel: /assets/k, initrd: [/assets/i, /assets/dir]}
---
kind: Profile
name: b
boot: {kernel: /assets/k, initrd: [/assets/present]}
---
kind: Profile
name: remote
boot: {kernel: "https://example.com/k"}
`)
	c, _ := newCore(t, dir, Config{})
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	set := c.Decider.live.Profiles()
	assets := fstest.MapFS{"present": {Data: []byte("x")}, "dir/f": {Data: []byte("x")}}
	want := []MissingFile{{Path: "/assets/dir", Profiles: []string{"a"}}, {Path: "/assets/i", Profiles: []string{"a"}}, {Path: "/assets/k", Profiles: []string{"a", "b"}}}
	if got := MissingFiles(set, assets); !reflect.DeepEqual(got, want) {
		t.Errorf("MissingFiles = %+v, want %+v", got, want)
	}
	probs := AssetProblems(set, assets, "/srv/assets")
	if len(probs) != 4 || !strings.Contains(probs[0].Msg, "/srv/assets") || probs[0].File == "" {
		t.Errorf("AssetProblems = %+v; want one per profile and reference, naming the directory", probs)
	}
	delete(assets, "dir/f")
	assets["i"], assets["k"], assets["dir"] = &fstest.MapFile{}, &fstest.MapFile{}, &fstest.MapFile{}
	if got := MissingFiles(set, assets); len(got) != 0 {
		t.Errorf("MissingFiles with every file present = %+v", got)
	}
}
