package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/store"
)

// The operator's subcommands over the daemon's API: machines list|show|
// reprovision and events. Their flags are in clientFlags (client.go).

var machineVerbs = []struct{ name, args, summary string }{
	{"list", "[--state S] [-l key=value]...", "the inventory, filtered by state and labels"},
	{"show", "ID", "one machine and its provisioning session"},
	{"reprovision", "ID [--reason TEXT] [--no-power]", "send a machine back to provisioning and PXE-boot it through its BMC"},
	{"wipe", "ID [--reason TEXT] [--no-power]", "boot a machine into the --wipe-profile through its BMC"},
	{"bmc", "ID [--address URL --username U --password-file F | --delete]", "show or set a machine's BMC (credentials are never shown)"},
}

const clientFlagsHelp = "Flags for every verb: --server URL (default " + defaultServer + "), --token-file PATH\n(default " + defaultTokenFile + "), -o table|json. ID is a MAC, an SMBIOS UUID or a Machine name."

func machinesUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: provisiond machines <verb> [flags]\n\nverbs:")
	for _, v := range machineVerbs {
		fmt.Fprintf(w, "  %-12s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(w, "\n"+clientFlagsHelp)
}

func verbNames() string {
	names := make([]string, len(machineVerbs))
	for i, v := range machineVerbs {
		names[i] = v.name
	}
	return strings.Join(names, ", ")
}

func runMachines(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		machinesUsage(stderr)
		return fmt.Errorf("%w: want a verb: %s", errUsage, verbNames())
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		machinesUsage(stderr)
		return flag.ErrHelp
	case "list":
		return runMachinesList(args[1:], stdout, stderr)
	case "show":
		return runMachinesShow(args[1:], stdout, stderr)
	case "reprovision":
		return runMachinesReprovision(args[1:], stdout, stderr)
	case "wipe":
		return runMachinesWipe(args[1:], stdout, stderr)
	case "bmc":
		return runMachinesBMC(args[1:], stdout, stderr)
	}
	machinesUsage(stderr)
	if strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: the verb (%s) comes before flags", errUsage, verbNames())
	}
	return fmt.Errorf("%w: unknown verb %q; want %s", errUsage, args[0], verbNames())
}

// verbFlagSet is the flag set of `machines <verb>`.
func verbFlagSet(verb string, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet("machines "+verb, stderr)
	fs.Usage = func() {
		for _, v := range machineVerbs {
			if v.name == verb {
				fmt.Fprintf(stderr, "usage: provisiond machines %s %s\n\n%s.\n\n", verb, v.args, v.summary)
			}
		}
		fs.PrintDefaults()
	}
	return fs
}

// oneID returns the single positional ID.
func oneID(pos []string) (string, error) {
	if len(pos) != 1 || pos[0] == "" {
		return "", fmt.Errorf("%w: want exactly one machine ID (a MAC, UUID or Machine name)", errUsage)
	}
	return pos[0], nil
}

func runMachinesList(args []string, stdout, stderr io.Writer) error {
	fs := verbFlagSet("list", stderr)
	cf := addClientFlags(fs)
	state := fs.String("state", "", "only machines in this lifecycle state")
	labels := labelFlags{}
	fs.Var(labels, "l", "only machines with label key=value (repeatable; all must match)")
	fs.Var(labels, "label", "same as -l")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: list takes no arguments, got %q", errUsage, pos)
	}
	if *state != "" && !store.State(*state).Valid() {
		return fmt.Errorf("%w: --state %q: want one of %s", errUsage, *state, joinStates(store.States()))
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *state != "" {
		q.Set("state", *state)
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("label", k+"="+labels[k])
	}
	var list struct {
		Machines []api.Machine `json:"machines"`
	}
	b, err := c.get("/machines", q, &list)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if cf.wantJSON() {
		return printAPIJSON(stdout, b)
	}
	if len(list.Machines) == 0 {
		fmt.Fprintln(stderr, "no machines")
		return nil
	}
	return machineTable(stdout, list.Machines, time.Now())
}

