package profiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"

	"github.com/coreos/vcontext/report"
)

// A config that does not translate or validate is reported twice: at the
// line of its own file that is wrong, where an operator fixes it (and where
// an editor or CI annotation can jump to), and at each Machine whose config
// it broke. Butane, Ignition and YAML say where they stopped in the rendered
// config, whose lines are not the template's once an action printed a
// newline, so a failed render is rendered once more, traced, to find the
// template text or action each such place came from.

// place is where a problem lies in a config, rendered or source, and what it
// is. Line and col are 1-based, col counting characters; 0 means unknown.
type place struct {
	line, col int
	msg       string // "error: ..." or "warning: ..."; text/template's own words for templates
	at        string // the config path of a Butane or Ignition entry, or ""
	hint      string // advice on fixing it, or ""
	// inAction: the place lies in what a template action printed, not in
	// the file's own text; line and col are the action's.
	inAction bool
}

// placedError is a problem found in a rendered config, at places in it.
type placedError struct {
	err    error
	places []place
}

func (e *placedError) Error() string { return e.err.Error() }
func (e *placedError) Unwrap() error { return e.err }

// maxPlaces bounds the places of one config traced and reported: the first
// few are enough to start fixing, and the traced render checks each at every
// text and action it passes.
const maxPlaces = 10

// reportError is rep, from Butane or Ignition reading a rendered config, as
// an error that keeps where each entry lies.
func reportError(rep report.Report, src []byte, err error) error {
	s := strings.TrimSpace(rep.String())
	if s == "" {
		return err
	}
	pe := &placedError{err: fmt.Errorf("%w: %s", err, strings.ReplaceAll(s, "\n", "; "))}
	for _, e := range rep.Entries {
		if e.Marker.StartP == nil || len(pe.places) == maxPlaces {
			continue
		}
		p := place{line: int(e.Marker.StartP.Line), col: int(e.Marker.StartP.Column)}
		if i := int(e.Marker.StartP.Index); i > 0 && i <= len(src) {
			// JSON markers count columns in bytes: recount in characters.
			p.line, p.col = lineCol(src, i)
		}
		p.msg = e.Kind.String() + ": " + e.Message
		if e.Context.Len() > 0 {
			p.at = e.Context.String()
		}
		pe.places = append(pe.places, p)
	}
	return pe
}

// yamlError is err, a YAML syntax error from reading a rendered config, as an
// error that keeps the line YAML names.
func yamlError(err error) error {
	line, msg := splitYAMLError(err)
	if line == 0 {
		return err
	}
	if i := strings.LastIndex(msg, "yaml: "); i >= 0 {
		msg = msg[i+len("yaml: "):] // Butane's "Error unmarshaling yaml: yaml: "
	}
	return &placedError{err: err, places: []place{{line: line, msg: "error: invalid YAML: " + msg}}}
}

// configError is a config that did not render, translate or validate for one
// machine, with the places in its source file that are wrong when known.
type configError struct {
	stage  string // "render", or the ConfigKind that failed
	file   string // the source, relative to the profiles directory
	places []place
	err    error
}

func (e *configError) Error() string { return e.stage + " " + e.file + ": " + e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// where is p as "file:line: stage message (column c, ...)". withAt adds the
// config path, which names what one machine's config holds there (the 4th
// file): the same line of the file is the 2nd file of another's.
func (e *configError) where(p place, withAt bool) Problem {
	var notes []string
	if p.col > 0 {
		notes = append(notes, "column "+strconv.Itoa(p.col))
	}
	if withAt && p.at != "" {
		notes = append(notes, "at "+p.at)
	}
	if p.inAction {
		notes = append(notes, "in what the template action here printed")
	}
	msg := e.stage + " " + p.msg
	if e.stage == "render" {
		msg = "template: " + p.msg
	}
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, ", ") + ")"
	}
	if p.hint != "" {
		msg += "; " + p.hint
	}
	return Problem{File: e.file, Line: p.line, Msg: msg}
}

// configFailed reports ce, the config of who (at pos) that failed: once at
// each place in the source file, however many machines share it, and at
// who, naming those places.
func (l *loader) configFailed(pos Pos, who string, ce *configError) {
	if len(ce.places) == 0 {
		l.probs.add(pos.File, pos.Line, "%s: %v", who, ce)
		return
	}
	l.configAtFile(ce)
	at := make([]string, len(ce.places))
	for i, p := range ce.places {
		at[i] = ce.where(p, true).String()
	}
	l.probs.add(pos.File, pos.Line, "%s: %s", who, strings.Join(at, "; "))
}

// configAtFile reports ce at its places in the source file, each once
// however many machines share it.
func (l *loader) configAtFile(ce *configError) {
	for _, p := range ce.places {
		l.probs.addOnce(ce.where(p, false))
	}
}

var templateErrorPos = regexp.MustCompile(`^template: [^:]*:(\d+)(?::(\d+))?:\s*`)

