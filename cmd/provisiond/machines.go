package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// `provisiond machines list|show|yaml|reprovision|wipe|bmc`: the inventory and
// lifecycle through the daemon's API. Their flags are in clientFlags
// (client.go).

const idHelp = "ID is a MAC (any spelling), an SMBIOS UUID or a Machine name."

func machinesCommand() *command {
	return &command{
		name:    "machines",
		summary: "list, show, adopt, reprovision or wipe machines, or set their BMC, through the daemon's API",
		about:   idHelp,
		examples: []string{
			"provisiond machines list -l rack=r1",
			"provisiond machines reprovision node1 --reason \"new disk\"",
		},
		verbNoun: "verb",
		verbs: []*command{
			{
				name:    "list",
				summary: "list the machines the daemon knows, filtered by state, labels and hardware",
				examples: []string{
					"provisiond machines list --state provisioning",
					"provisiond machines list -l rack=r1 -o json",
					"provisiond machines list --vendor dell --serial CZ1234ABCD",
				},
				flags: func(fs *flagSet, c *cli) func([]string) error {
					cf := addClientFlags(fs, c)
					state := fs.String("state", "", "only machines in this `STATE` (declared: in Git, never seen): "+joinStates(store.ListedStates()))
					labels := labelFlags{}
					fs.Var(labels, "label", "only machines with label `key=value` (repeatable; all must match)")
					fs.alias("l", "label")
					var hw hardwareFilter
					fs.StringVar(&hw.serial, "serial", "", "only machines whose inspection reported this SMBIOS system `SERIAL` (whole, any case)")
					fs.StringVar(&hw.vendor, "vendor", "", "only machines whose inspection reported a system vendor containing `TEXT` (any case)")
					return func(pos []string) error { return machinesList(c, cf, *state, labels, hw, pos) }
				},
			},
			{
				name:     "show",
				args:     "ID",
				summary:  "show one machine and its provisioning session",
				about:    idHelp,
				examples: []string{"provisiond machines show node1", "provisiond machines show 52:54:00:00:00:01 -o json"},
				flags: func(fs *flagSet, c *cli) func([]string) error {
					cf := addClientFlags(fs, c)
					return func(pos []string) error { return machinesShow(c, cf, pos) }
				},
			},
			{
				name:    "yaml",
				args:    "ID",
				summary: "print a Machine document for a machine, ready to commit to the profiles",
				about: "The GitOps way to adopt a discovered machine: the document matches it by MAC,\n" +
					"and by its SMBIOS serial when its inspection reported one. Its name is the\n" +
					"Machine's that matched it, else --name, else node-<mac without colons>.\n\n" + idHelp,
				examples: []string{"provisiond machines yaml 52:54:00:12:34:56 --name rack1-node7 >> machines.yaml"},
				flags: func(fs *flagSet, c *cli) func([]string) error {
					cf := addClientFlags(fs, c)
					name := fs.String("name", "", "name the Machine `NAME` instead")
					return func(pos []string) error { return machinesYAML(c, cf, *name, pos) }
				},
			},
			sendBackCommand("reprovision", "send a machine back to provisioning and PXE-boot it through its BMC",
				"Its next network boot installs it again: the state goes to provisioning, and,\n"+
					"unless --no-power, its BMC sets the next boot to PXE (once) and power-cycles it.\n"+
					"Without a BMC, the machine does the rest on its next network boot. Exit 1 if\n"+
					"the BMC failed (the state change stands).",
				"provisiond machines reprovision node1 --reason \"new disk\""),
			sendBackCommand("wipe", "boot a machine into the --wipe-profile through its BMC",
				"The state goes to wiping: its next network boot gets the daemon's --wipe-profile,\n"+
					"whose phone-home makes it wiped. Unless --no-power, its BMC PXE-boots it now.\n"+
					"Exit 1 if the BMC failed (the state change stands).",
				"provisiond machines wipe node7 --reason decommission"),
			{
				name:    "bmc",
				args:    "ID",
				summary: "show or set a machine's BMC (credentials are never shown)",
				about: "Without flags, shows the machine's BMC and where its credentials come from.\n" +
					"With --address, sets a BMC through the API: its credentials are sealed in the\n" +
					"daemon's database and win over the Machine's bmc: in Git; --delete removes\n" +
					"them, so that Git's applies again.",
				examples: []string{
					"provisiond machines bmc node1",
					"provisiond machines bmc node1 --address ipmi://10.0.0.13 --username admin --password-file pw",
					"provisiond machines bmc node1 --delete",
				},
				flags: machinesBMCFlags,
			},
		},
	}
}

