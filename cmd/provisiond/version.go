package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func versionCommand() *command {
	return &command{
		name:     "version",
		summary:  "print the version, commit and Go version of this binary",
		examples: []string{"provisiond version", "provisiond --version"},
		flags: func(fs *flagSet, c *cli) func([]string) error {
			return func(pos []string) error {
				if len(pos) != 0 {
					return usagef("version takes no arguments, got %q", pos)
				}
				return printVersion(c.stdout)
			}
		},
	}
}

func printVersion(w io.Writer) error {
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	_, err := fmt.Fprintf(w, "provisiond %s (commit %s, %s, %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
