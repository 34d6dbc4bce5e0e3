package profiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// LoadOptions tunes Load. The zero value is ready to use.
type LoadOptions struct {
	// Context cancels the load: Load then returns its cause, not Problems,
	// as soon as the template being rendered notices. Nil: never.
	Context context.Context
	// Cache carries translated configs from the previous Set, so a reload only
	// translates what changed. Nil disables reuse.
	Cache *Cache
	// BaseURL is the URL machines reach provisiond at, for .provisiond.url and
	// .provisiond.installed_url in templates; "" renders them as paths only.
	BaseURL string
}

// Load reads, validates, indexes and renders the profiles directory dir. It returns
// either a complete Set or Problems listing everything wrong (file:line: message);
// other errors mean the directory could not be read at all, or the load was
// cancelled.
func Load(dir string, opts LoadOptions) (*Set, error) {
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open profiles directory: %w", err)
	}
	defer root.Close()

	l := &loader{root: root, fsys: root.FS()}
	docs, err := l.readDocuments()
	if err != nil {
		return nil, fmt.Errorf("read profiles directory %s: %w", dir, err)
	}
	set := l.decode(docs)
	l.index(set)
	l.indexNetworks(set)
	if len(l.probs.list) == 0 {
		l.render(ctx, set, opts.Cache, strings.TrimRight(opts.BaseURL, "/"))
	}
	if ctx.Err() != nil {
		// The problems found may be the cancellation's doing: not a verdict.
		return nil, fmt.Errorf("load profiles %s: %w", dir, context.Cause(ctx))
	}
	if len(l.probs.list) > 0 {
		return nil, l.probs.list.sorted()
	}
	set.Dir = dir
	set.LoadedAt = time.Now()
	return set, nil
}

// loader holds the state of one Load.
type loader struct {
	root  *os.Root
	fsys  fs.FS
	probs problems
	// broken names profiles whose documents did not decode, so machines using
	// them are not also reported as using an unknown profile.
	broken map[string]bool
	// overLimit names profiles whose template passed a render limit.
	overLimit map[string]bool
	// networks holds the Networks by name, to find a second of one name.
	networks map[string]*Network
}

// document is one YAML document of a profiles file.
type document struct {
	file string
	node *yaml.Node // the document's top-level mapping
	kind string
}

// readDocuments parses every *.yaml / *.yml file, skipping hidden entries (.git)
// and the files Profiles name as their config source (a Talos machine config is
// YAML too, and is not ours to interpret).
func (l *loader) readDocuments() ([]document, error) {
	var files []string
	err := fs.WalkDir(l.fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var docs []document
	for _, f := range files {
		data, err := fs.ReadFile(l.fsys, f)
		if err != nil {
			return nil, err
		}
		docs = append(docs, l.parseFile(f, data)...)
	}

	configFiles := map[string]bool{}
	for _, d := range docs {
		if d.kind != KindProfile {
			continue
		}
		var p Profile
		if d.node.Decode(&p) == nil {
			if _, src := p.Config.Source(); src != "" {
				configFiles[path.Clean(src)] = true
			}
		}
	}
	kept := docs[:0]
	for _, d := range docs {
		if !configFiles[d.file] {
			kept = append(kept, d)
		}
	}
	// Problems from files that turned out to be configs are not ours to report.
	probs := l.probs.list[:0]
	for _, p := range l.probs.list {
		if !configFiles[p.File] {
			probs = append(probs, p)
		}
	}
	l.probs.list = probs
	return kept, nil
}

var (
	yamlLine = regexp.MustCompile(`line (\d+): `)
	// yamlParserError matches the problems yaml.v3's parser, as opposed to
	// its scanner, reports: it numbers their lines from 0, so they name the
	// line above the one where the construct they concern starts.
	yamlParserError = regexp.MustCompile(`did not find expected (node content|key|'-' indicator|',' or '\]'|',' or '\}'|<document start>)`)
)

// parseFile splits a file into its YAML documents.
func (l *loader) parseFile(file string, data []byte) []document {
	var docs []document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			line, msg := splitYAMLError(err)
			l.probs.add(file, line, "invalid YAML: %s", msg)
			return docs
		}
		if len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue // an empty document, e.g. a trailing "---"
		}
		top := n.Content[0]
		if top.Kind != yaml.MappingNode {
			l.probs.add(file, top.Line, "document must be a map with a kind (%s); got %s", kinds, describeNode(top))
			continue
		}
		kind := ""
		if v := mappingValue(top, "kind"); v != nil {
			if v.Kind != yaml.ScalarNode {
				l.probs.add(file, keyLine(top, "kind"), "kind must be %s; got %s", kinds, describeNode(v))
				continue
			}
			kind = v.Value
		}
		docs = append(docs, document{file: file, node: top, kind: kind})
	}
}

func splitYAMLError(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		line, _ := strconv.Atoi(msg[m[2]:m[3]])
		if yamlParserError.MatchString(msg) {
			line++
		}
		return line, msg[:m[0]] + msg[m[1]:]
	}
	return 0, msg
}

// mappingValue returns the value node of key in a mapping node, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// keyLine returns the line of key in mapping m, or the mapping's own line.
func keyLine(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i].Line
		}
	}
	return m.Line
}

// decode turns documents into typed values, reporting unknown kinds and fields,
// type errors and per-document mistakes.
func (l *loader) decode(docs []document) *Set {
	set := &Set{Profiles: map[string]*Profile{}}
	for _, d := range docs {
		var target any
		switch d.kind {
		case KindProfile:
			target = &Profile{}
		case KindMachine:
			target = &Machine{}
		case KindDefault:
			target = &Default{}
		case KindNetwork:
			target = &Network{}
		case "":
			l.probs.add(d.file, d.node.Line, "document has no kind (want %s)", kinds)
			continue
		default:
			l.probs.add(d.file, keyLine(d.node, "kind"), "unknown kind %q (want %s)", d.kind, kinds)
			continue
		}
		if !l.checkShape(d.file, d.node.Line, "", d.node, reflect.TypeOf(target).Elem(), "") {
			l.markBroken(d)
			continue
		}
		if err := d.node.Decode(target); err != nil {
			l.markBroken(d)
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					line, msg := splitYAMLError(errors.New(e))
					l.probs.add(d.file, line, "%s", msg)
				}
			} else {
				l.probs.add(d.file, d.node.Line, "%v", err)
			}
			continue
		}
		pos := Pos{File: d.file, Line: d.node.Line}
		switch v := target.(type) {
		case *Profile:
			v.Pos = pos
			l.checkProfile(set, v, d.node)
		case *Machine:
			v.Pos = pos
			l.checkReservation(v, d.node) // first: it sees match.mac as written
			l.checkMachine(v, d.node)
			set.Machines = append(set.Machines, v)
		case *Network:
			v.Pos = pos
			l.checkNetwork(set, v, d.node)
		case *Default:
			v.Pos = pos
			if set.Default != nil {
				l.probs.add(d.file, d.node.Line, "second Default (the first is at %s)", set.Default.Pos)
				continue
			}
			if v.Profile == "" {
				l.probs.add(d.file, d.node.Line, "Default needs a profile")
			}
			set.Default = v
		}
	}
	return set
}

func (l *loader) markBroken(d document) {
	if name := mappingValue(d.node, "name"); d.kind == KindProfile && name != nil {
		if l.broken == nil {
			l.broken = map[string]bool{}
		}
		l.broken[name.Value] = true
	}
}