// oneID returns the single positional ID.
func oneID(pos []string) (string, error) {
	if len(pos) != 1 || pos[0] == "" {
		return "", usagef("want exactly one machine ID (a MAC, UUID or Machine name), got %d", len(pos))
	}
	return pos[0], nil
}

// idClient checks a verb's single ID and returns it with a client.
func idClient(cf *clientFlags, pos []string) (string, *apiClient, error) {
	id, err := oneID(pos)
	if err != nil {
		return "", nil, err
	}
	c, err := cf.client()
	return id, c, err
}

// hardwareFilter is machines list's hardware flags, as the API's query.
type hardwareFilter struct{ serial, vendor string }

func machinesList(c *cli, cf *clientFlags, state string, labels labelFlags, hw hardwareFilter, pos []string) error {
	if len(pos) != 0 {
		return usagef("list takes no arguments, got %q", pos)
	}
	if state != "" && !store.State(state).Listed() {
		return usagef("--state %q: want one of %s", state, joinStates(store.ListedStates()))
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("label", k+"="+labels[k])
	}
	if hw.serial != "" {
		q.Set("serial", hw.serial)
	}
	if hw.vendor != "" {
		q.Set("vendor", hw.vendor)
	}
	var list struct {
		Machines []api.Machine `json:"machines"`
	}
	b, err := cl.get("/machines", q, &list)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return printListing(c, cf, b, len(list.Machines), "machines", func(w io.Writer) error { return machineTable(w, list.Machines, time.Now()) })
}

func machinesShow(c *cli, cf *clientFlags, pos []string) error {
	id, cl, err := idClient(cf, pos)
	if err != nil {
		return err
	}
	var m api.Machine
	b, err := cl.get("/machines/"+url.PathEscape(id), nil, &m)
	if err != nil {
		return fmt.Errorf("show %s: %w", printable(id), err)
	}
	return cf.out.print(c.stdout, json.RawMessage(b), func(w io.Writer) error { return machineDetail(w, m, time.Now()) })
}

// sendBackCommand is `machines reprovision|wipe ID`: the lifecycle change
// and, unless --no-power, a network boot through the machine's BMC.
func sendBackCommand(verb, summary, about, example string) *command {
	return &command{
		name: verb, args: "ID", summary: summary, about: about + "\n\n" + idHelp,
		examples: []string{example, "provisiond machines " + verb + " node1 --no-power"},
		flags: func(fs *flagSet, c *cli) func([]string) error {
			cf := addClientFlags(fs, c)
			reason := fs.String("reason", "", "why, as `TEXT` recorded in the event log")
			noPower := fs.Bool("no-power", false, "only change the state; do not PXE-boot the machine through its BMC")
			return func(pos []string) error { return sendBack(c, cf, verb, *reason, *noPower, pos) }
		},
	}
}

