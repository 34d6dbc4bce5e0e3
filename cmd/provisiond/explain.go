package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/server"
)

// labelFlags collects repeated --label k=v flags.
type labelFlags map[string]string

// String is the labels as sorted k=v pairs: "" when there are none, which
// the help takes as no default.
func (l labelFlags) String() string {
	kv := make([]string, 0, len(l))
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (l labelFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", s)
	}
	l[k] = v
	return nil
}

func explainCommand() *command {
	return &command{
		name:    "explain",
		args:    "DIR",
		summary: "show which Machine and Profile a machine matches in a profiles directory, and its iPXE script",
		about: "Answers as the daemon's /ipxe would for a machine with this MAC, UUID, arch and\n" +
			"labels, without a daemon: DIR is loaded and validated first.",
		examples: []string{
			"provisiond explain ./profiles --mac 52:54:00:00:00:01",
			"provisiond explain ./profiles --uuid 4c4c4544-0042-3510-8057-b7c04f4e3732 --label rack=r1 -o json",
		},
		paths: true,
		flags: func(fs *flagSet, c *cli) func([]string) error {
			var q explainQuery
			q.labels = labelFlags{}
			fs.StringVar(&q.mac, "mac", "", "the machine's `MAC` address (any spelling)")
			fs.StringVar(&q.uuid, "uuid", "", "the machine's SMBIOS `UUID`")
			fs.StringVar(&q.arch, "arch", "", "iPXE build architecture `ARCH`, e.g. x86_64 or arm64 (also matched as label arch)")
			fs.StringVar(&q.base, "advertise-url", "http://provisiond.example:8080", "base `URL` used in the rendered script")
			fs.Var(q.labels, "label", "a label `key=value` the machine presents (repeatable)")
			fs.alias("l", "label")
			out := addOutputFlag(fs)
			return func(pos []string) error { return runExplain(c, *out, q, pos) }
		},
	}
}

type explainQuery struct {
	mac, uuid, arch, base string
	labels                labelFlags
}

// request checks the flags one by one, so that a mistake names its flag,
// then reads them as the /ipxe endpoint reads its query.
func (q explainQuery) request() (boot.Request, error) {
	if q.mac == "" && q.uuid == "" {
		return boot.Request{}, usagef("give --mac and/or --uuid: the machine's identity")
	}
	if _, err := ident.MAC(q.mac); q.mac != "" && err != nil {
		return boot.Request{}, usagef("--mac %q is not a MAC address; want six hex pairs such as 52:54:00:00:00:01", q.mac)
	}
	uuid, err := ident.UUID(q.uuid)
	if q.uuid != "" && err != nil {
		return boot.Request{}, usagef("--uuid %q is not an SMBIOS UUID such as 4c4c4544-0042-3510-8057-b7c04f4e3732", q.uuid)
	}
	v := url.Values{}
	for k, val := range q.labels {
		v.Set(k, val)
	}
	v.Set("mac", q.mac)
	v.Set("uuid", q.uuid)
	v.Set("arch", q.arch)
	req, err := server.ParseRequest(v)
	switch {
	case errors.Is(err, boot.ErrNoIdentity):
		return req, usagef("--uuid %s is a placeholder many boards share, which identifies no machine; give --mac", uuid)
	case err != nil:
		return req, usagef("--arch %q: want iPXE's ${buildarch}, such as x86_64 or arm64", q.arch)
	}
	return req, nil
}

// explanation is explain's result, as -o json prints it.
type explanation struct {
	Machine *explainRef    `json:"machine"` // null: no Machine matches; the Default applies
	Profile explainRef     `json:"profile"`
	Why     string         `json:"why"`
	Config  *explainConfig `json:"config"` // null: the profile has none
	Once    bool           `json:"once"`
	Script  string         `json:"script"`
}

type explainConfig struct {
	Kind string `json:"kind"` // butane, ignition, talos or template
	File string `json:"file"` // relative to the profiles directory
}

type explainRef struct {
	Name string `json:"name"`
	At   string `json:"at"`
}

func runExplain(c *cli, out output, q explainQuery, pos []string) error {
	if len(pos) != 1 {
		return usagef("want exactly one profiles directory, got %d arguments", len(pos))
	}
	req, err := q.request()
	if err != nil {
		return err
	}
	if err := checkDir("profiles directory", pos[0]); err != nil {
		return err
	}
	core := boot.New(boot.Config{ProfilesDir: pos[0], AdvertiseURL: q.base})
	if err := core.Reload(); err != nil {
		var probs profiles.Problems
		if errors.As(err, &probs) {
			return fmt.Errorf("%s does not validate (run provisiond validate %s):\n%w", pos[0], pos[0], err)
		}
		return err
	}
	res, script, err := core.Explain(req)
	if err != nil {
		return err
	}
	e := explanation{
		Profile: explainRef{res.Profile.Name, res.Profile.Pos.String()},
		Why:     res.Reason, Once: res.Profile.Once, Script: script,
	}
	if res.Machine != nil {
		e.Machine = &explainRef{res.Machine.Name, res.Machine.Pos.String()}
	}
	if kind, src := res.Profile.Config.Source(); kind != profiles.ConfigNone {
		e.Config = &explainConfig{string(kind), src}
	}
	return out.print(c.stdout, e, func(w io.Writer) error {
		if e.Machine != nil {
			fmt.Fprintf(w, "machine:  %s (%s)\n", e.Machine.Name, e.Machine.At)
		} else {
			fmt.Fprintln(w, "machine:  none")
		}
		fmt.Fprintf(w, "profile:  %s (%s)\n", e.Profile.Name, e.Profile.At)
		fmt.Fprintf(w, "why:      %s\n", e.Why)
		if e.Config != nil {
			fmt.Fprintf(w, "config:   %s from %s\n", e.Config.Kind, e.Config.File)
		} else {
			fmt.Fprintln(w, "config:   none")
		}
		_, err := fmt.Fprintf(w, "boot-once: %v\n\n%s", e.Once, e.Script)
		return err
	})
}
