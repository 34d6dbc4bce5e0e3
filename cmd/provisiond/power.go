package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// `provisiond power <action> ID... | -l key=value...`: power control through
// the daemon's API. One machine goes to /machines/{id}/power; several, or a
// label selector, to the bulk /power.

var powerActions = []string{"on", "off", "soft", "cycle", "reset", "status"}

func powerUsage(w io.Writer) {
	fmt.Fprintf(w, `usage: provisiond power <action> (ID... | -l key=value...) [flags]

actions: %s
  cycle on a machine that is off powers it on; soft asks the OS to shut down.
  ID is a MAC, an SMBIOS UUID or a Machine name; -l selects the Machines whose
  labels include key=value (repeatable; all must match).

%s
`, strings.Join(powerActions, ", "), clientFlagsHelp)
}

func runPower(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
		powerUsage(stderr)
		return fmt.Errorf("%w: want an action first: %s", errUsage, strings.Join(powerActions, ", "))
	}
	action := args[0]
	switch {
	case action == "-h" || action == "--help" || action == "-help" || action == "help":
		powerUsage(stderr)
		return flag.ErrHelp
	case !slices.Contains(powerActions, action):
		powerUsage(stderr)
		return fmt.Errorf("%w: unknown action %q; want %s", errUsage, action, strings.Join(powerActions, ", "))
	}
	fs := newFlagSet("power "+action, stderr)
	fs.Usage = func() { powerUsage(stderr); fs.PrintDefaults() }
	cf := addClientFlags(fs)
	labels := labelFlags{}
	fs.Var(labels, "l", "select Machines with label key=value (repeatable; all must match)")
	fs.Var(labels, "label", "same as -l")
	ids, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(ids) == 0 && len(labels) == 0 {
		return fmt.Errorf("%w: name machines or select them with -l key=value", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var results []api.PowerResult
	var raw []byte
	if len(ids) == 1 && len(labels) == 0 {
		var r api.PowerResult
		r, raw, err = powerOne(c, action, ids[0])
		results = []api.PowerResult{r}
	} else {
		var bulk api.BulkResult
		raw, err = c.do(http.MethodPost, "/power", nil, map[string]any{"action": action, "machines": ids, "selector": labels})
		if err == nil {
			err = decodeAnswer(raw, &bulk)
		}
		results = bulk.Results
	}
	if err != nil {
		return fmt.Errorf("power %s: %w", action, err)
	}
	if cf.wantJSON() {
		if err := printAPIJSON(stdout, raw); err != nil {
			return err
		}
	} else if err := powerTable(stdout, results); err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "provisiond power %s: %d of %d machines failed\n", action, failed, len(results))
		return errReported
	}
	return nil
}

// powerOne runs action on one machine through its own endpoint, whose error
// statuses carry the BMC's words.
func powerOne(c *apiClient, action, id string) (api.PowerResult, []byte, error) {
	path := "/machines/" + url.PathEscape(id) + "/power"
	if action == "status" {
		var st api.PowerState
		b, err := c.get(path, nil, &st)
		return api.PowerResult{ID: id, Action: action, OK: err == nil, State: st.State}, b, err
	}
	b, err := c.do(http.MethodPost, path, nil, map[string]string{"action": action})
	if err != nil {
		return api.PowerResult{}, nil, err
	}
	var r api.PowerResult
	return r, b, decodeAnswer(b, &r)
}

// powerTable prints results as MACHINE MAC ACTION RESULT STATE DONE TOOK ERROR.
func powerTable(w io.Writer, rs []api.PowerResult) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "MACHINE\tMAC\tACTION\tRESULT\tSTATE\tDONE\tTOOK\tERROR")
	for _, r := range rs {
		result := "ok"
		if !r.OK {
			result = "failed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			tableCell(cmp.Or(r.Machine, r.ID)), tableCell(r.MAC), tableCell(r.Action), result, tableCell(r.State),
			tableCell(r.Done), time.Duration(r.TookMS)*time.Millisecond, tableCell(r.Error))
	}
	return tw.Flush()
}
