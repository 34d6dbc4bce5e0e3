package main

// Flags: every command declares its flags on a flagSet, which parses them
// itself rather than through flag.FlagSet.Parse, so that each mistake gets one
// line in the operator's words (--flag, not -flag; "want a duration such as
// 30s", not "parse error") and positional arguments may sit between flags
// (`explain DIR --mac M`). flag.FlagSet still holds the flags and their
// values, so flag.Value types work unchanged.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
)

// envPrefix starts the environment variable of every flag: --http-addr is
// PROVISIOND_HTTP_ADDR.
const envPrefix = "PROVISIOND_"

// flagSet is a command's flags.
type flagSet struct {
	*flag.FlagSet
	short map[string]string // one-letter alias -> its long name
}

func newFlagSet() *flagSet {
	fs := flag.NewFlagSet("provisiond", flag.ContinueOnError)
	// flag's own messages and usage are never printed: parse reports.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, short: map[string]string{}}
}

// alias makes -short another name of the flag long. An alias has no
// environment variable of its own.
func (fs *flagSet) alias(short, long string) {
	fs.Var(fs.Lookup(long).Value, short, "")
	fs.short[short] = long
}

// isAlias reports whether name is a one-letter alias.
func (fs *flagSet) isAlias(name string) bool { _, ok := fs.short[name]; return ok }

// aliasOf returns the one-letter alias of the flag long, or "".
func (fs *flagSet) aliasOf(long string) string {
	for s, l := range fs.short {
		if l == long {
			return s
		}
	}
	return ""
}

// longFlags returns the flags that are not aliases, sorted by name.
func (fs *flagSet) longFlags() []*flag.Flag {
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !fs.isAlias(f.Name) {
			out = append(out, f)
		}
	})
	return out
}

// flagName is how a flag is written on the command line: -l, --label.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// envName is the environment variable of the flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// splitFlag reads an argument that starts with a dash: -name, --name or
// --name=value.
func splitFlag(a string) (name, value string, hasValue bool) {
	return strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
}

// isFlag reports whether a names one of the flags (or asks for help).
func (fs *flagSet) isFlag(a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	name, _, _ := splitFlag(a)
	return isHelpArg(a) || name != "" && fs.Lookup(name) != nil
}

// isBoolFlag reports whether f takes no value (--no-power, not --no-power true).
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isHelpArg(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// parse sets the flags in args and returns the positional arguments, in
// order; "--" ends the flags. Flags not on the command line are then taken
// from PROVISIOND_<FLAG>. -h or --help anywhere is flag.ErrHelp.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var pos []string
	given := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		if isHelpArg(a) {
			return nil, flag.ErrHelp
		}
		name, value, hasValue := splitFlag(a)
		f := fs.Lookup(name)
		if f == nil || name == "" {
			return nil, fs.unknown(name)
		}
		if isBoolFlag(f) {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			// "--since --server URL" forgot the value: --server is not one.
			if i+1 == len(args) || fs.isFlag(args[i+1]) {
				return nil, usagef("%s needs a value", flagName(name))
			}
			i++
			value = args[i]
		}
		if err := fs.set(f, value); err != nil {
			return nil, usagef("%s %q: %v", flagName(name), value, err)
		}
		if l, ok := fs.short[name]; ok {
			name = l
		}
		given[name] = true
	}
	for _, f := range fs.longFlags() {
		env := envName(f.Name)
		v, ok := os.LookupEnv(env)
		if !ok || given[f.Name] {
			continue
		}
		if err := fs.set(f, v); err != nil {
			return nil, usagef("%s=%s: %v", env, v, err)
		}
	}
	return pos, nil
}

// set sets f to v, saying what a bad value should look like: flag's own
// errors for its basic types are "parse error" and the like.
func (fs *flagSet) set(f *flag.Flag, v string) error {
	err := fs.Set(f.Name, v)
	if err == nil {
		return nil
	}
	g, _ := f.Value.(flag.Getter)
	if g == nil {
		return err
	}
	switch g.Get().(type) {
	case time.Duration:
		return errors.New("want a duration with a unit, such as 30s, 5m or 1h")
	case bool:
		return errors.New("want true or false")
	case int, int64, uint, uint64:
		return errors.New("want a whole number")
	case float64:
		return errors.New("want a number")
	}
	return err
}

// unknown is the error for a flag the command does not have, naming the
// closest one it does.
func (fs *flagSet) unknown(name string) error {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if best, ok := closest(name, names); ok {
		return usagef("unknown flag %s; did you mean %s?", flagName(name), flagName(best))
	}
	return usagef("unknown flag %s", flagName(name))
}

// closest returns the candidate nearest to s by edit distance, if it is near
// enough to be a likely typo: at most a third of the longer word away.
func closest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := profiles.EditDistance(strings.ToLower(s), strings.ToLower(c)); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best, bestD >= 0 && bestD <= max(1, max(len(s), len(best))/3)
}

// otherEnvNames are PROVISIOND_ variables that are no flag but belong to the
// project: the test suite's switches and inputs (.ci/run exports all but
// the perfdhcp rate).
var otherEnvNames = []string{"PROVISIOND_REQUIRE_LAB", "PROVISIOND_PERFDHCP_RATE", "PROVISIOND_CLUSTER_ROUNDS", "PROVISIOND_ARM64_ROOT"}

// envWarnings returns a warning for each PROVISIOND_ variable in environ
// that no command reads, naming the closest one that some command does: a
// typo in provisiond.env would otherwise leave a setting at its default
// without a word.
func envWarnings(environ []string, known []string) []string {
	// Compared without the prefix, which every name shares.
	bare := make([]string, len(known))
	for i, k := range known {
		bare[i] = strings.TrimPrefix(k, envPrefix)
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || slices.Contains(known, name) || slices.Contains(otherEnvNames, name) {
			continue
		}
		w := name + " is not a setting of any provisiond command; ignored"
		if best, ok := closest(strings.TrimPrefix(name, envPrefix), bare); ok {
			w = fmt.Sprintf("%s is not a setting of any provisiond command (did you mean %s%s, i.e. --%s?); ignored",
				name, envPrefix, best, strings.ToLower(strings.ReplaceAll(best, "_", "-")))
		}
		out = append(out, w)
	}
	slices.Sort(out)
	return out
}

// errUsage marks a command-line mistake: exit 2, and a pointer to --help.
var errUsage = errors.New("usage")

// usageError is a command-line mistake in the operator's words.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }
