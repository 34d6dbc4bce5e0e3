package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/provisiond/provisiond/internal/profiles"
)

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: provisiond validate DIR\n\nChecks every profile, machine, template and Butane config in DIR; prints\nfile:line: message for each problem and exits 1 if there are any.")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one profiles directory", errUsage)
	}
	dir := pos[0]
	set, err := profiles.Load(dir, profiles.LoadOptions{})
	var probs profiles.Problems
	if errors.As(err, &probs) {
		for _, p := range probs {
			p.File = filepath.Join(dir, p.File)
			fmt.Fprintln(stdout, p.String())
		}
		fmt.Fprintf(stderr, "%d problem(s) in %s\n", len(probs), dir)
		return errReported
	}
	if err != nil {
		return err
	}
	for _, w := range set.Warnings {
		w.File = filepath.Join(dir, w.File)
		fmt.Fprintln(stdout, "warning: "+w.String())
	}
	fmt.Fprintf(stdout, "ok: %d profile(s), %d machine(s), default: %s\n", len(set.Profiles), len(set.Machines), defaultName(set))
	return nil
}

func defaultName(set *profiles.Set) string {
	if set.Default == nil {
		return "none"
	}
	return set.Default.Profile
}
