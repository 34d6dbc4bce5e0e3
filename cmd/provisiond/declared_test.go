package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
)

// A Machine declared in Git and never booted is listed and shown, as
// declared and never seen, through the real API over the real core.
func TestMachinesDeclared(t *testing.T) {
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles")
	if err := os.Mkdir(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	node2 := "---\nkind: Machine\nname: node2\nmatch: {mac: \"52:54:00:00:00:02\"}\nlabels: {rack: r2}\nprofile: p\n"
	if err := os.WriteFile(filepath.Join(profiles, "all.yaml"), []byte(testProfiles+node2), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := boltstore.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	core := boot.New(boot.Config{ProfilesDir: profiles, AdvertiseURL: "http://127.0.0.1:1", Store: db})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Script(t.Context(), boot.Request{MAC: node1MAC, Labels: map[string]string{"rack": "r1"}}); err != nil {
		t.Fatal(err)
	}
	d := serveAPI(t, core)

	runCases(t, d, []cliCase{
		{
			name: "list shows it never seen",
			args: d.args([]string{"machines", "list"}),
			check: func(t *testing.T, out string) {
				row := rowOf(t, out, "node2")
				want := "node2 52:54:00:00:00:02 - - - p declared never"
				if strings.Join(row, " ") != want {
					t.Errorf("node2 row = %q; want %q", row, want)
				}
				if row := rowOf(t, out, node1MAC); len(row) < 7 || row[6] != "provisioning" {
					t.Errorf("node1 row = %q; want its record", row)
				}
			},
		},
		{
			name:   "list by state declared",
			args:   d.args([]string{"machines", "list"}, "--state", "declared"),
			out:    []string{"node2"},
			notOut: []string{node1MAC},
		},
		{
			name: "show by name",
			args: d.args([]string{"machines", "show", "node2"}),
			out:  []string{"state:", "declared", "rack=r2"},
			check: func(t *testing.T, out string) {
				for _, k := range []string{"first seen", "last seen"} {
					if row := rowOf(t, out, k+":"); strings.Join(row, " ") != k+": never" {
						t.Errorf("%s line = %q; want never", k, row)
					}
				}
			},
		},
		{
			name:   "a state that does not exist",
			args:   d.args([]string{"machines", "list"}, "--state", "exploded"),
			code:   2,
			errOut: []string{"declared, discovered"},
		},
	})
}
