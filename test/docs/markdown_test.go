package docs

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// A fence is one fenced code block of a Markdown file.
type fence struct {
	line int    // 1-based line of the opening fence
	lang string // the info string's first word: sh, yaml, "" for a plain block
	body string // the content, without the fence's indentation
	// adjacent: only blank lines separate it from the fence before it.
	adjacent bool
	dir      *directive // the doc-test comment right before it, if any
}

// command reports whether the block is commands for a shell.
func (f *fence) command() bool {
	switch f.lang {
	case "sh", "bash", "shell", "console":
		return true
	}
	return false
}

// plain reports whether the block is untyped text: output, a synopsis, a
// diagram.
func (f *fence) plain() bool { return f.lang == "" || f.lang == "text" }

// A directive is a <!-- doc-test: VERB [ARG] [; unchecked: TEXT]... (REASON) -->
// comment; see the package documentation.
type directive struct {
	line      int
	verb      string
	arg       string // write: the file
	reason    string
	unchecked []string
	body      string // run: the script, the comment's lines after the first
}

// An item is what a document does, in order: a fence, or a hidden run step.
type item struct {
	fence *fence
	run   *directive
}

// A heading is an ATX heading outside fences.
type heading struct {
	line int
	text string
}

// A link is an inline link or image, or a reference definition, outside
// fences and code spans.
type link struct {
	line   int
	target string
}

// markdown is what the tests need of one Markdown file.
type markdown struct {
	path     string
	items    []item
	headings []heading
	links    []link
	prose    []string // the lines outside fences, code spans included
}

func (m *markdown) fences() []*fence {
	var fs []*fence
	for _, it := range m.items {
		if it.fence != nil {
			fs = append(fs, it.fence)
		}
	}
	return fs
}

var (
	fenceOpen   = regexp.MustCompile("^( *)(```+|~~~+)[ \t]*([^ \t`]*)")
	atxHeading  = regexp.MustCompile(`^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	inlineLink  = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refDef      = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$`)
	codeSpan    = regexp.MustCompile("`+[^`]*`+")
	docTestOpen = "<!-- doc-test:"
)

// parseMarkdown reads a Markdown file into its fences, doc-test directives,
// headings and links. A malformed or misplaced directive is an error.
func parseMarkdown(path string) (*markdown, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &markdown{path: path}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	var (
		pending *directive // waits for its fence
		last    = -1       // the line index where the last fence closed
		gapOK   bool       // only blank lines since then
	)
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if mm := fenceOpen.FindStringSubmatch(line); mm != nil {
			indent, marker := len(mm[1]), mm[2]
			f := &fence{line: i + 1, lang: strings.ToLower(mm[3]), dir: pending, adjacent: last >= 0 && gapOK}
			pending = nil
			var body []string
			closed := false
			for i++; i < len(lines); i++ {
				l := lines[i]
				if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, marker) && strings.Trim(t, marker[:1]+" \t") == "" {
					closed = true
					break
				}
				// Remove up to the fence's indentation, as CommonMark does.
				n := 0
				for n < indent && n < len(l) && l[n] == ' ' {
					n++
				}
				body = append(body, l[n:])
			}
			if !closed {
				return nil, fmt.Errorf("%s:%d: unclosed fence", path, f.line)
			}
			f.body = strings.Join(body, "\n") + "\n"
			m.items = append(m.items, item{fence: f})
			last, gapOK = i, true
			continue
		}
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, docTestOpen) {
			start := i
			text := strings.TrimPrefix(trimmed, docTestOpen)
			var rest []string
			for done := strings.Contains(text, "-->"); !done; done = strings.Contains(lines[i], "-->") {
				if i++; i >= len(lines) {
					return nil, fmt.Errorf("%s:%d: doc-test comment not closed with -->", path, start+1)
				}
				rest = append(rest, lines[i])
			}
			d, err := parseDirective(text, rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, start+1, err)
			}
			d.line = start + 1
			if pending != nil {
				return nil, fmt.Errorf("%s:%d: doc-test comment with no fenced block after it", path, pending.line)
			}
			if d.verb == "run" {
				m.items = append(m.items, item{run: d})
				gapOK = false
			} else {
				pending = d
			}
			continue
		}
		if strings.Contains(line, "doc-test:") {
			return nil, fmt.Errorf("%s:%d: a doc-test comment must be a line of its own starting with %q", path, i+1, docTestOpen)
		}
		if trimmed == "" {
			continue
		}
		if pending != nil {
			return nil, fmt.Errorf("%s:%d: doc-test comment not right before a fenced block (only blank lines may separate them)", path, pending.line)
		}
		gapOK = false
		m.prose = append(m.prose, line)
		if h := atxHeading.FindStringSubmatch(line); h != nil {
			m.headings = append(m.headings, heading{line: i + 1, text: h[1]})
		}
		if r := refDef.FindStringSubmatch(line); r != nil {
			m.links = append(m.links, link{line: i + 1, target: r[1]})
		}
		for _, l := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			m.links = append(m.links, link{line: i + 1, target: l[1]})
		}
	}
	if pending != nil {
		return nil, fmt.Errorf("%s:%d: doc-test comment with no fenced block after it", path, pending.line)
	}
	return m, nil
}

