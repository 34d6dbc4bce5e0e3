package profiles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
)

// Config templates come from the profiles repository, yet a few characters of
// template can loop for ever ({{range 9223372036854775807}}{{end}}) or have
// fmt allocate gigabytes ({{printf "%9999999d" 1}} in a loop), and
// text/template can neither be interrupted from outside nor told to stop
// growing a string. So every render runs under limits. Config files are
// kilobytes rendered in microseconds: the limits sit orders of magnitude above
// that, while one bad template costs at most a couple of seconds of one core
// and a few MiB.
const (
	// renderTimeout bounds the time of one render.
	renderTimeout = 2 * time.Second
	// maxRenderSteps bounds the loop iterations and template calls of one
	// render (under a second of empty iterations). Unlike the clock, it gives
	// the same verdict on every machine, so what validates in CI loads in
	// production.
	maxRenderSteps = 1_000_000
	// maxRenderBytes bounds a render's output and, separately, the strings
	// printf and the other string-building functions build during it.
	maxRenderBytes = 4 << 20
	// maxFormatWidth bounds a printf width or precision: fmt allocates the
	// padding before its result could be counted. Configs pad to tens.
	maxFormatWidth = 4096
)

// tickFunc is the function instrument calls at the start of every loop
// iteration and template body. It is added to a template's functions only for
// execution, so a template that names it fails to parse: users cannot call
// or replace it.
const tickFunc = "provisiondTick"

// limitError is a template passing one of the render limits. It is the
// template's problem rather than the rendered machine's: Load reports it at
// the template.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

var (
	errTooManySteps = &limitError{fmt.Sprintf("template passed the limit of %d loop iterations and template calls", maxRenderSteps)}
	errTooSlow      = &limitError{fmt.Sprintf("template passed the render time limit of %v", renderTimeout)}
	errTooLong      = &limitError{fmt.Sprintf("template output passed the limit of %d MiB", maxRenderBytes>>20)}
	errTooMuchBuilt = &limitError{fmt.Sprintf("the strings built by printf, print, println, html, js, urlquery, quote, toJson and join passed the limit of %d MiB", maxRenderBytes>>20)}
	errWideList     = &limitError{"a width or precision on a list or map is refused (fmt pads each element)"}
)

// instrument inserts a call to tickFunc first in every template body of t and
// in every range body: the only places a template repeats work. A limited
// writer alone could not stop {{range N}}{{end}}, which writes nothing.
func instrument(t *template.Template) {
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Root == nil {
			continue
		}
		eachList(nil, tt.Root, func(owner parse.Node, list *parse.ListNode) {
			if r, ok := owner.(*parse.RangeNode); ok && list == r.List {
				list.Nodes = append([]parse.Node{tickAt(r.Pos)}, list.Nodes...)
			}
		})
		tt.Root.Nodes = append([]parse.Node{tickAt(tt.Root.Pos)}, tt.Root.Nodes...)
	}
}

// eachList calls visit for list, owned by owner (nil for a template body),
// and for every list nested in it (the bodies and else branches of range, if
// and with), innermost first, so that visit may add nodes to the list it is
// given.
func eachList(owner parse.Node, list *parse.ListNode, visit func(owner parse.Node, list *parse.ListNode)) {
	if list == nil {
		return
	}
	for _, n := range list.Nodes {
		var b *parse.BranchNode
		switch n := n.(type) {
		case *parse.RangeNode:
			b = &n.BranchNode
		case *parse.IfNode:
			b = &n.BranchNode
		case *parse.WithNode:
			b = &n.BranchNode
		default:
			continue
		}
		eachList(n, b.List, visit)
		eachList(n, b.ElseList, visit) // runs once, but may hold ranges
	}
	visit(owner, list)
}

// tickAt is the action {{$provisiondTick := provisiondTick}} at pos, so that
// an execution error it raises names the line of the range or template body
// it ticks for.
func tickAt(pos parse.Pos) *parse.ActionNode { return callAt(pos, tickFunc) }