// templateError is err, from parsing or executing the template of file, as
// a configError at the line and column it names.
func templateError(file string, err error) *configError {
	ce := &configError{stage: "render", file: file, err: err}
	msg := err.Error()
	m := templateErrorPos.FindStringSubmatch(msg)
	if m == nil {
		return ce
	}
	p := place{msg: msg[len(m[0]):]}
	p.line, _ = strconv.Atoi(m[1])
	p.col, _ = strconv.Atoi(m[2])
	p.hint = templateHint(p.msg)
	ce.places = []place{p}
	return ce
}

var (
	missingKey    = regexp.MustCompile(`at <(\.metadata[^>]*)\.([^.>]+)>: map has no entry for key "([^"]*)"`)
	undefinedFunc = regexp.MustCompile(`function "([^"]*)" not defined`)
)

// templateHint is advice for the template errors newcomers meet most, or "".
func templateHint(msg string) string {
	if m := missingKey.FindStringSubmatch(msg); m != nil && m[2] == m[3] {
		return fmt.Sprintf(`if it is optional, write {{ index %s %q | default "..." }}`, m[1], m[3])
	}
	if m := undefinedFunc.FindStringSubmatch(msg); m != nil {
		return "templates have Go's builtins and toJson, quote, default and join"
	}
	if strings.Contains(msg, "bad character U+002D '-'") {
		return `a key with a '-' is read with index, e.g. {{ index .metadata "ssh-key" }}`
	}
	return ""
}

// lineCol returns the line and character column of byte offset off in b.
func lineCol(b []byte, off int) (int, int) {
	start := 0
	line := 1
	for i := 0; i < off; i++ {
		if b[i] == '\n' {
			line++
			start = i + 1
		}
	}
	return line, utf8.RuneCount(b[start:off]) + 1
}

// offsetOf returns the byte offset of line and character column col (0:
// the line's start) in b, or len(b) past its end.
func offsetOf(b []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return len(b)
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(b) && b[off] != '\n'; c++ {
		_, size := utf8.DecodeRune(b[off:])
		off += size
	}
	return off
}

// markFunc, like tickFunc, is ours alone: it is added to a traced render only.
const markFunc = "provisiondMark"

// locate maps places in out, the config ct rendered from data, to places in
// ct's source: it renders ct again with a mark before every text and printing
// action, noting for each place the last mark at or before it, the node whose
// output holds it.
func (ct *configTemplate) locate(ctx context.Context, data any, out []byte, places []place) ([]place, error) {
	if ct.text == "" {
		return nil, errors.New("template source unknown")
	}
	t, err := parseTemplate(ct.t.Name(), ct.text)
	if err != nil {
		return nil, err
	}
	instrument(t) // the same limits as the render that failed
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Root != nil {
			eachList(nil, tt.Root, markList)
		}
	}
	type found struct {
		off  int // in out
		mark int // the node's position in the source, -1 before any
		text bool
		at   int // out's length at the mark
	}
	targets := make([]found, len(places))
	for i, p := range places {
		targets[i] = found{off: offsetOf(out, p.line, p.col), mark: -1}
	}
	x := newExecution(t)
	// Only the latest mark before each place is kept: a render may pass
	// millions of nodes.
	x.t.Funcs(template.FuncMap{markFunc: func(pos int, text bool) struct{} {
		for i := range targets {
			if len(x.out) <= targets[i].off {
				targets[i].mark, targets[i].text, targets[i].at = pos, text, len(x.out)
			}
		}
		return struct{}{}
	}})
	again, err := x.run(ctx, data)
	if err != nil {
		return nil, err
	}
	if string(again) != string(out) {
		return nil, errors.New("the template rendered differently when traced")
	}
	src := []byte(ct.text)
	mapped := make([]place, 0, len(places))
	for i, p := range places {
		tg := targets[i]
		if tg.mark < 0 {
			continue
		}
		if tg.text {
			// Text is copied as is: the place is as far into the text node.
			p.line, p.col = lineCol(src, min(tg.mark+tg.off-tg.at, len(src)))
			if places[i].col == 0 {
				p.col = 0
			}
		} else {
			p.line, p.col = lineCol(src, tg.mark)
			p.inAction = true
		}
		mapped = append(mapped, p)
	}
	return mapped, nil
}

// markList inserts a mark before each text and printing action of list.
func markList(_ parse.Node, list *parse.ListNode) {
	nodes := make([]parse.Node, 0, 2*len(list.Nodes))
	for _, n := range list.Nodes {
		text := false
		switch n := n.(type) {
		case *parse.TextNode:
			text = true
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				nodes = append(nodes, n) // assigns: prints nothing
				continue
			}
		default:
			nodes = append(nodes, n)
			continue
		}
		pos := n.Position()
		nodes = append(nodes, callAt(pos, markFunc,
			&parse.NumberNode{NodeType: parse.NodeNumber, Pos: pos, IsInt: true, Int64: int64(pos), Text: strconv.Itoa(int(pos))},
			&parse.BoolNode{NodeType: parse.NodeBool, Pos: pos, True: text}), n)
	}
	list.Nodes = nodes
}