// parseDirective parses a doc-test comment: head is the text after
// "<!-- doc-test:" on its first line, rest the lines after it.
func parseDirective(head string, rest []string) (*directive, error) {
	d := &directive{}
	var body []string
	if strings.Contains(head, "-->") {
		head = head[:strings.Index(head, "-->")]
	} else {
		for j, l := range rest {
			if k := strings.Index(l, "-->"); k >= 0 {
				rest[j] = l[:k]
			}
		}
		body = rest
	}
	head = strings.TrimSpace(head)
	verb, _, _ := strings.Cut(head, " ")
	if verb != "run" && len(body) > 0 {
		// A long directive wrapped over several lines.
		head = strings.TrimSpace(head + " " + strings.Join(body, " "))
		body = nil
	}
	// The reason: the parenthesised text at the end.
	if !strings.HasSuffix(head, ")") {
		return nil, fmt.Errorf("doc-test %q: give the reason in parentheses at the end", head)
	}
	depth, open := 0, -1
	for k := len(head) - 1; k >= 0; k-- {
		switch head[k] {
		case ')':
			depth++
		case '(':
			depth--
		}
		if depth == 0 {
			open = k
			break
		}
	}
	if open < 0 || strings.TrimSpace(head[open+1:len(head)-1]) == "" {
		return nil, fmt.Errorf("doc-test %q: give the reason in parentheses at the end", head)
	}
	d.reason = strings.Join(strings.Fields(head[open+1:len(head)-1]), " ")
	parts := strings.Split(head[:open], ";")
	words := strings.Fields(parts[0])
	if len(words) == 0 {
		return nil, fmt.Errorf("doc-test comment without a verb")
	}
	d.verb = words[0]
	switch d.verb {
	case "skip", "daemon", "log", "run":
		if len(words) != 1 {
			return nil, fmt.Errorf("doc-test %s takes no argument, got %q", d.verb, words[1:])
		}
	case "write":
		if len(words) != 2 {
			return nil, fmt.Errorf("doc-test write takes one file, got %q", words[1:])
		}
		d.arg = words[1]
	default:
		return nil, fmt.Errorf("unknown doc-test verb %q (skip, daemon, write, log, run)", d.verb)
	}
	for _, p := range parts[1:] {
		text, ok := strings.CutPrefix(strings.TrimSpace(p), "unchecked:")
		if !ok || strings.TrimSpace(text) == "" || d.verb != "daemon" && d.verb != "log" {
			return nil, fmt.Errorf("doc-test %s: unknown option %q (daemon and log take \"; unchecked: TEXT\")", d.verb, strings.TrimSpace(p))
		}
		d.unchecked = append(d.unchecked, strings.TrimSpace(text))
	}
	if d.verb == "run" {
		d.body = strings.Join(body, "\n") + "\n"
		if strings.TrimSpace(d.body) == "" {
			return nil, fmt.Errorf("doc-test run without a script on the lines after it")
		}
	}
	return d, nil
}

// splitConsole splits a ```console block into the commands ("$ " lines and
// their continuations) and the output shown.
func splitConsole(body string) (script, sample string) {
	var cmds, outs []string
	cont := false
	for _, l := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(l, "$ "):
			cmds = append(cmds, strings.TrimPrefix(l, "$ "))
		case cont:
			cmds = append(cmds, l)
		default:
			outs = append(outs, l)
		}
		cont = strings.HasSuffix(l, "\\") && (cont || strings.HasPrefix(l, "$ "))
	}
	if len(cmds) == 0 { // no prompts: all of it is commands
		return body, ""
	}
	return strings.Join(cmds, "\n") + "\n", strings.Join(outs, "\n")
}

// slugs returns the anchors GitHub gives the headings: lower case, markup,
// punctuation and symbols dropped, spaces as hyphens, and -1, -2... for
// repeated ones.
func slugs(hs []heading) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, h := range hs {
		text := inlineLink.ReplaceAllStringFunc(h.text, func(s string) string {
			// [text](url) shows as text.
			return s[strings.Index(s, "[")+1 : strings.LastIndex(s, "](")]
		})
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		s := b.String()
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

func TestSplitConsole(t *testing.T) {
	for _, tc := range []struct{ name, body, script, sample string }{
		{"no prompts: all commands", "provisiond version\n", "provisiond version\n", ""},
		{"prompts and output", "$ provisiond validate examples/\nok: 7 profile(s)\n$ echo a \\\n  b\na b\n",
			"provisiond validate examples/\necho a \\\n  b\n", "ok: 7 profile(s)\na b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, sample := splitConsole(tc.body)
			if script != tc.script || sample != tc.sample {
				t.Errorf("splitConsole(%q) = %q, %q; want %q, %q", tc.body, script, sample, tc.script, tc.sample)
			}
		})
	}
}
