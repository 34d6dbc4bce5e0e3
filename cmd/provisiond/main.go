// Command provisiond is a bare-metal provisioning server: proxyDHCP, TFTP and HTTP
// iPXE boot, Git-kept machine profiles, Ignition/Talos configs and BMC control in
// one daemon. See DESIGN.md for the contract its subcommands keep.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version and commit are set at build time with -ldflags "-X main.version=...".
var (
	version = "dev"
	commit  = ""
)

// command is one entry of the command table. Dispatch, --help and the shell
// completion scripts are all made from it, so they cannot disagree.
type command struct {
	name     string
	summary  string // what it does, one line: the parent's list, and the help's first sentence
	args     string // its positional arguments in the usage line, e.g. "DIR"
	about    string // more on what it does, for its help (optional)
	examples []string
	verbs    []*command
	verbNoun string // what a verb is called in messages: "command", "verb", "action"
	// flags declares the command's flags on fs and returns the function that
	// runs it with its positional arguments. A command with verbs has flags
	// only if it does something without one (provisiond --version).
	flags  func(fs *flagSet, c *cli) func(args []string) error
	paths  bool // its positional arguments are files or directories (completion)
	daemon bool // its stderr is a log: it logs warnings itself
}

// verb returns the verb called name, or nil.
func (cmd *command) verb(name string) *command {
	for _, v := range cmd.verbs {
		if v.name == name {
			return v
		}
	}
	return nil
}

// flagSet returns the command's flags, declared, and what runs it.
func (cmd *command) flagSet(c *cli) (*flagSet, func([]string) error) {
	fs := newFlagSet()
	if cmd.flags == nil {
		return fs, nil
	}
	return fs, cmd.flags(fs, c)
}

// walk calls fn for cmd and every command below it, with its path.
func (cmd *command) walk(path []string, fn func(path []string, cmd *command)) {
	path = append(path[:len(path):len(path)], cmd.name)
	fn(path, cmd)
	for _, v := range cmd.verbs {
		v.walk(path, fn)
	}
}

// cli is what one run of the program talks to.
type cli struct {
	stdout, stderr io.Writer
	host           hostPaths         // where the daemon on this host keeps its settings
	unit           map[string]string // host.envFile's settings once read: unitEnv
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return (&cli{stdout: stdout, stderr: stderr, host: systemHost()}).run(args)
}

// run dispatches args down the command table and returns the exit status:
// 0 done, 1 failed, 2 a command-line mistake.
func (c *cli) run(args []string) int {
	root := commandTable()
	cmd, path := root, []string{root.name}
	for len(cmd.verbs) > 0 && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if args[0] == "help" {
			return c.helpCommand(cmd, path, args[1:])
		}
		next := cmd.verb(args[0])
		if next == nil {
			return c.exit(path, unknownVerb(cmd, args[0]))
		}
		cmd, path, args = next, append(path, next.name), args[1:]
	}
	if len(cmd.verbs) > 0 {
		switch {
		case len(args) == 0:
			// What to type next is what the help lists.
			c.help(c.stderr, path, cmd)
			return 2
		case isHelpArg(args[0]):
			c.help(c.stdout, path, cmd)
			return 0
		case cmd.flags == nil:
			return c.exit(path, usagef("the %s (%s) comes before flags", cmd.verbNoun, strings.Join(verbNames(cmd.verbs), ", ")))
		}
	}
	fs, runCmd := cmd.flagSet(c)
	pos, err := fs.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.help(c.stdout, path, cmd)
		return 0
	}
	if err == nil && !cmd.daemon {
		c.warnEnv(root)
	}
	if err == nil {
		err = runCmd(pos)
	}
	if cmd.daemon && errors.Is(err, errUsage) {
		// It stopped before it could log them, and a mistyped variable
		// may be why (PROVISIOND_PROFILE for PROVISIOND_PROFILES).
		c.warnEnv(root)
	}
	return c.exit(path, err)
}

// warnEnv warns of each PROVISIOND_ variable no command reads.
func (c *cli) warnEnv(root *command) {
	for _, w := range envWarnings(os.Environ(), knownEnv(root)) {
		fmt.Fprintln(c.stderr, "provisiond: warning: "+w)
	}
}

// exit reports err, if the command has not already, and returns the status.
func (c *cli) exit(path []string, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		p := strings.Join(path, " ")
		fmt.Fprintf(c.stderr, "%s: %v\nRun '%s --help' for usage.\n", p, err, p)
		return 2
	case errors.Is(err, errReported):
		return 1
	}
	// The command's name; a verb's errors name the verb themselves.
	fmt.Fprintf(c.stderr, "%s: %v\n", strings.Join(path[:min(len(path), 2)], " "), err)
	return 1
}

// errReported means the command already told the user what went wrong.
var errReported = errors.New("reported")

func unknownVerb(cmd *command, name string) error {
	msg := fmt.Sprintf("unknown %s %q", cmd.verbNoun, name)
	if best, ok := closest(name, verbNames(cmd.verbs)); ok {
		return usagef("%s; did you mean %s?", msg, best)
	}
	return usagef("%s; want %s", msg, strings.Join(verbNames(cmd.verbs), ", "))
}

// helpCommand is `provisiond help [COMMAND [VERB]]`, and `provisiond
// COMMAND help [VERB]`: the help of the command args name below cmd.
func (c *cli) helpCommand(cmd *command, path []string, args []string) int {
	for _, a := range args {
		next := cmd.verb(a)
		if next == nil {
			return c.exit(path, unknownVerb(cmd, a))
		}
		cmd, path = next, append(path, next.name)
	}
	c.help(c.stdout, path, cmd)
	return 0
}

// knownEnv lists the PROVISIOND_ variable of every flag of every command.
func knownEnv(root *command) []string {
	var names []string
	root.walk(nil, func(_ []string, cmd *command) {
		fs, _ := cmd.flagSet(&cli{stdout: io.Discard, stderr: io.Discard})
		for _, f := range fs.longFlags() {
			names = append(names, envName(f.Name))
		}
	})
	return names
}

// commandTable is every command, in the order the help lists them.
func commandTable() *command {
	return &command{
		name:    "provisiond",
		summary: "turn a VLAN of bare-metal machines into Git-described infrastructure",
		about: "provisiond answers PXE (proxyDHCP, TFTP, HTTP iPXE), matches each machine to a\n" +
			"profile kept in Git, serves its OS and its own config (Ignition, Talos or any\n" +
			"template), and drives its BMC. One daemon (serve); the other commands check\n" +
			"profiles, talk to a running daemon through its API, or fetch OS images.",
		examples: []string{
			"provisiond serve --profiles ./profiles --dhcp-interface eth0",
			"provisiond validate ./profiles",
			"provisiond machines list",
		},
		verbNoun: "command",
		verbs: []*command{
			serveCommand(),
			validateCommand(),
			explainCommand(),
			machinesCommand(),
			eventsCommand(),
			leasesCommand(),
			profilesCommand(),
			powerCommand(),
			assetsCommand(),
			storeCommand(),
			agentCommand(),
			completionCommand(),
			versionCommand(),
		},
		flags: func(fs *flagSet, c *cli) func([]string) error {
			v := fs.Bool("version", false, "print the version, as provisiond version does")
			return func(pos []string) error {
				if !*v {
					return usagef("want a command")
				}
				return printVersion(c.stdout)
			}
		},
	}
}
