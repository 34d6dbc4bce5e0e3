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
)

// version and commit are set at build time with -ldflags "-X main.version=...".
var (
	version = "dev"
	commit  = ""
)

// errUsage marks a command-line mistake: exit 2 instead of 1.
var errUsage = errors.New("usage")

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the daemon: HTTP boot path, proxyDHCP and TFTP", runServe},
		{"validate", "check a profiles directory; exit 1 listing every problem", runValidate},
		{"explain", "show which Machine and Profile a machine matches, and its iPXE script", runExplain},
		{"machines", "list, show, reprovision or wipe machines, or set their BMC, through the daemon's API", runMachines},
		{"events", "show the event log through the daemon's API", runEvents},
		{"profiles", "sync the profiles with their Git repository now, through the daemon's API", runProfiles},
		{"power", "power on, off, cycle or query machines through their BMCs", runPower},
		{"assets", "fetch and verify OS images (Flatcar, Fedora CoreOS, Talos) for --assets", runAssets},
		{"version", "print version information", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "provisiond %s: %v\n", c.name, err)
			return 2
		case errors.Is(err, errReported):
			return 1
		default:
			fmt.Fprintf(stderr, "provisiond %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "provisiond: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// errReported means the command already told the user what went wrong.
var errReported = errors.New("reported")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: provisiond <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as PROVISIOND_<FLAG> (e.g. PROVISIOND_HTTP_ADDR=:8080).")
}
