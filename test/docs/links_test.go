package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/testutil"
)

// repoRoot is the module's root, from this package's directory.
const repoRoot = "../.."

func TestMain(m *testing.M) { testutil.Main(m) }

// runnableDocs are the files whose command blocks TestDocs runs.
func runnableDocs(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	return append([]string{filepath.Join(repoRoot, "README.md")}, docs...)
}

// markdownFiles are the repository's Markdown files, outside hidden
// directories and what tests and builds leave behind.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != repoRoot && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "data" || name == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDocLinks checks every relative link of the repository's Markdown: the
// file exists inside the repository (a clone must stand alone), and an
// #anchor names a heading of the Markdown file it points into.
func TestDocLinks(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	parsed := map[string]*markdown{}
	parse := func(path string) *markdown {
		if m, ok := parsed[path]; ok {
			return m
		}
		m, err := parseMarkdown(path)
		if err != nil {
			t.Error(err)
		}
		parsed[path] = m
		return m
	}
	checked := 0
	for _, path := range markdownFiles(t) {
		m := parse(path)
		if m == nil {
			continue
		}
		for _, l := range m.links {
			target := l.target
			if i := strings.Index(target, ":"); i > 0 && !strings.ContainsAny(target[:i], "/#.") {
				continue // https:, mailto: ...
			}
			checked++
			file, anchor, _ := strings.Cut(target, "#")
			dest := path
			if file != "" {
				if strings.HasPrefix(file, "/") {
					t.Errorf("%s:%d: %s: link relative to the file, not to a server root", path, l.line, target)
					continue
				}
				dest = filepath.Join(filepath.Dir(path), filepath.FromSlash(file))
				abs, err := filepath.Abs(dest)
				if err != nil {
					t.Fatal(err)
				}
				if rel, err := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
					t.Errorf("%s:%d: %s leaves the repository: a clone must stand alone", path, l.line, target)
					continue
				}
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s:%d: %s: no such file or directory", path, l.line, target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			dm := parse(dest)
			if dm == nil {
				continue
			}
			if !slugs(dm.headings)[anchor] {
				t.Errorf("%s:%d: %s: %s has no heading with the anchor #%s", path, l.line, target, dest, anchor)
			}
		}
	}
	t.Logf("%d relative links checked in %d files", checked, len(parsed))
}

func TestSlugs(t *testing.T) {
	got := slugs([]heading{
		{text: "API (`/api/v1`, JSON, bearer token)"},
		{text: "Endpoints (one HTTP listener, `--http-addr`)"},
		{text: "1. Install the binary"},
		{text: "Lifecycle: boot-once and phone-home"},
		{text: "See [the examples](examples/README.md)"},
		{text: "Notes"},
		{text: "Notes"},
	})
	for _, want := range []string{"api-apiv1-json-bearer-token", "endpoints-one-http-listener---http-addr", "1-install-the-binary",
		"lifecycle-boot-once-and-phone-home", "see-the-examples", "notes", "notes-1"} {
		if !got[want] {
			t.Errorf("no slug %q in %v", want, got)
		}
	}
}
