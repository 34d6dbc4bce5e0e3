package profiles

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Problem is one validation finding, located in the profiles directory.
type Problem struct {
	File string // relative to the profiles directory; "" when no file is at fault
	Line int    // 1-based; 0 when the problem concerns the whole file
	Msg  string
}

func (p Problem) String() string {
	if p.File == "" {
		return p.Msg // about the set as a whole, e.g. from CheckDHCP
	}
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Problems is the error Load returns when a directory does not validate: every
// problem found, not just the first, so one `provisiond validate` run shows them all.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
	return ps
}

// problems collects findings during a load.
type problems struct {
	list Problems
	seen map[Problem]bool // those added by addOnce
}

func (ps *problems) add(file string, line int, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// addOnce adds p unless it was added by addOnce before: a problem in a file
// that every machine using it runs into.
func (ps *problems) addOnce(p Problem) {
	if ps.seen[p] {
		return
	}
	if ps.seen == nil {
		ps.seen = map[Problem]bool{}
	}
	ps.seen[p] = true
	ps.list = append(ps.list, p)
}

// Lines is a load error as lines for people: "file:line: message" for each
// problem, or the error's own text when it is not Problems.
func Lines(err error) []string {
	var probs Problems
	if !errors.As(err, &probs) {
		return []string{err.Error()}
	}
	out := make([]string, len(probs))
	for i, p := range probs {
		out[i] = p.String()
	}
	return out
}
