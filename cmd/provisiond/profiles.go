package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// `provisiond profiles sync`: POST /profiles/sync through the API.

// syncTimeout covers a sync: the daemon's fetch limit (2 min) and the load.
const syncTimeout = 5 * time.Minute

func profilesUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: provisiond profiles sync [flags]\n\nverbs:")
	fmt.Fprintln(w, "  sync         fetch the profiles' Git ref now and load its commit if new (serve --profiles-git);")
	fmt.Fprintln(w, "               exit 1 if the commit is rejected or the fetch fails")
	fmt.Fprintln(w, "\nFlags: --server URL (default "+defaultServer+"), --token-file PATH\n(default "+defaultTokenFile+"), -o table|json.")
}

func runProfiles(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		profilesUsage(stderr)
		return fmt.Errorf("%w: want a verb: sync", errUsage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		profilesUsage(stderr)
		return flag.ErrHelp
	case "sync":
		return runProfilesSync(args[1:], stdout, stderr)
	}
	profilesUsage(stderr)
	return fmt.Errorf("%w: unknown verb %q; want sync", errUsage, args[0])
}

func runProfilesSync(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("profiles sync", stderr)
	cf := addClientFlags(fs)
	fs.Usage = func() { profilesUsage(stderr); fs.PrintDefaults() }
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: profiles sync takes no arguments, got %q", errUsage, pos)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	c.http.Timeout = syncTimeout
	b, err := c.do(http.MethodPost, "/profiles/sync", nil, nil)
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
	if cf.wantJSON() {
		if err := printAPIJSON(stdout, b); err != nil {
			return err
		}
	} else if err := syncDetail(stdout, res); err != nil {
		return err
	}
	if res.Result == "rejected" || res.Result == "error" {
		if !cf.wantJSON() {
			fmt.Fprintf(stderr, "provisiond profiles sync: %s; the live commit keeps serving\n", map[string]string{"rejected": "the commit does not validate", "error": "the fetch failed"}[res.Result])
		}
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
