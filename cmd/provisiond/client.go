package main

// The operator's HTTP client for the daemon's /api/v1 (internal/api/openapi.yaml
// is the contract) and the table and JSON rendering shared by the client
// subcommands (machines.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

const (
	defaultServer = "http://127.0.0.1:8080"
	// devTokenFile is where `make run` (serve --data-dir ./data) writes the
	// token: the last place looked, so that the README's "Try it" works from
	// the repository.
	devTokenFile  = "./data/api-token"
	clientTimeout = 30 * time.Second
	// maxResponse bounds what the client reads of one response: a misdirected
	// --server must not make it buffer without end.
	maxResponse = 64 << 20
)

// hostPaths is where the daemon on this host keeps its settings, as the
// example systemd unit (examples/systemd) installs it. Without --server and
// --token-file the client talks to that daemon.
type hostPaths struct {
	envFile string // the unit's EnvironmentFile
	dataDir string // the unit's --data-dir, where serve writes the API token
}

func systemHost() hostPaths {
	return hostPaths{envFile: "/etc/provisiond/provisiond.env", dataDir: "/var/lib/provisiond"}
}

// clientFlags are the flags every client subcommand takes.
type clientFlags struct {
	server    string
	tokenFile string
	out       *output
	host      hostPaths
	unit      map[string]string // the unit's settings: c.unitEnv()
}

func addClientFlags(fs *flagSet, c *cli) *clientFlags {
	f := &clientFlags{host: c.host, unit: c.unitEnv()}
	fs.StringVar(&f.server, "server", "", fmt.Sprintf("`URL` of the provisiond daemon (default: http://127.0.0.1:<port> of PROVISIOND_HTTP_ADDR in %s, else %s)",
		c.host.envFile, defaultServer))
	fs.StringVar(&f.tokenFile, "token-file", "", "`FILE` holding the API token (default: the first readable of "+strings.Join(f.tokenFiles(), ", ")+")")
	f.out = addOutputFlag(fs)
	return f
}

// serverURL is --server, else the address the daemon on this host listens
// at, else defaultServer.
func (f *clientFlags) serverURL() string {
	if f.server != "" {
		return f.server
	}
	if addr := f.unit[envName("http-addr")]; addr != "" {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
				host = "127.0.0.1"
			}
			return "http://" + net.JoinHostPort(host, port)
		}
	}
	return defaultServer
}

// tokenFiles lists where the API token is looked for without --token-file,
// in order: the unit's --api-token-file, the token serve generated in the
// unit's data dir, the one `make run` generated.
func (f *clientFlags) tokenFiles() []string {
	var out []string
	if p := f.unit[envName("api-token-file")]; p != "" {
		out = append(out, p)
	}
	return append(out, filepath.Join(f.host.dataDir, apiTokenName), devTokenFile)
}

