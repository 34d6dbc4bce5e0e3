package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/server"
)

// labelFlags collects repeated --label k=v flags.
type labelFlags map[string]string

func (l labelFlags) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labelFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", s)
	}
	l[k] = v
	return nil
}

func runExplain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("explain", stderr)
	mac := fs.String("mac", "", "the machine's MAC address (any spelling)")
	uuid := fs.String("uuid", "", "the machine's SMBIOS UUID")
	arch := fs.String("arch", "", "iPXE build architecture, e.g. x86_64 or arm64 (also matched as label arch)")
	base := fs.String("advertise-url", "http://provisiond.example:8080", "base URL used in the rendered script")
	labels := labelFlags{}
	fs.Var(labels, "label", "a label key=value the machine presents (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: provisiond explain DIR --mac M [--uuid U] [--label k=v]...")
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one profiles directory", errUsage)
	}
	// The same parsing the /ipxe endpoint does, so explain answers exactly as it.
	q := url.Values{}
	for k, v := range labels {
		q.Set(k, v)
	}
	q.Set("mac", *mac)
	q.Set("uuid", *uuid)
	q.Set("arch", *arch)
	req, err := server.ParseRequest(q)
	if err != nil {
		return fmt.Errorf("%w: %v (give --mac and/or --uuid)", errUsage, err)
	}

	core := boot.New(boot.Config{ProfilesDir: pos[0], AdvertiseURL: *base})
	if err := core.Reload(); err != nil {
		var probs profiles.Problems
		if errors.As(err, &probs) {
			return fmt.Errorf("%s does not validate (run provisiond validate):\n%w", pos[0], err)
		}
		return err
	}
	res, script, err := core.Explain(req)
	if err != nil {
		return err
	}
	if res.Machine != nil {
		fmt.Fprintf(stdout, "machine:  %s (%s)\n", res.Machine.Name, res.Machine.Pos)
	} else {
		fmt.Fprintln(stdout, "machine:  none")
	}
	fmt.Fprintf(stdout, "profile:  %s (%s)\n", res.Profile.Name, res.Profile.Pos)
	fmt.Fprintf(stdout, "why:      %s\n", res.Reason)
	if kind, src := res.Profile.Config.Source(); kind != profiles.ConfigNone {
		fmt.Fprintf(stdout, "config:   %s from %s\n", kind, src)
	} else {
		fmt.Fprintln(stdout, "config:   none")
	}
	fmt.Fprintf(stdout, "boot-once: %v\n\n%s", res.Profile.Once, script)
	return nil
}
