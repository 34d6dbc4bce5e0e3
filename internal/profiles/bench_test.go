package profiles

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

// benchTree writes n Machines sharing one Butane-templated profile, each with its
// own hostname (so each is a distinct translation).
func benchTree(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	var m strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&m, "---\nkind: Machine\nname: node%05d\nmatch: {mac: \"02:00:00:%02x:%02x:%02x\"}\nprofile: worker\nmetadata: {hostname: node%05d.bench}\n", i, i>>16&0xff, i>>8&0xff, i&0xff, i)
	}
	files := map[string]string{"p.yaml": baseProfile, "worker.bu": workerButane, "m.yaml": m.String()}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkMatch shows matching costs the same at 10 and 10,000 machines.
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("machines=%d", n), func(b *testing.B) {
			set, err := Load(benchTree(b, n), LoadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			q := Query{MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", 0, (n/2)>>8&0xff, (n/2)&0xff)}
			b.ResetTimer()
			for b.Loop() {
				res, err := set.Match(q)
				if err != nil || res.Machine == nil {
					b.Fatal(err)
				}
				if _, err := set.Config(res, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad measures a cold load (every Butane translated) and a reload
// whose translations all come from the cache.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{1000} {
		dir := benchTree(b, n)
		b.Run(fmt.Sprintf("cold/machines=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Load(dir, LoadOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cached/machines=%d", n), func(b *testing.B) {
			cache := NewCache()
			if _, err := Load(dir, LoadOptions{Cache: cache}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := Load(dir, LoadOptions{Cache: cache}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRender compares a render under the limits with text/template's own
// Execute: the cost of the limits per render, and of the tick per range
// iteration.
func BenchmarkRender(b *testing.B) {
	data := map[string]any{"metadata": map[string]any{"hostname": "node1.bench", "disks": []any{"sda", "sdb", "sdc", "sdd"}}}
	for _, tc := range []struct{ name, src string }{
		{"butane", workerButane},
		{"range=4", "{{range .metadata.disks}}- /dev/{{.}}\n{{end}}"},
		{"range=10000", "{{range 10000}}{{end}}"},
	} {
		t := template.Must(template.New("t").Option("missingkey=error").Parse(tc.src))
		b.Run(tc.name+"/text-template", func(b *testing.B) {
			for b.Loop() {
				if err := t.Execute(io.Discard, data); err != nil {
					b.Fatal(err)
				}
			}
		})
		limited := newConfigTemplate(template.Must(t.Clone()))
		b.Run(tc.name+"/limited", func(b *testing.B) {
			for b.Loop() {
				if _, err := limited.execute(context.Background(), data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