// parseIDVerb parses a verb that names one machine and returns the id with a
// client for the daemon.
func parseIDVerb(fs *flag.FlagSet, cf *clientFlags, args []string) (string, *apiClient, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", nil, err
	}
	id, err := oneID(pos)
	if err != nil {
		return "", nil, err
	}
	c, err := cf.client()
	return id, c, err
}

func runMachinesShow(args []string, stdout, stderr io.Writer) error {
	fs := verbFlagSet("show", stderr)
	cf := addClientFlags(fs)
	id, c, err := parseIDVerb(fs, cf, args)
	if err != nil {
		return err
	}
	var m api.Machine
	b, err := c.get("/machines/"+url.PathEscape(id), nil, &m)
	if err != nil {
		return fmt.Errorf("show %s: %w", printable(id), err)
	}
	if cf.wantJSON() {
		return printAPIJSON(stdout, b)
	}
	return machineDetail(stdout, m, time.Now())
}

func runMachinesReprovision(args []string, stdout, stderr io.Writer) error {
	return runSendBack("reprovision", args, stdout, stderr)
}

func runMachinesWipe(args []string, stdout, stderr io.Writer) error {
	return runSendBack("wipe", args, stdout, stderr)
}

// runSendBack is `machines reprovision|wipe ID`: the lifecycle change and,
// unless --no-power, a network boot through the machine's BMC.
func runSendBack(verb string, args []string, stdout, stderr io.Writer) error {
	fs := verbFlagSet(verb, stderr)
	cf := addClientFlags(fs)
	reason := fs.String("reason", "", "why, recorded in the event")
	noPower := fs.Bool("no-power", false, "only change the state; do not PXE-boot the machine through its BMC")
	id, c, err := parseIDVerb(fs, cf, args)
	if err != nil {
		return err
	}
	body := struct {
		Reason string `json:"reason,omitempty"`
		Power  bool   `json:"power"`
	}{*reason, !*noPower}
	b, err := c.do(http.MethodPost, "/machines/"+url.PathEscape(id)+"/"+verb, nil, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, printable(id), err)
	}
	if cf.wantJSON() {
		return printAPIJSON(stdout, b)
	}
	var m api.SendBackResult
	if err := decodeAnswer(b, &m); err != nil {
		return fmt.Errorf("%s %s: %w", verb, printable(id), err)
	}
	if _, err := fmt.Fprintf(stdout, "%s: %s\n", machineName(m.Machine), printable(string(m.State))); err != nil {
		return err
	}
	switch p := m.BMCResult; {
	case p == nil && !*noPower:
		_, err = fmt.Fprintln(stdout, "no BMC: the machine does the rest on its next network boot")
	case p != nil && !p.OK:
		fmt.Fprintf(stderr, "provisiond machines %s: the state changed, but the BMC failed: %s\n", verb, printable(p.Error))
		return errReported
	case p != nil:
		_, err = fmt.Fprintf(stdout, "BMC %s: next boot %s, power %s (was %s)\n", printable(p.BMC), tableCell(p.Boot), tableCell(p.Done), tableCell(p.Before))
	}
	return err
}

func runMachinesBMC(args []string, stdout, stderr io.Writer) error {
	fs := verbFlagSet("bmc", stderr)
	cf := addClientFlags(fs)
	address := fs.String("address", "", "set the BMC: ipmi://host[:port] or redfish://host[:port]")
	user := fs.String("username", "", "with --address: the BMC user")
	passwordFile := fs.String("password-file", "", "with --address: file holding the BMC password (never a flag: flags show in ps)")
	del := fs.Bool("delete", false, "remove the BMC set through the API (Git's applies again)")
	id, c, err := parseIDVerb(fs, cf, args)
	if err != nil {
		return err
	}
	path := "/machines/" + url.PathEscape(id) + "/bmc"
	var b []byte
	switch {
	case *del && *address != "":
		return fmt.Errorf("%w: --delete and --address exclude each other", errUsage)
	case *del:
		if _, err := c.do(http.MethodDelete, path, nil, nil); err != nil {
			return fmt.Errorf("bmc %s: %w", printable(id), err)
		}
		_, err = fmt.Fprintf(stdout, "%s: BMC set through the API removed\n", printable(id))
		return err
	case *address != "":
		if *user == "" || *passwordFile == "" {
			return fmt.Errorf("%w: --address needs --username and --password-file", errUsage)
		}
		password, err := readSecretFile(*passwordFile, "password")
		if err != nil {
			return err
		}
		b, err = c.do(http.MethodPut, path, nil, map[string]string{"address": *address, "username": *user, "password": password})
		if err != nil {
			return fmt.Errorf("bmc %s: %w", printable(id), err)
		}
	default:
		if b, err = c.do(http.MethodGet, path, nil, nil); err != nil {
			return fmt.Errorf("bmc %s: %w", printable(id), err)
		}
	}
	if cf.wantJSON() {
		return printAPIJSON(stdout, b)
	}
	var info struct{ Address, Source, Credentials string }
	if err := decodeAnswer(b, &info); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "address:     %s\nsource:      %s\ncredentials: %s\n", printable(info.Address), printable(info.Source), tableCell(info.Credentials))
	return err
}