// callAt is the action {{$fn := fn args...}} at pos, calling a function of
// ours. Declaring a variable, not printing the empty result, skips a write.
func callAt(pos parse.Pos, fn string, args ...parse.Node) *parse.ActionNode {
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: append([]parse.Node{parse.NewIdentifier(fn).SetPos(pos)}, args...)}
	decl := []*parse.VariableNode{{NodeType: parse.NodeVariable, Pos: pos, Ident: []string{"$" + fn}}}
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos, Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Decl: decl, Cmds: []*parse.CommandNode{cmd}}}
}

// configTemplate is a parsed config template, instrumented, with executions to
// reuse: binding the functions to a copy of the template costs more than most
// renders do.
type configTemplate struct {
	t     *template.Template
	text  string    // the source, for tracing a failed render (see locate)
	execs sync.Pool // of *execution, each bound to its own copy of t
}

// parseConfigTemplate parses a config file as Load does.
func parseConfigTemplate(name, text string) (*configTemplate, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return nil, err
	}
	ct := newConfigTemplate(t)
	ct.text = text
	return ct, nil
}

// parseTemplate parses text with the options and function names of config
// templates. The functions are bound to an execution that never runs: each
// render binds its own (see execute); only their names and signatures
// count here.
func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs((&execution{}).funcs()).Parse(text)
}

func newConfigTemplate(t *template.Template) *configTemplate {
	instrument(t)
	return &configTemplate{t: t}
}

// execute renders the template with data under the render limits; it stops
// with ctx's cause when ctx ends.
func (ct *configTemplate) execute(ctx context.Context, data any) ([]byte, error) {
	x, _ := ct.execs.Get().(*execution)
	if x == nil {
		t, err := ct.t.Clone() // shares the parse trees
		if err != nil {
			return nil, err
		}
		x = newExecution(t)
	}
	defer ct.execs.Put(x)
	return x.run(ctx, data)
}

// newExecution binds the functions of a render to t, which it then owns.
func newExecution(t *template.Template) *execution {
	x := &execution{}
	x.t = t.Funcs(x.funcs()).Funcs(template.FuncMap{tickFunc: x.tick})
	return x
}

// run renders x's template with data under fresh limits.
func (x *execution) run(ctx context.Context, data any) ([]byte, error) {
	x.ctx, x.deadline, x.steps, x.out, x.built = ctx, time.Now().Add(renderTimeout), maxRenderSteps, nil, maxRenderBytes
	if err := x.t.Execute(x, data); err != nil {
		return nil, err
	}
	return x.out, nil
}

// execution renders a configTemplate, one render at a time, and holds what the
// current render may still spend.
type execution struct {
	t        *template.Template // a copy of the configTemplate's, with funcs bound to this execution
	ctx      context.Context
	deadline time.Time
	steps    int // loop iterations and template calls left
	out      []byte
	built    int // bytes the string-building functions may still build
	// During one string-building call: the bytes its operands produced, and
	// why one refused to be formatted.
	call   int
	fmtErr *limitError
}

// funcs are the functions templates may call besides the builtins: bounded
// replacements for the builtins that can build a string much larger than
// their arguments (a FuncMap entry takes precedence over the builtin of the
// same name; the other builtins slice, index or compare without copying),
// and those of funcs.go. The tick is not among them: see tickFunc.
func (x *execution) funcs() template.FuncMap {
	return template.FuncMap{
		"printf":  x.printf,
		"print":   func(args ...any) (string, error) { return x.sprint("print", fmt.Sprint, args, false) },
		"println": func(args ...any) (string, error) { return x.sprint("println", fmt.Sprintln, args, false) },
		// Escaping grows a string up to sixfold, and again each time it is
		// escaped anew.
		"html":     x.escaper("html", template.HTMLEscapeString),
		"js":       x.escaper("js", template.JSEscapeString),
		"urlquery": x.escaper("urlquery", url.QueryEscape),
		"toJson":   x.toJSON,
		"quote":    x.quote,
		"join":     x.join,
		"default":  pickDefault,
		// Bounded by the report it reads (see hardware.go).
		"installDisk": installDisk,
	}
}