// token reads --token-file, else the first readable of tokenFiles. It
// returns the token and the file it came from.
func (f *clientFlags) token() (string, string, error) {
	if f.tokenFile != "" {
		tok, err := readToken(f.tokenFile)
		if err != nil {
			return "", "", fmt.Errorf("--token-file: %w", err)
		}
		return tok, f.tokenFile, nil
	}
	var tried []string
	for _, p := range f.tokenFiles() {
		tok, err := readToken(p)
		if err == nil {
			return tok, p, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (run as root or as the daemon's user)", err)
		}
		tried = append(tried, err.Error())
	}
	return "", "", fmt.Errorf("no API token found: %s; pass --token-file", strings.Join(tried, "; "))
}

// unitEnv returns the settings in c.host.envFile, read once per run: a
// client command consults them for its help, its server and its token.
func (c *cli) unitEnv() map[string]string {
	if c.unit == nil {
		c.unit = readEnvFile(c.host.envFile)
	}
	return c.unit
}

// readEnvFile reads the KEY=VALUE lines of a systemd EnvironmentFile; an
// unreadable file, or none (""), is an empty one (it is 0640
// root:provisiond).
func readEnvFile(path string) map[string]string {
	vars := map[string]string{}
	if path == "" {
		return vars
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return vars
	}
	for l := range strings.Lines(string(b)) {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vars[strings.TrimSpace(strings.TrimPrefix(k, "export "))] = v
	}
	return vars
}

// client checks the flags and returns a client for the daemon. A bad
// --server is a usage error; an unreadable token file is not.
func (f *clientFlags) client() (*apiClient, error) {
	server := f.serverURL()
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--server %q: want an http:// or https:// URL such as %s", server, defaultServer)
	}
	token, tokenFile, err := f.token()
	if err != nil {
		return nil, err
	}
	return &apiClient{
		ctx:       context.Background(),
		base:      strings.TrimRight(u.String(), "/") + "/api/v1",
		server:    strings.TrimRight(u.Redacted(), "/"),
		token:     token,
		tokenFile: tokenFile,
		actor:     currentUser(),
		http: &http.Client{
			Timeout: clientTimeout,
			// Follow no redirect: a POST would turn into a GET, and the
			// answer would not be the API's.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// apiClient calls /api/v1 with the operator's bearer token.
type apiClient struct {
	ctx       context.Context // ends every request early, e.g. on Ctrl-C
	base      string          // <server>/api/v1
	server    string          // for messages: the --server URL without any password
	token     string
	tokenFile string
	actor     string // the operator's user name, for the event log; "" if unknown
	http      *http.Client
}

// currentUser is the name of the user running the client, looked up once
// per client rather than per request (it reads the user database).
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
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
	req, err := c.request(method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(c.http, req)
	if err != nil {
		return nil, err
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
	return nil, c.failure(resp, b)
}

// request is a request to the API, authenticated and naming its actor.
func (c *apiClient) request(method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(c.ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", "provisiond/"+version)
	if c.actor != "" {
		req.Header.Set(api.ActorHeader, c.actor)
	}
	return req, nil
}

// send sends req with hc, saying which server could not be reached.
func (c *apiClient) send(hc *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		// url.Error repeats the full URL; the server's base says enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach provisiond at %s: %w", c.server, err)
	}
	return resp, nil
}

// failure is the *apiError of a non-2xx answer whose body is b.
func (c *apiClient) failure(resp *http.Response, b []byte) error {
	e := &apiError{Code: resp.StatusCode, Body: b}
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &apiErr) == nil && apiErr.Error != "" {
		e.Msg = printable(cliWords(apiErr.Error))
	} else {
		e.hint = fmt.Sprintf("not an answer of the provisiond API; check --server %s", c.server)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
			e.hint = fmt.Sprintf("redirected to %s; point --server there", printable(loc))
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		e.hint = fmt.Sprintf("check that --token-file %s holds the API token of the provisiond at %s", c.tokenFile, c.server)
	}
	return e
}

// get GETs path and decodes the answer into v.
func (c *apiClient) get(path string, query url.Values, v any) ([]byte, error) {
	b, err := c.do(http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	return b, decodeAnswer(b, v)
}

// noBMCForCLI is boot.ErrNoBMC for someone at the command line.
const noBMCForCLI = "the machine has no BMC: give its Machine a bmc: in Git, or set one with " +
	"provisiond machines bmc ID --address URL --username USER --password-file FILE"

// cliWords rewords what the API tells an HTTP client to send into what an
// operator at the command line runs.
func cliWords(msg string) string {
	return strings.ReplaceAll(msg, boot.ErrNoBMC.Error(), noBMCForCLI)
}

func decodeAnswer(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode the API's answer: %w", err)
	}
	return nil
}

// Rendering.

// printListing prints a listing the API answered (raw, n entries) in the
// output format asked for: the JSON as it came, or table's table, or "no
// <what>" on stderr when there is nothing to tabulate.
func printListing(c *cli, cf *clientFlags, raw []byte, n int, what string, table func(io.Writer) error) error {
	return cf.out.print(c.stdout, json.RawMessage(raw), func(w io.Writer) error {
		if n == 0 {
			fmt.Fprintln(c.stderr, "no "+what)
			return nil
		}
		return table(w)
	})
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// tableCell is s for a table or a key: value line: "-" when empty, and no control
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

// ageString is how long before now t was, coarsely: "12s ago", "3m ago", "2h ago",
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

// timeWithAge is t in local time with its age, or "-".
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
	keys := slices.Sorted(maps.Keys(labels))
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
			tableCell(m.Profile), tableCell(string(m.State)), seenAge(m.LastSeen, now))
	}
	return tw.Flush()
}

// seenAge is ageString for when a machine was seen: "never" for a declared
// machine, which the API lists before any request showed it.
func seenAge(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return ageString(t, now)
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
	if m.LastSeen.IsZero() {
		line("first seen", "never")
		line("last seen", "never")
	} else {
		line("first seen", timeWithAge(m.FirstSeen, now))
		line("last seen", timeWithAge(m.LastSeen, now))
	}
	if p := m.Provisioning; p != nil {
		fmt.Fprintln(tw, "provisioning:\t")
		line("  profile", tableCell(p.Profile))
		line("  session open", yesNo(p.SessionOpen))
		line("  issued at", timeWithAge(p.IssuedAt, now))
		line("  config served", timeWithAge(p.ConfigServed, now))
		line("  config fetches", fmt.Sprint(p.ConfigFetches))
		line("  installed", timeWithAge(p.Installed, now))
	}
	hw := m.Hardware
	if hw == nil {
		line("hardware", "- (never inspected: boot it with a profile that has inspect: true)")
	} else {
		fmt.Fprintln(tw, "hardware:\t")
		hardwareDetail(line, hw, now)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if hw != nil {
		if err := deviceTables(&buf, hw); err != nil {
			return err
		}
	}
	// The section heading's empty value leaves padding behind.
	for l := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// hardwareDetail prints what a machine's inspection agent reported as
// indented key: value lines, through line.
func hardwareDetail(line func(k, v string), hw *store.Hardware, now time.Time) {
	s, c := hw.System, hw.CPU
	line("  reported", timeWithAge(hw.ReportedAt, now))
	line("  system", tableCell(strings.TrimSpace(s.Vendor+" "+s.Product)))
	line("  serial", tableCell(s.Serial))
	line("  board", tableCell(strings.TrimSpace(s.BoardVendor+" "+s.BoardProduct+bracketed(s.BoardSerial))))
	line("  bios", tableCell(strings.TrimSpace(s.BIOSVendor+" "+s.BIOSVersion)))
	line("  asset tag", tableCell(s.ChassisAssetTag))
	line("  cpu", tableCell(strings.TrimSpace(c.Model+bracketed(c.Arch))))
	line("  cpu count", fmt.Sprintf("%s, %s, %s", count(c.Sockets, "socket"), count(c.Cores, "core"), count(c.Threads, "thread")))
	line("  memory", sizeCell(hw.Memory))
}

// deviceTables prints a machine's disks and NICs as two indented tables.
func deviceTables(w io.Writer, hw *store.Hardware) error {
	fmt.Fprintf(w, "disks: %d\n", len(hw.Disks))
	tw := newTabWriter(w)
	if len(hw.Disks) > 0 {
		fmt.Fprintln(tw, "  NAME\tSIZE\tMODEL\tSERIAL\tWWN\tROTATIONAL\tBY-ID")
	}
	for _, d := range hw.Disks {
		byID := make([]string, len(d.ByID))
		for i, p := range d.ByID {
			byID[i] = printable(p)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", tableCell(d.Name), sizeCell(d.Size), tableCell(d.Model),
			tableCell(d.Serial), tableCell(d.WWN), yesNo(d.Rotational), tableCell(strings.Join(byID, " ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "nics: %d\n", len(hw.NICs))
	tw = newTabWriter(w)
	if len(hw.NICs) > 0 {
		fmt.Fprintln(tw, "  NAME\tMAC\tDRIVER\tSPEED\tLINK")
	}
	for _, n := range hw.NICs {
		speed := "-"
		if n.Speed > 0 {
			speed = fmt.Sprintf("%d Mb/s", n.Speed)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", tableCell(n.Name), tableCell(n.MAC), tableCell(n.Driver), speed, upDown(n.Link))
	}
	return tw.Flush()
}

// bracketed is " (s)", or "" for no s.
func bracketed(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// count is "2 cores", "1 core", or "? cores" when the machine did not say.
func count(n int, noun string) string {
	switch n {
	case 0:
		return "? " + noun + "s"
	case 1:
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// sizeCell is a size in bytes for people, "-" when unknown.
func sizeCell(n uint64) string {
	if n == 0 {
		return "-"
	}
	return boot.Bytes(n)
}

func upDown(link bool) string {
	if link {
		return "up"
	}
	return "down"
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

// eventTable prints events as TIME SEQ MAC TYPE ACTOR MESSAGE, under a
// header if header. The columns have fixed widths, so that the rows
// --follow prints as they come line up with those before them.
func eventTable(w io.Writer, es []store.Event, header bool) error {
	const row = "%-25s %6s  %-17s  %-18s  %-22s  %s\n"
	var b strings.Builder
	if header {
		fmt.Fprintf(&b, row, "TIME", "SEQ", "MAC", "TYPE", "ACTOR", "MESSAGE")
	}
	for _, e := range es {
		ts := "-"
		if !e.Time.IsZero() {
			ts = e.Time.Local().Format(time.RFC3339)
		}
		msg := e.Message
		if reason := e.Fields["error"]; reason != "" {
			msg += ": " + reason // a failed power operation keeps the BMC's answer there
		}
		fmt.Fprintf(&b, row, ts, strconv.FormatUint(e.Seq, 10), tableCell(e.MAC), tableCell(e.Type), tableCell(e.Actor), tableCell(msg))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
