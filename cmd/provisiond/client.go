package main

// The operator's HTTP client for the daemon's /api/v1 (internal/api/openapi.yaml
// is the contract) and the table and JSON rendering shared by the client
// subcommands (machines.go).

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/store"
)

const (
	defaultServer    = "http://127.0.0.1:8080"
	defaultTokenFile = "./data/api-token" // where `serve` with the default --data-dir writes it
	clientTimeout    = 30 * time.Second
	// maxResponse bounds what the client reads of one response: a misdirected
	// --server must not make it buffer without end.
	maxResponse = 64 << 20
)

// clientFlags are the flags every client subcommand takes.
type clientFlags struct {
	server    string
	tokenFile string
	output    string
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.server, "server", defaultServer, "base URL of the provisiond daemon")
	fs.StringVar(&f.tokenFile, "token-file", defaultTokenFile, "file holding the API token (provisiond serve writes <data-dir>/api-token)")
	fs.StringVar(&f.output, "o", "table", "output format: table or json")
	return f
}

// wantJSON reports whether -o json was asked for.
func (f *clientFlags) wantJSON() bool { return f.output == "json" }

// client checks the flags and returns a client for the daemon. Bad flags are
// usage errors; an unreadable token file is not.
func (f *clientFlags) client() (*apiClient, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("%w: -o %q: want table or json", errUsage, f.output)
	}
	u, err := url.Parse(f.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: --server %q: want an http:// or https:// URL such as %s", errUsage, f.server, defaultServer)
	}
	token, err := readClientToken(f.tokenFile)
	if err != nil {
		return nil, err
	}
	return &apiClient{
		base:      strings.TrimRight(u.String(), "/") + "/api/v1",
		server:    strings.TrimRight(u.Redacted(), "/"),
		token:     token,
		tokenFile: f.tokenFile,
		http: &http.Client{
			Timeout: clientTimeout,
			// Follow no redirect: a POST would turn into a GET, and the
			// answer would not be the API's.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// readClientToken reads the API token, pointing at the flag on failure.
func readClientToken(path string) (string, error) {
	tok, err := readToken(path)
	if err != nil {
		return "", fmt.Errorf("%w; pass --token-file", err)
	}
	return tok, nil
}

// apiClient calls /api/v1 with the operator's bearer token.
type apiClient struct {
	base      string // <server>/api/v1
	server    string // for messages: the --server URL without any password
	token     string
	tokenFile string
	http      *http.Client
}

// apiError is an HTTP error status from the daemon, with its error text.
type apiError struct {
	Code int
	Msg  string // the body's "error", or a note that the body was not the API's
	Body []byte // the answer, for routes whose error statuses carry a result
	hint string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code))
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.hint != "" {
		s += " (" + e.hint + ")"
	}
	return s
}

// do sends method path?query with body (nil: none) as JSON and returns the
// response body of a 2xx answer. Other statuses come back as *apiError.
func (c *apiClient) do(method, path string, query url.Values, body any) ([]byte, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "provisiond/"+version)
	if u, err := user.Current(); err == nil {
		req.Header.Set(api.ActorHeader, u.Username)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the full URL; the server's base says enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach provisiond at %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", c.server, err)
	}
	if len(b) > maxResponse {
		return nil, fmt.Errorf("the answer of %s is larger than %d MiB", c.server, maxResponse>>20)
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil // DELETE answers nothing
	}
	if resp.StatusCode/100 == 2 {
		if !json.Valid(b) {
			return nil, fmt.Errorf("%s answered %s %s with something that is not JSON; is --server a provisiond?", c.server, method, path)
		}
		return b, nil
	}
	e := &apiError{Code: resp.StatusCode, Body: b}
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &apiErr) == nil && apiErr.Error != "" {
		e.Msg = printable(apiErr.Error)
	} else {
		e.hint = fmt.Sprintf("not an answer of the provisiond API; check --server %s", c.server)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
			e.hint = fmt.Sprintf("redirected to %s; point --server there", printable(loc))
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		e.hint = fmt.Sprintf("check that --token-file %s holds the API token of the provisiond at %s", c.tokenFile, c.server)
	}
	return nil, e
}