func sendBack(c *cli, cf *clientFlags, verb, reason string, noPower bool, pos []string) error {
	id, cl, err := idClient(cf, pos)
	if err != nil {
		return err
	}
	body := struct {
		Reason string `json:"reason,omitempty"`
		Power  bool   `json:"power"`
	}{reason, !noPower}
	b, err := cl.do(http.MethodPost, "/machines/"+url.PathEscape(id)+"/"+verb, nil, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, printable(id), err)
	}
	var m api.SendBackResult
	if err := decodeAnswer(b, &m); err != nil {
		return fmt.Errorf("%s %s: %w", verb, printable(id), err)
	}
	err = cf.out.print(c.stdout, json.RawMessage(b), func(w io.Writer) error {
		fmt.Fprintf(w, "%s: %s\n", machineName(m.Machine), printable(string(m.State)))
		switch p := m.BMCResult; {
		case p == nil && !noPower:
			fmt.Fprintln(w, "no BMC: the machine does the rest on its next network boot")
		case p != nil && p.OK && p.DoneBy != "":
			fmt.Fprintf(w, "BMC %s: %s\n", printable(p.BMC), printable(p.Note))
		case p != nil && p.OK:
			fmt.Fprintf(w, "BMC %s: next boot %s, power %s (was %s)\n", printable(p.BMC), tableCell(p.Boot), tableCell(p.Done), tableCell(p.Before))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The same outcome fails the same way whatever the output format.
	if p := m.BMCResult; p != nil && !p.OK {
		fmt.Fprintf(c.stderr, "provisiond machines %s: the state changed, but the BMC failed: %s\n", verb, printable(cliWords(p.Error)))
		return errReported
	}
	return nil
}

func machinesBMCFlags(fs *flagSet, c *cli) func([]string) error {
	cf := addClientFlags(fs, c)
	address := fs.String("address", "", "set the BMC at `URL`: ipmi://host[:port][?cipher=N] or redfish://host[:port]")
	user := fs.String("username", "", "with --address: the BMC `USER`")
	passwordFile := fs.String("password-file", "", "with --address: `FILE` holding the BMC password (never a flag: flags show in ps)")
	del := fs.Bool("delete", false, "remove the BMC set through the API (Git's applies again)")
	return func(pos []string) error {
		id, err := oneID(pos)
		if err != nil {
			return err
		}
		switch {
		case *del && *address != "":
			return usagef("--delete and --address exclude each other")
		case *address != "" && (*user == "" || *passwordFile == ""):
			return usagef("--address needs --username and --password-file")
		case *address == "" && (*user != "" || *passwordFile != ""):
			return usagef("--username and --password-file go with --address")
		}
		cl, err := cf.client()
		if err != nil {
			return err
		}
		path := "/machines/" + url.PathEscape(id) + "/bmc"
		var b []byte
		switch {
		case *del:
			if _, err := cl.do(http.MethodDelete, path, nil, nil); err != nil {
				return fmt.Errorf("bmc %s: %w", printable(id), err)
			}
			return cf.out.print(c.stdout, map[string]any{"id": id, "deleted": true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s: BMC set through the API removed\n", printable(id))
				return err
			})
		case *address != "":
			password, err := readSecretFile(*passwordFile, "password")
			if err != nil {
				return err
			}
			b, err = cl.do(http.MethodPut, path, nil, map[string]string{"address": *address, "username": *user, "password": password})
			if err != nil {
				return fmt.Errorf("bmc %s: %w", printable(id), err)
			}
		default:
			if b, err = cl.do(http.MethodGet, path, nil, nil); err != nil {
				return fmt.Errorf("bmc %s: %w", printable(id), err)
			}
		}
		var info boot.BMCInfo
		if err := decodeAnswer(b, &info); err != nil {
			return err
		}
		return cf.out.print(c.stdout, json.RawMessage(b), func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "address:     %s\nsource:      %s\ncredentials: %s\n", printable(info.Address), printable(info.Source), bmcCredentials(info))
			return err
		})
	}
}

// bmcCredentials says where a BMC's credentials come from, never what they
// are: Git's reference, or the API's sealed copy (which has no reference).
func bmcCredentials(info boot.BMCInfo) string {
	if info.Source == boot.SourceAPI {
		return "set through the API, sealed in the daemon's database"
	}
	return tableCell(info.Credentials)
}

func joinStates(states []store.State) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}
