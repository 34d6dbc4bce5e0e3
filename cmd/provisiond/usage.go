package main

// The help of every command, printed from the command table and the
// command's declared flags by the one function below.

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// helpWidth is the width help text is wrapped to.
const helpWidth = 80

// help prints cmd's help: what it does, how to call it, examples, its verbs
// or flags, and how flags map to the environment.
func (c *cli) help(w io.Writer, path []string, cmd *command) {
	p := strings.Join(path, " ")
	var b strings.Builder
	b.WriteString(strings.Join(wrap(sentence(cmd.summary), helpWidth), "\n") + "\n")
	if cmd.about != "" {
		b.WriteString("\n" + cmd.about + "\n")
	}

	b.WriteString("\nUsage:\n")
	switch {
	case len(cmd.verbs) > 0:
		fmt.Fprintf(&b, "  %s <%s> [flags]\n", p, cmd.verbNoun)
	case cmd.args != "":
		fmt.Fprintf(&b, "  %s %s [flags]\n", p, cmd.args)
	default:
		fmt.Fprintf(&b, "  %s [flags]\n", p)
	}

	if len(cmd.verbs) > 0 {
		fmt.Fprintf(&b, "\n%ss:\n", capitalize(cmd.verbNoun))
		width := 0
		for _, v := range cmd.verbs {
			width = max(width, len(v.name))
		}
		for _, v := range cmd.verbs {
			writeColumns(&b, "  "+v.name, width+2, v.summary)
		}
	}

	if len(cmd.examples) > 0 {
		b.WriteString("\nExamples:\n")
		for _, e := range cmd.examples {
			b.WriteString("  " + e + "\n")
		}
	}

	fs, _ := cmd.flagSet(c)
	flags := fs.longFlags()
	b.WriteString("\nFlags:\n")
	var lefts []string
	width := 0
	for _, f := range flags {
		l := flagColumn(fs, f)
		lefts = append(lefts, l)
		width = max(width, len(l))
	}
	helpLeft := "  -h, --help"
	width = min(max(width, len(helpLeft)), 36)
	for i, f := range flags {
		_, usage := flag.UnquoteUsage(f)
		if d := defaultText(f); d != "" {
			usage += " (default " + d + ")"
		}
		writeColumns(&b, lefts[i], width, usage)
	}
	writeColumns(&b, helpLeft, width, "show this help")

	if len(cmd.verbs) > 0 {
		fmt.Fprintf(&b, "\nRun '%s <%s> --help' for more on a %s.\n", p, cmd.verbNoun, cmd.verbNoun)
	}
	if len(flags) > 0 && len(cmd.verbs) == 0 {
		ex := flags[0].Name
		note := fmt.Sprintf("Every flag can also be set as PROVISIOND_<FLAG> (--%s as %s); a flag on the command line wins.", ex, envName(ex))
		b.WriteString("\n" + strings.Join(wrap(note, helpWidth), "\n") + "\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// flagColumn is a flag as the help's left column shows it:
// "  -o, --output FORMAT" or "      --server URL".
func flagColumn(fs *flagSet, f *flag.Flag) string {
	l := "      "
	if s := fs.aliasOf(f.Name); s != "" {
		l = "  -" + s + ", "
	}
	l += flagName(f.Name)
	if name, _ := flag.UnquoteUsage(f); name != "" {
		l += " " + name
	}
	return l
}

// defaultText is a flag's default worth showing, or "". Durations read as
// an operator writes them: 2h, not 2h0m0s.
func defaultText(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return ""
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			// Only a zero unit after a non-zero one goes: 10m0s is 10m, not 1.
			s := d.String()
			if strings.HasSuffix(s, "m0s") {
				s = strings.TrimSuffix(s, "0s")
			}
			if strings.HasSuffix(s, "h0m") {
				s = strings.TrimSuffix(s, "0m")
			}
			return s
		}
	}
	return f.DefValue
}

// writeColumns writes left padded to width, then text wrapped to the help's
// width under itself; a left column wider than width puts text on the next
// line.
func writeColumns(b *strings.Builder, left string, width int, text string) {
	indent := width + 3
	b.WriteString(left)
	col := len(left)
	if col > width {
		b.WriteString("\n")
		col = 0
	}
	lines := wrap(text, max(helpWidth-indent, 30))
	for i, l := range lines {
		if i > 0 {
			col = 0
		}
		b.WriteString(strings.Repeat(" ", indent-col) + l + "\n")
	}
	if len(lines) == 0 {
		b.WriteString("\n")
	}
}

// wrap breaks s into lines of at most width runes, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(s) {
		if cur.Len() > 0 && utf8.RuneCountInString(cur.String())+1+utf8.RuneCountInString(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// sentence makes a summary the help's opening sentence.
func sentence(s string) string { return capitalize(s) + "." }

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