// Write collects the output, refusing what would pass maxRenderBytes.
func (x *execution) Write(p []byte) (int, error) {
	if len(x.out)+len(p) > maxRenderBytes {
		return 0, errTooLong
	}
	x.out = append(x.out, p...)
	return len(p), nil
}

// tick stops the execution, as a function returning an error does, once a
// limit is passed or ctx has ended. Its result, of size 0, costs reflect no
// allocation.
func (x *execution) tick() (struct{}, error) {
	x.steps--
	switch {
	case x.steps < 0:
		return struct{}{}, errTooManySteps
	case x.ctx.Err() != nil:
		return struct{}{}, context.Cause(x.ctx)
	case time.Now().After(x.deadline):
		return struct{}{}, errTooSlow
	}
	return struct{}{}, nil
}

func (x *execution) printf(format string, args ...any) (string, error) {
	if hasStar(format) {
		// fmt would read the width from an operand, which is wrapped.
		return "", errors.New("a width or precision from an argument (*) is not supported in templates; write the number in the format")
	}
	return x.sprint("printf", func(ops ...any) string { return fmt.Sprintf(format, ops...) }, args, true)
}

// escaper returns the bounded version of the builtin that escapes with escape
// its arguments joined as print joins them.
func (x *execution) escaper(name string, escape func(string) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		s, err := x.sprint(name, fmt.Sprint, args, false)
		if err != nil {
			return "", err
		}
		return x.count(name, escape(s))
	}
}

// sprint runs sprint, one of fmt's Sprint functions, over args and counts its
// result. Each argument is wrapped as an operand, so that no call builds much
// more than the render may still build; without widths (print), strings are
// left as they are: fmt copies them as is, and their kind decides where
// Sprint puts spaces.
func (x *execution) sprint(name string, sprint func(...any) string, args []any, widths bool) (string, error) {
	x.call, x.fmtErr = 0, nil
	ops := make([]any, len(args))
	for i, a := range args {
		if v := reflect.ValueOf(a); v.Kind() == reflect.String && !widths {
			x.call += v.Len()
			ops[i] = a
		} else {
			ops[i] = operand{x, a}
		}
	}
	if x.call > x.built {
		return "", &limitError{name + ": " + errTooMuchBuilt.msg}
	}
	s := sprint(ops...)
	if x.fmtErr != nil {
		return "", &limitError{name + ": " + x.fmtErr.msg}
	}
	return x.count(name, s)
}

// count charges s, the string function name built, to the execution.
func (x *execution) count(name, s string) (string, error) {
	if x.built -= len(s); x.built < 0 {
		return "", &limitError{name + ": " + errTooMuchBuilt.msg}
	}
	return s, nil
}

// operand is an argument of printf (or print...) that fmt hands to Format with
// the verb's flags, width and precision before producing anything for it. Only
// %T, and the %!(EXTRA ...) fmt adds for surplus arguments, see the wrapper.
type operand struct {
	x *execution
	v any
}

func (o operand) Format(f fmt.State, verb rune) {
	x := o.x
	if x.fmtErr != nil {
		return // the call has failed: produce nothing more
	}
	w, hasW := f.Width()
	p, hasP := f.Precision()
	if n := max(w, p); n > maxFormatWidth {
		x.fmtErr = &limitError{fmt.Sprintf("width or precision %d passes the limit of %d", n, maxFormatWidth)}
		return
	}
	if hasW || hasP {
		switch reflect.ValueOf(o.v).Kind() {
		case reflect.Array, reflect.Slice, reflect.Map, reflect.Struct, reflect.Pointer:
			x.fmtErr = errWideList
			return
		}
	}
	s := fmt.Sprintf(fmt.FormatString(f, verb), o.v)
	if x.call += len(s); x.call > x.built {
		x.fmtErr = errTooMuchBuilt
		return
	}
	_, _ = io.WriteString(f, s) // fmt's buffer does not fail
}

// hasStar reports whether a verb of format takes its width or precision from an
// argument (%*d, %.*f, %[2]*d).
func hasStar(format string) bool {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format) && strings.IndexByte("#0+- []0123456789.*", format[i]) >= 0; i++ {
			if format[i] == '*' {
				return true
			}
		}
	}
	return false
}
