package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// `provisiond power <action> ID... | -l key=value...`: power control through
// the daemon's API. One machine goes to /machines/{id}/power; several, or a
// label selector, to the bulk /power. -o json prints the API's answer.

var powerActions = []struct{ name, summary string }{
	{"on", "power machines on"},
	{"off", "power machines off at once, without shutting the OS down"},
	{"soft", "ask the machines' OS to shut down (ACPI)"},
	{"cycle", "power-cycle machines; one that is off is powered on"},
	{"reset", "hard-reset machines"},
	{"status", "show the machines' power state"},
}

func powerCommand() *command {
	cmd := &command{
		name:    "power",
		summary: "power machines on, off, cycle or query them through their BMCs",
		about: "Each action names machines (a MAC, an SMBIOS UUID or a Machine name) or selects\n" +
			"Machines by label with -l key=value (repeatable; all must match). Exit 1 if\n" +
			"any machine failed, in every output format. -o json prints the API's answer:\n" +
			"one machine's result ({\"state\"} for status), or {\"results\": [...]} for several.",
		examples: []string{
			"provisiond power on node1",
			"provisiond power cycle -l rack=r1",
			"provisiond power status -l rack=r1 -o json",
		},
		verbNoun: "action",
	}
	for _, a := range powerActions {
		action := a.name
		cmd.verbs = append(cmd.verbs, &command{
			name: action, args: "(ID... | -l key=value...)", summary: a.summary,
			examples: []string{"provisiond power " + action + " node1 node2", "provisiond power " + action + " -l rack=r1"},
			flags: func(fs *flagSet, c *cli) func([]string) error {
				cf := addClientFlags(fs, c)
				labels := labelFlags{}
				fs.Var(labels, "label", "select the Machines with label `key=value` (repeatable; all must match)")
				fs.alias("l", "label")
				return func(ids []string) error { return runPower(c, cf, action, ids, labels) }
			},
		})
	}
	return cmd
}

func runPower(c *cli, cf *clientFlags, action string, ids []string, labels labelFlags) error {
	if len(ids) == 0 && len(labels) == 0 {
		return usagef("name machines or select them with -l key=value")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var results []api.PowerResult
	var raw []byte // the API's answer, which -o json prints
	if len(ids) == 1 && len(labels) == 0 {
		var r api.PowerResult
		r, raw, err = powerOne(cl, action, ids[0])
		results = []api.PowerResult{r}
	} else {
		var bulk api.BulkResult
		raw, err = cl.do(http.MethodPost, "/power", nil, map[string]any{"action": action, "machines": ids, "selector": labels})
		if err == nil {
			err = decodeAnswer(raw, &bulk)
		}
		results = bulk.Results
	}
	if err != nil {
		return fmt.Errorf("power %s: %w", action, err)
	}
	if err := cf.out.print(c.stdout, json.RawMessage(raw), func(w io.Writer) error { return powerTable(w, results) }); err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(c.stderr, "provisiond power %s: %d of %d machines failed\n", action, failed, len(results))
		return errReported
	}
	return nil
}

// powerOne runs action on one machine through its own endpoint and returns
// its result with the API's answer. A BMC that failed (502, 504) answers
// with the machine's result, and a machine that cannot be driven (404, 409)
// gets one: a failed row, as a bulk call reports it, not an error of the
// command.
func powerOne(c *apiClient, action, id string) (api.PowerResult, []byte, error) {
	path := "/machines/" + url.PathEscape(id) + "/power"
	var b []byte
	var err error
	start := time.Now()
	if action == "status" {
		b, err = c.do(http.MethodGet, path, nil, nil)
	} else {
		b, err = c.do(http.MethodPost, path, nil, map[string]string{"action": action})
	}
	var ae *apiError
	if errors.As(err, &ae) && json.Valid(ae.Body) {
		switch ae.Code {
		case http.StatusBadGateway, http.StatusGatewayTimeout:
			var r api.PowerResult
			if json.Unmarshal(ae.Body, &r) == nil && r.Action != "" {
				return r, ae.Body, nil
			}
		case http.StatusNotFound, http.StatusConflict:
			return api.PowerResult{ID: id, Action: action, Error: ae.Msg, TookMS: time.Since(start).Milliseconds()}, ae.Body, nil
		}
	}
	if err != nil {
		return api.PowerResult{}, nil, err
	}
	if action == "status" { // {"state": "on"}
		var st api.PowerState
		if err := decodeAnswer(b, &st); err != nil {
			return api.PowerResult{}, nil, err
		}
		return api.PowerResult{ID: id, Action: action, OK: true, State: st.State, TookMS: time.Since(start).Milliseconds()}, b, nil
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
			tableCell(r.Done), time.Duration(r.TookMS)*time.Millisecond, tableCell(cliWords(r.Error)))
	}
	return tw.Flush()
}