// eventsPageSize is how many events one request asks for: the API's maximum.
const eventsPageSize = 1000

func runEvents(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("events", stderr)
	cf := addClientFlags(fs)
	machine := fs.String("machine", "", "only this machine's events (a MAC, UUID or Machine name)")
	since := fs.String("since", "", "only events since an RFC 3339 time or a duration ago, e.g. 1h")
	limit := fs.Int("limit", 0, "at most this many events, oldest first (default: all)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: provisiond events [--machine ID] [--since 1h|RFC3339] [--limit N]\n\nThe event log, oldest first.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: events takes no arguments, got %q", errUsage, pos)
	}
	if *since != "" {
		if _, err := api.ParseSince(*since, time.Now()); err != nil {
			return fmt.Errorf("%w: --%v", errUsage, err)
		}
	}
	if *limit < 0 {
		return fmt.Errorf("%w: --limit %d: want a positive count, or 0 for all", errUsage, *limit)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *machine != "" {
		q.Set("machine", *machine)
	}
	if *since != "" {
		q.Set("since", *since)
	}
	events, raw, err := fetchEvents(c, q, *limit)
	if err != nil {
		return err
	}
	if cf.wantJSON() {
		b, err := json.Marshal(map[string]any{"events": raw})
		if err != nil {
			return err
		}
		return printAPIJSON(stdout, b)
	}
	if len(events) == 0 {
		fmt.Fprintln(stderr, "no events")
		return nil
	}
	return eventTable(stdout, events)
}

// fetchEvents pages through /events with after=<last seq> until a page comes
// back short or limit (0: no limit) events are in. It returns each event
// decoded and as the API sent it.
func fetchEvents(c *apiClient, q url.Values, limit int) ([]store.Event, []json.RawMessage, error) {
	return fetchEventsPaged(c, q, limit, eventsPageSize)
}

func fetchEventsPaged(c *apiClient, q url.Values, limit, pageSize int) ([]store.Event, []json.RawMessage, error) {
	var (
		events []store.Event
		raw    = []json.RawMessage{}
		after  uint64
	)
	for {
		page := pageSize
		if limit > 0 {
			page = min(page, limit-len(events))
		}
		q.Set("limit", strconv.Itoa(page))
		if after > 0 {
			q.Set("after", strconv.FormatUint(after, 10))
		}
		var list struct {
			Events []json.RawMessage `json:"events"`
		}
		if _, err := c.get("/events", q, &list); err != nil {
			return nil, nil, err
		}
		for _, r := range list.Events {
			var e store.Event
			if err := decodeAnswer(r, &e); err != nil {
				return nil, nil, err
			}
			if e.Seq <= after && after > 0 {
				return nil, nil, fmt.Errorf("the API sent event %d after asking for events after %d; not paging on", e.Seq, after)
			}
			events = append(events, e)
			raw = append(raw, r)
		}
		if len(list.Events) < page || (limit > 0 && len(events) >= limit) {
			return events, raw, nil
		}
		after = events[len(events)-1].Seq
	}
}

func joinStates(states []store.State) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}
