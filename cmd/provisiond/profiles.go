package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// `provisiond profiles list|sync`: the live profile set and the Git sync,
// through the API.

// syncTimeout covers a sync: the daemon's fetch limit (2 min) and the load.
const syncTimeout = 5 * time.Minute

func profilesCommand() *command {
	return &command{
		name:     "profiles",
		summary:  "list the live profiles, or sync them with their Git repository, through the daemon's API",
		examples: []string{"provisiond profiles list", "provisiond profiles sync   # in CI, after a push"},
		verbNoun: "verb",
		verbs: []*command{
			{
				name:    "list",
				summary: "list the profiles the daemon serves, and how their last reload went",
				about: "Shows the live set: each Profile with its config kind, boot-once and kernel,\n" +
					"then the Machines, the Default and when the set was loaded (with\n" +
					"--profiles-git, which commit). A last reload that failed is reported on\n" +
					"stderr with its file:line problems: the set listed keeps serving.",
				examples: []string{"provisiond profiles list", "provisiond profiles list -o json | jq -r '.profiles[].name'"},
				flags: func(fs *flagSet, c *cli) func([]string) error {
					cf := addClientFlags(fs, c)
					return func(pos []string) error { return profilesList(c, cf, pos) }
				},
			},
			{
				name:    "sync",
				summary: "fetch the profiles' Git ref now and load its commit if new (serve --profiles-git)",
				about: "Exit 1 if the commit is rejected (it does not validate) or the fetch fails, in\n" +
					"every output format, so a CI job that runs it after a push fails with the\n" +
					"commit; the live commit keeps serving.",
				examples: []string{"provisiond profiles sync --server http://provisiond.example.com:8080 --token-file api-token"},
				flags: func(fs *flagSet, c *cli) func([]string) error {
					cf := addClientFlags(fs, c)
					return func(pos []string) error { return profilesSync(c, cf, pos) }
				},
			},
		},
	}
}

// profilesAnswer is the part of GET /profiles the list prints.
type profilesAnswer struct {
	Reload *struct {
		OK       bool          `json:"ok"`
		Time     time.Time     `json:"time"`
		Error    string        `json:"error"`
		Problems []api.Problem `json:"problems"`
	} `json:"reload"`
	Git      *api.GitStatus `json:"git"`
	Profiles []struct {
		Name   string `json:"name"`
		Config string `json:"config"`
		Once   bool   `json:"once"`
		Kernel string `json:"kernel"`
	} `json:"profiles"`
	Machines []string `json:"machines"`
	Default  string   `json:"default"`
}

func profilesList(c *cli, cf *clientFlags, pos []string) error {
	if len(pos) != 0 {
		return usagef("profiles list takes no arguments, got %q", pos)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var a profilesAnswer
	b, err := cl.get("/profiles", nil, &a)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	err = cf.out.print(c.stdout, json.RawMessage(b), func(w io.Writer) error { return profileTable(w, a, time.Now()) })
	if err != nil {
		return err
	}
	// A listing that worked exits 0 in both formats; a failed reload is
	// news, not the command's failure (/healthz is the check).
	if r := a.Reload; r != nil && !r.OK {
		fmt.Fprintf(c.stderr, "provisiond profiles list: the last reload failed at %s; the set listed keeps serving:\n", r.Time.Local().Format(time.RFC3339))
		if len(r.Problems) == 0 {
			fmt.Fprintf(c.stderr, "  %s\n", printable(r.Error))
		}
		for _, p := range r.Problems {
			fmt.Fprintf(c.stderr, "  %s\n", printable(p.String()))
		}
	}
	return nil
}

// profileTable prints the profiles as NAME CONFIG ONCE KERNEL, then the
// Machines, the Default and where the set came from.
func profileTable(w io.Writer, a profilesAnswer, now time.Time) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "NAME\tCONFIG\tONCE\tKERNEL")
	for _, p := range a.Profiles {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", tableCell(p.Name), tableCell(p.Config), yesNo(p.Once), tableCell(p.Kernel))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nmachines: %d in Git\n", len(a.Machines))
	fmt.Fprintf(&b, "default:  %s\n", tableCell(a.Default))
	if a.Git != nil && a.Git.Live != nil {
		fmt.Fprintf(&b, "commit:   %s\n", revisionLine(a.Git.Live))
	}
	if r := a.Reload; r != nil {
		// The time of the last load that worked is not in the answer once
		// a later one failed; the stderr note says so.
		if r.OK {
			fmt.Fprintf(&b, "loaded:   %s\n", timeWithAge(r.Time, now))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func profilesSync(c *cli, cf *clientFlags, pos []string) error {
	if len(pos) != 0 {
		return usagef("profiles sync takes no arguments, got %q", pos)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	cl.http.Timeout = syncTimeout
	b, err := cl.do(http.MethodPost, "/profiles/sync", nil, nil)
	// Rejected (422) and failed (502) syncs answer with the result too.
	var ae *apiError
	if errors.As(err, &ae) && (ae.Code == http.StatusUnprocessableEntity || ae.Code == http.StatusBadGateway) && json.Valid(ae.Body) {
		b, err = ae.Body, nil
	}
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	var res api.SyncResult
	if err := decodeAnswer(b, &res); err != nil {
		return err
	}
	if err := cf.out.print(c.stdout, json.RawMessage(b), func(w io.Writer) error { return syncDetail(w, res) }); err != nil {
		return err
	}
	// The same outcome fails the same way whatever the output format: a CI
	// job must fail on a rejected commit.
	switch res.Result {
	case "rejected":
		fmt.Fprintln(c.stderr, "provisiond profiles sync: the commit does not validate; the live commit keeps serving")
		return errReported
	case "error":
		fmt.Fprintln(c.stderr, "provisiond profiles sync: the fetch failed; the live commit keeps serving")
		return errReported
	}
	return nil
}

// syncDetail prints a sync's result as key: value lines, then any problems.
func syncDetail(w io.Writer, r api.SyncResult) error {
	var buf strings.Builder
	tw := newTabWriter(&buf)
	fmt.Fprintf(tw, "result:\t%s\n", tableCell(r.Result))
	fmt.Fprintf(tw, "fetched:\t%s\n", revisionLine(r.Fetched))
	fmt.Fprintf(tw, "live:\t%s\n", revisionLine(r.Live))
	fmt.Fprintf(tw, "took:\t%v\n", time.Duration(r.DurationMS)*time.Millisecond)
	if r.Error != "" && len(r.Problems) == 0 {
		fmt.Fprintf(tw, "error:\t%s\n", printable(r.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(&buf, "problems:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&buf, "  %s\n", printable(p.String()))
		}
	}
	_, err := io.WriteString(w, buf.String())
	return err
}

// revisionLine is "<short> <subject> (<author>, <time>)", or "-".
func revisionLine(r *api.Revision) string {
	if r == nil {
		return "-"
	}
	s := printable(r.Short + " " + r.Subject)
	var by []string
	if r.Author != "" {
		by = append(by, printable(r.Author))
	}
	if !r.Time.IsZero() {
		by = append(by, r.Time.Local().Format(time.RFC3339))
	}
	if len(by) > 0 {
		s += " (" + strings.Join(by, ", ") + ")"
	}
	return s
}
