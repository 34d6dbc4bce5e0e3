package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/profiles"
)

func validateCommand() *command {
	return &command{
		name:    "validate",
		args:    "DIR",
		summary: "check a profiles directory, listing every problem as file:line: message",
		about: "Loads DIR as serve would: every profile, machine, template and Butane or\n" +
			"Ignition config, rendered for every Machine that uses it. Exit 1 if there is\n" +
			"any problem, in every output format: run it in the profiles' CI. With\n" +
			"--dhcp-mode it also checks DIR as serve --dhcp-interface with that mode\n" +
			"would: a Network for authoritative, no loader: shim behind the proxy. With\n" +
			"--assets it also checks that every kernel, initrd and UKI the profiles name\n" +
			"under /assets/ is a file in that directory, as serve --assets would serve it.",
		examples: []string{
			"provisiond validate ./profiles",
			"provisiond validate ./profiles --dhcp-mode authoritative",
			"provisiond validate ./profiles --assets /var/lib/provisiond/assets",
			"provisiond validate ./profiles -o json | jq -r '.problems[] | \"\\(.file):\\(.line): \\(.message)\"'",
		},
		paths: true,
		flags: func(fs *flagSet, c *cli) func([]string) error {
			out := addOutputFlag(fs)
			var mode dhcp.Mode
			fs.Func("dhcp-mode", "also check DIR for serve --dhcp-interface in `MODE`: proxy or authoritative", func(v string) error {
				mode = dhcp.Mode(v)
				return mode.Check()
			})
			var assets string
			fs.StringVar(&assets, "assets", "", "also check that the profiles' /assets/ files are in `DIR`, the assets directory serve --assets serves")
			return func(pos []string) error { return runValidate(c, *out, mode, assets, pos) }
		},
	}
}

// validation is validate's result, as -o json prints it.
type validation struct {
	OK       bool          `json:"ok"`
	Dir      string        `json:"dir"`
	Problems []api.Problem `json:"problems"`
	Warnings []api.Problem `json:"warnings"`
	Profiles int           `json:"profiles"`
	Machines int           `json:"machines"`
	Default  string        `json:"default,omitempty"`
}

func runValidate(c *cli, out output, mode dhcp.Mode, assets string, pos []string) error {
	if len(pos) != 1 {
		return usagef("want exactly one profiles directory, got %d arguments", len(pos))
	}
	dir := pos[0]
	if err := checkDir("profiles directory", dir); err != nil {
		return err
	}
	set, err := profiles.Load(dir, profiles.LoadOptions{})
	var probs profiles.Problems
	if err != nil && !errors.As(err, &probs) {
		return err
	}
	if set != nil && mode != "" {
		// serve's check, short of the deployment's own files (--shim-dir).
		var warns profiles.Problems
		probs, warns = servingCheck(mode, true, true)(set)
		set.Warnings = append(set.Warnings, warns...)
	}
	if set != nil && assets != "" {
		missing, err := missingAssets(set, assets)
		if err != nil {
			return err
		}
		probs = append(probs, missing...)
	}
	// Paths as the operator gave them, so that an editor opens them.
	problem := func(p profiles.Problem) api.Problem {
		return api.Problem{File: filepath.Join(dir, p.File), Line: p.Line, Message: p.Msg}
	}
	v := validation{OK: len(probs) == 0, Dir: dir, Problems: []api.Problem{}, Warnings: []api.Problem{}}
	for _, p := range probs {
		v.Problems = append(v.Problems, problem(p))
	}
	if set != nil {
		for _, w := range set.Warnings {
			v.Warnings = append(v.Warnings, problem(w))
		}
		v.Profiles, v.Machines, v.Default = len(set.Profiles), len(set.Machines), defaultName(set)
	}
	err = out.print(c.stdout, v, func(w io.Writer) error {
		for _, p := range v.Problems {
			fmt.Fprintln(w, p.String())
		}
		for _, p := range v.Warnings {
			fmt.Fprintln(w, "warning: "+p.String())
		}
		if v.OK {
			fmt.Fprintf(w, "ok: %d profile(s), %d machine(s), default: %s\n", v.Profiles, v.Machines, cmp.Or(v.Default, "none"))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !v.OK {
		fmt.Fprintf(c.stderr, "%d problem(s) in %s\n", len(v.Problems), dir)
		return errReported
	}
	return nil
}

// missingAssets is what set names under /assets/ that dir lacks, read
// through os.Root as serve reads it: a symlink out of dir is missing too.
func missingAssets(set *profiles.Set, dir string) (profiles.Problems, error) {
	if err := checkDir("--assets", dir); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open --assets %s: %w", dir, err)
	}
	defer root.Close()
	return boot.AssetProblems(set, root.FS(), dir), nil
}

func defaultName(set *profiles.Set) string {
	if set.Default == nil {
		return ""
	}
	return set.Default.Profile
}