// get GETs path and decodes the answer into v.
func (c *apiClient) get(path string, query url.Values, v any) ([]byte, error) {
	b, err := c.do(http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	return b, decodeAnswer(b, v)
}

func decodeAnswer(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode the API's answer: %w", err)
	}
	return nil
}

// Rendering.

// printAPIJSON prints the API's JSON indented; b is valid JSON (do checks).
func printAPIJSON(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(b), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// cell is s for a table or a key: value line: "-" when empty, and no control
// characters, so that text from the server cannot break the layout or the
// terminal.
func tableCell(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// age is how long before now t was, coarsely: "12s ago", "3m ago", "2h ago",
// "4d ago"; "-" for no time. A time ahead of now (clock skew) is "0s ago".
func ageString(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}

// timestamp is t in local time with its age, or "-".
func timeWithAge(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339) + " (" + ageString(t, now) + ")"
}

// labelList is labels as sorted key=value pairs, or "-".
func labelList(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = printable(k + "=" + labels[k])
	}
	return strings.Join(keys, ", ")
}

// machineTable prints machines as NAME MAC UUID ARCH IP PROFILE STATE LAST-SEEN.
func machineTable(w io.Writer, ms []api.Machine, now time.Time) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "NAME\tMAC\tUUID\tARCH\tIP\tPROFILE\tSTATE\tLAST-SEEN")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			tableCell(m.Machine), tableCell(m.MAC), tableCell(m.UUID), tableCell(m.Arch), tableCell(m.IP),
			tableCell(m.Profile), tableCell(string(m.State)), ageString(m.LastSeen, now))
	}
	return tw.Flush()
}

// machineDetail prints one machine as key: value lines.
func machineDetail(w io.Writer, m api.Machine, now time.Time) error {
	var buf bytes.Buffer
	tw := newTabWriter(&buf)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("machine", tableCell(m.Machine))
	line("mac", tableCell(m.MAC))
	line("uuid", tableCell(m.UUID))
	line("arch", tableCell(m.Arch))
	line("ip", tableCell(m.IP))
	line("profile", tableCell(m.Profile))
	line("state", tableCell(string(m.State)))
	line("labels", labelList(m.Labels))
	line("first seen", timeWithAge(m.FirstSeen, now))
	line("last seen", timeWithAge(m.LastSeen, now))
	if p := m.Provisioning; p != nil {
		fmt.Fprintln(tw, "provisioning:\t")
		line("  profile", tableCell(p.Profile))
		line("  session open", yesNo(p.SessionOpen))
		line("  issued at", timeWithAge(p.IssuedAt, now))
		line("  config served", timeWithAge(p.ConfigServed, now))
		line("  config fetches", fmt.Sprint(p.ConfigFetches))
		line("  installed", timeWithAge(p.Installed, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The section heading's empty value leaves padding behind.
	for l := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// machineName is "name (mac)", or the MAC of a machine no Machine claims.
func machineName(m api.Machine) string {
	if m.Machine == "" {
		return printable(m.MAC)
	}
	return printable(m.Machine) + " (" + printable(m.MAC) + ")"
}

// eventTable prints events as TIME SEQ MAC TYPE ACTOR MESSAGE.
func eventTable(w io.Writer, es []store.Event) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "TIME\tSEQ\tMAC\tTYPE\tACTOR\tMESSAGE")
	for _, e := range es {
		ts := "-"
		if !e.Time.IsZero() {
			ts = e.Time.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", ts, e.Seq, tableCell(e.MAC), tableCell(e.Type), tableCell(e.Actor), tableCell(e.Message))
	}
	return tw.Flush()
}
