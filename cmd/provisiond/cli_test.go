package main

// The command line as an operator meets it: help, mistakes, output formats
// and exit statuses, completion, the environment and the defaults that find
// the daemon on this host.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/testutil"
)

// Every command's help goes to stdout with status 0, however it is asked
// for; it opens with what the command does, shows how to call it with an
// example, and writes flags as --flag.
func TestHelpEveryCommand(t *testing.T) {
	singleDashLong := regexp.MustCompile(`(?m)^\s+(-[a-z][a-z-]+)`)
	commandTable().walk(nil, func(path []string, cmd *command) {
		args := path[1:]
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			code, out, errOut := runCmd(append(slices.Clone(args), "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("--help: exit %d, stderr %q; want 0 and nothing", code, errOut)
			}
			first, _, _ := strings.Cut(out, "\n\n")
			if strings.Join(strings.Fields(first), " ") != sentence(cmd.summary) {
				t.Errorf("help opens with %q; want the summary as a sentence", first)
			}
			for _, want := range []string{"Usage:\n  " + strings.Join(path, " "), "Examples:\n  provisiond ", "Flags:\n", "-h, --help"} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
			if m := singleDashLong.FindStringSubmatch(out); m != nil {
				t.Errorf("help shows %s with one dash:\n%s", m[1], out)
			}
			for _, other := range [][]string{append(slices.Clone(args), "-h"), append([]string{"help"}, args...)} {
				if code, o, _ := runCmd(other...); code != 0 || o != out {
					t.Errorf("%q: exit %d, and not the same help as --help", other, code)
				}
			}
		})
	})
}

// A mistake is one line saying what was wrong and one pointing at --help:
// no usage dump (validate -o json used to print it twice), nothing on stdout.
func TestMistakesAreOneLine(t *testing.T) {
	commandTable().walk(nil, func(path []string, cmd *command) {
		p := strings.Join(path, " ")
		var args []string
		var want string
		if len(cmd.verbs) > 0 {
			args, want = append(slices.Clone(path[1:]), "nosuch"), fmt.Sprintf("%s: unknown %s \"nosuch\"", p, cmd.verbNoun)
		} else {
			args, want = append(slices.Clone(path[1:]), "--nosuch"), p+": unknown flag --nosuch"
		}
		t.Run(p, func(t *testing.T) {
			code, out, errOut := runCmd(args...)
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			if code != 2 || out != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], want) || lines[1] != "Run '"+p+" --help' for usage." {
				t.Errorf("%q: exit %d\nstdout %q\nstderr:\n%s\nwant 2, and %q then a pointer to --help", args, code, out, errOut, want)
			}
		})
	})
	code, _, errOut := runCmd("validate", "-o", "json")
	if code != 2 || errOut != "provisiond validate: want exactly one profiles directory, got 0 arguments\nRun 'provisiond validate --help' for usage.\n" {
		t.Errorf("validate -o json: exit %d\n%s", code, errOut)
	}
}

func TestVersionFlag(t *testing.T) {
	code, out, _ := runCmd("--version")
	code2, out2, _ := runCmd("version")
	if code != 0 || code2 != 0 || out != out2 || !strings.HasPrefix(out, "provisiond "+version+" (commit ") {
		t.Errorf("--version = %d %q, version = %d %q; want the same line", code, out, code2, out2)
	}
}

// failingBMC is a BMC controller whose BMCs never answer.
type failingBMC struct{}

var errNoRoute = fmt.Errorf("%w: dial tcp 10.0.0.1:623: connect: no route to host", bmc.ErrUnreachable)

func (failingBMC) Status(context.Context, bmc.Endpoint) (string, error) { return "", errNoRoute }
func (failingBMC) Do(context.Context, bmc.Endpoint, bmc.Request) (bmc.Outcome, error) {
	return bmc.Outcome{}, errNoRoute
}

// syncBackend answers every sync with result.
type syncBackend struct {
	*boot.Core
	result boot.SyncStatus
}

func (b syncBackend) SyncProfiles(context.Context) (boot.SyncStatus, error) { return b.result, nil }

// The same outcome exits the same whatever the output format: a rejected
// commit fails the CI job with -o json too, a BMC that failed fails the
// reprovision.
func TestExitStatusSameInEveryFormat(t *testing.T) {
	creds := writeFile(t, "bmc", "admin:secret\n")
	bmcDaemon := newTestDaemon(t, func(c *boot.Config) {
		c.BMC = failingBMC{}
		dir := c.ProfilesDir
		doc := testProfiles + "---\nkind: Machine\nname: node2\nmatch: {mac: \"52:54:00:00:00:02\"}\nlabels: {rack: r2}\nprofile: p\n" +
			"bmc: {address: \"ipmi://10.0.0.1\", credentials: \"file:" + creds + "\"}\n"
		if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := bmcDaemon.core.Script(context.Background(), boot.Request{MAC: "52:54:00:00:00:02", IP: "10.0.0.6"}); err != nil {
		t.Fatal(err)
	}
	syncDaemon := func(result string, err error) *testDaemon {
		base := newTestDaemon(t)
		return serveBackend(t, base.core, syncBackend{base.core, boot.SyncStatus{Time: time.Now(), Result: result, Err: err}})
	}
	rejected := syncDaemon(boot.SyncRejected, profiles.Problems{{File: "all.yaml", Line: 10, Msg: `machine "node2" uses unknown profile "pp"`}})
	fetchFailed := syncDaemon(boot.SyncError, errors.New("dial tcp: lookup git.example.com: no such host"))
	updated := syncDaemon(boot.SyncUpdated, nil)
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "all.yaml"), []byte("kind: Machine\nname: a\nprofile: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		errOut string // in every format
	}{
		{"reprovision, BMC failed", bmcDaemon.args([]string{"machines", "reprovision", "node2"}), 1, "the state changed, but the BMC failed: BMC unreachable"},
		{"reprovision, no BMC", bmcDaemon.args([]string{"machines", "reprovision", "node1"}), 0, ""},
		{"power one, BMC failed", bmcDaemon.args([]string{"power", "on", "node2"}), 1, "1 of 1 machines failed"},
		{"power status, BMC failed", bmcDaemon.args([]string{"power", "status", "node2"}), 1, "1 of 1 machines failed"},
		{"power bulk, BMC failed", bmcDaemon.args([]string{"power", "cycle", "-l", "rack=r2"}), 1, "1 of 1 machines failed"},
		{"sync rejected", rejected.args([]string{"profiles", "sync"}), 1, "the commit does not validate"},
		{"sync fetch failed", fetchFailed.args([]string{"profiles", "sync"}), 1, "the fetch failed"},
		{"sync updated", updated.args([]string{"profiles", "sync"}), 0, ""},
		{"validate problems", []string{"validate", broken}, 1, "problem(s) in"},
		{"validate clean", []string{"validate", "../../examples"}, 0, ""},
		{"explain", []string{"explain", "../../examples", "--mac", "52:54:00:00:00:01"}, 0, ""},
		{"list", bmcDaemon.args([]string{"machines", "list"}), 0, ""},
	} {
		for _, format := range []string{"table", "json"} {
			t.Run(tc.name+" "+format, func(t *testing.T) {
				code, out, errOut := runCmd(append(slices.Clone(tc.args), "-o", format)...)
				if code != tc.code || !strings.Contains(errOut, tc.errOut) {
					t.Errorf("exit %d, stderr %q; want %d and %q\nstdout:\n%s", code, errOut, tc.code, tc.errOut, out)
				}
				if format == "json" && !json.Valid([]byte(out)) {
					t.Errorf("-o json printed no JSON:\n%s", out)
				}
			})
		}
	}

	// -o json is the API's answer: one machine's result, or the bulk's.
	_, out, _ := runCmd(bmcDaemon.args([]string{"power", "on", "node2", "-o", "json"})...)
	if v := decodeJSON[struct {
		ID    string
		OK    bool
		Error string
	}](t, out); v.ID != "node2" || v.OK || !strings.Contains(v.Error, "BMC unreachable") {
		t.Errorf("power on -o json = %+v", v)
	}
	_, out, _ = runCmd(bmcDaemon.args([]string{"power", "on", "-l", "rack=r2", "-o", "json"})...)
	if v := decodeJSON[struct {
		Results []struct{ OK bool }
		Failed  int
	}](t, out); len(v.Results) != 1 || v.Results[0].OK || v.Failed != 1 {
		t.Errorf("power on -l -o json = %+v", v)
	}
}

// What the API tells an HTTP client to send, the CLI says as a command.
func TestNoBMCNamesTheCommand(t *testing.T) {
	d := newTestDaemon(t)
	for _, args := range [][]string{{"power", "on", "node1"}, {"power", "on", "-l", "rack=r1"}} {
		code, out, errOut := runCmd(d.args(args)...)
		if code != 1 || !strings.Contains(out, "set one with provisiond machines bmc ID --address URL") || strings.Contains(out, "PUT /api") ||
			!strings.Contains(errOut, "1 of 1 machines failed") {
			t.Errorf("%q on a machine without a BMC: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	code, out, _ := runCmd("validate", "../../examples", "-o", "json")
	v := decodeJSON[validation](t, out)
	if code != 0 || !v.OK || v.Profiles == 0 || len(v.Problems) != 0 || v.Dir != "../../examples" {
		t.Errorf("validate examples -o json = %d %+v", code, v)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte("kind: Machine\nname: a\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd("validate", dir, "-o", "json")
	v = decodeJSON[validation](t, out)
	if code != 1 || v.OK || len(v.Problems) != 1 || v.Problems[0].File != filepath.Join(dir, "all.yaml") || v.Problems[0].Line != 1 {
		t.Errorf("validate broken -o json = %d %+v", code, v)
	}
}

func TestExplain(t *testing.T) {
	code, out, errOut := runCmd("explain", "../../examples", "--mac", "52-54-00-00-00-02", "-o", "json")
	e := decodeJSON[explanation](t, out)
	if code != 0 || e.Machine == nil || e.Machine.Name != "node2" || e.Profile.Name != "fcos-live" || e.Config == nil ||
		e.Config.Kind != "butane" || !strings.HasPrefix(e.Script, "#!ipxe") {
		t.Errorf("explain -o json = %d %+v\n%s", code, e, errOut)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad mac", []string{"--mac", "52:54:00:00:00"}, `provisiond explain: --mac "52:54:00:00:00" is not a MAC address; want six hex pairs such as 52:54:00:00:00:01`},
		{"bad uuid", []string{"--uuid", "nope"}, `--uuid "nope" is not an SMBIOS UUID`},
		{"placeholder uuid", []string{"--uuid", "00000000-0000-0000-0000-000000000000"}, "is a placeholder many boards share, which identifies no machine; give --mac\n"},
		{"bad arch", []string{"--mac", "52:54:00:00:00:01", "--arch", "x86 64"}, `--arch "x86 64": want iPXE's ${buildarch}`},
		{"no identity", nil, "give --mac and/or --uuid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(append([]string{"explain", "../../examples"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "bad request") ||
				(tc.args != nil && strings.Contains(errOut, "give --mac and/or --uuid")) {
				t.Errorf("exit %d\n%s\nwant 2 and %q, in the CLI's words", code, errOut, tc.want)
			}
		})
	}
}

func TestProfilesList(t *testing.T) {
	var dir string
	d := newTestDaemon(t, func(c *boot.Config) { dir = c.ProfilesDir })
	list := []string{"profiles", "list"}
	runCases(t, d, []cliCase{
		{name: "table", args: d.args(list), out: []string{"NAME", "CONFIG", "KERNEL", "/assets/v1", "/assets/live", "machines: 1 in Git", "default:  live", "loaded:"},
			requests: func(t *testing.T, sent []*http.Request) {
				if len(sent) != 1 || sent[0].URL.Path != "/api/v1/profiles" {
					t.Errorf("requests = %v", sent)
				}
			}},
		{name: "json", args: d.args(list, "-o", "json"), check: func(t *testing.T, out string) {
			if v := decodeJSON[profilesAnswer](t, out); len(v.Profiles) != 2 || v.Default != "live" || v.Reload == nil || !v.Reload.OK {
				t.Errorf("profiles = %+v", v)
			}
		}},
	})
	// A reload that failed is news on stderr; the listing still exits 0.
	if err := os.WriteFile(filepath.Join(dir, "more.yaml"), []byte("kind: Machine\nname: x\nprofile: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.core.Reload(); err == nil {
		t.Fatal("the broken reload loaded")
	}
	for _, format := range []string{"table", "json"} {
		code, out, errOut := runCmd(d.args(list, "-o", format)...)
		if code != 0 || !strings.Contains(out, "/assets/v1") || !strings.Contains(errOut, "the last reload failed") || !strings.Contains(errOut, "more.yaml:") {
			t.Errorf("-o %s after a failed reload: exit %d\n%s\n%s", format, code, out, errOut)
		}
	}
}

// events --follow appends what happens after the listing, until stopped.
func TestFollowEvents(t *testing.T) {
	d := newTestDaemon(t)
	cl, err := (&clientFlags{server: d.url, tokenFile: d.tokenFile, host: testHost}).client()
	if err != nil {
		t.Fatal(err)
	}
	all, err := d.core.Events(context.Background(), store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan store.Event, 10)
	done := make(chan error, 1)
	q := url.Values{"machine": {"node1"}}
	go func() {
		done <- followEvents(ctx, cl, q, all[len(all)-1].Seq, 10*time.Millisecond,
			func(e store.Event, _ json.RawMessage) error { got <- e; return nil }, func(error) {})
	}()
	if _, _, err := d.core.Reprovision(context.Background(), strayMAC, "test", "not followed", false); err == nil {
		t.Log("the stray was reprovisioned")
	}
	if _, _, err := d.core.Reprovision(context.Background(), node1MAC, "test", "followed", false); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.MAC != node1MAC || !strings.Contains(e.Message, "followed") {
			t.Errorf("followed %+v; want node1's reprovision", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the new event was not followed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("followEvents after cancel = %v; want nil", err)
	}

	// -o json follows as one object per line.
	var b bytes.Buffer
	p := eventPrinter{w: &b, out: outputJSON}
	for _, e := range all[:2] {
		raw, _ := json.MarshalIndent(e, "", "  ")
		if err := p.print(e, raw); err != nil {
			t.Fatal(err)
		}
	}
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 2 || !json.Valid([]byte(lines[0])) {
		t.Errorf("json lines:\n%s", b.String())
	}
}

// The binary follows until Ctrl-C, and then exits 0.
func TestBinaryFollowsEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	d := newTestDaemon(t)
	var out, errOut testutil.Buffer
	cmd := exec.Command(testutil.Binary(t), d.args([]string{"events", "--follow"})...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if strings.Contains(out.String(), what) {
				return
			}
		}
		t.Fatalf("no %q in:\n%s\nstderr:\n%s", what, out.String(), errOut.String())
	}
	waitFor("served the boot script")
	if _, _, err := d.core.Reprovision(context.Background(), node1MAC, "test", "while following", false); err != nil {
		t.Fatal(err)
	}
	waitFor("while following")
	// Oldest first: what came before is above what came after.
	if s := out.String(); strings.Index(s, "served the boot script") > strings.Index(s, "while following") || strings.Count(s, "TIME") != 1 {
		t.Errorf("not oldest first under one header:\n%s", s)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("after Ctrl-C: %v; want exit 0\n%s", err, errOut.String())
	}
}

// Shell completion offers every command, verb and flag the help shows.
func TestCompletion(t *testing.T) {
	nodes := completionNodes(commandTable(), &cli{host: testHost})
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			code, script, errOut := runCmd("completion", shell)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, n := range nodes {
				if !strings.Contains(script, n.key) {
					t.Errorf("no %s in the script", n.key)
				}
				for _, f := range n.flags {
					if !strings.Contains(script, f.long) {
						t.Errorf("no --%s (of %s) in the script", f.long, n.key)
					}
				}
			}
			f := filepath.Join(t.TempDir(), "provisiond."+shell)
			if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			check := map[string][]string{"bash": {"bash", "-n", f}, "zsh": {"zsh", "-n", f}, "fish": {"fish", "--no-execute", f}}[shell]
			testutil.RequireTools(t, testutil.Tool{Command: shell, Package: shell})
			if out, err := exec.Command(check[0], check[1:]...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects the script: %v\n%s", check[0], err, out)
			}
		})
	}
}

// Each script, run in its shell: what it offers after a command line. An
// empty want is the shell's file completion (a path, or a flag's value).
func TestCompletionOffers(t *testing.T) {
	cases := []struct{ line, want string }{
		{"provisiond mach", "machines"},
		{"provisiond machines li", "list"},
		{"provisiond machines list --st", "--state"},
		{"provisiond events --fol", "--follow"},
		{"provisiond power c", "cycle"},
		{"provisiond completion ", "bash zsh fish"},
		{"provisiond validate ", ""},
		{"provisiond machines list --server ", ""},
		{"provisiond serve --profiles /srv --dhcp-i", "--dhcp-interface"},
	}
	// offers runs the script in the shell and returns what it offers for
	// the line, space-separated; FILES stands for file completion.
	shells := map[string]func(t *testing.T, script, line string) string{
		"bash": func(t *testing.T, script, line string) string {
			words := strings.Split(line, " ")
			for i, w := range words {
				words[i] = fmt.Sprintf("%q", w)
			}
			out := shellOutput(t, "bash", "-c", script+fmt.Sprintf("\nCOMP_WORDS=(%s); COMP_CWORD=%d; _provisiond; echo \"${COMPREPLY[*]}\"\n",
				strings.Join(words, " "), len(words)-1))
			if out == "" {
				return "FILES" // complete -o default: the shell's files
			}
			return out
		},
		"zsh": func(t *testing.T, script, line string) string {
			// The completion system's functions, stubbed: what the
			// script hands them is what zsh would offer.
			words := strings.Split(line, " ")
			for i, w := range words {
				words[i] = "'" + w + "'"
			}
			stubs := "compdef() { :; }\n_describe() { print -l -- \"${(@P)4}\" | cut -d: -f1 | tr '\\n' ' ' }\n_files() { print -n FILES }\n"
			return shellOutput(t, "zsh", "-c", stubs+script+fmt.Sprintf("\nwords=(%s); CURRENT=%d; PREFIX='%s'; _provisiond\n",
				strings.Join(words, " "), len(words), words[len(words)-1][1:len(words[len(words)-1])-1]))
		},
		"fish": func(t *testing.T, script, line string) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "FILES"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "provisiond.fish")
			if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("fish", "-c", fmt.Sprintf("cd %s; source %s; complete -C %q | cut -f1 | string join ' '; true", dir, f, line))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			return strings.TrimSpace(string(out))
		},
	}
	for shell, offers := range shells {
		t.Run(shell, func(t *testing.T) {
			testutil.RequireTools(t, testutil.Tool{Command: shell, Package: shell})
			_, script, _ := runCmd("completion", shell)
			for _, tc := range cases {
				got := strings.Fields(offers(t, script, tc.line))
				want := strings.Fields(tc.want)
				if len(want) == 0 {
					want = []string{"FILES"}
				}
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("%q: offers %q; want %q among them", tc.line, got, w)
					}
				}
				if shell == "bash" && !slices.Equal(got, want) {
					t.Errorf("%q: bash offers %q; want exactly %q", tc.line, got, want)
				}
			}
		})
	}
}

func shellOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestEnvWarnings(t *testing.T) {
	known := knownEnv(commandTable())
	got := envWarnings([]string{"PROVISIOND_HTTP_ADR=:8080", "PROVISIOND_SERVER=x", "PROVISIOND_REQUIRE_LAB=1", "HOME=/root", "PROVISIOND_NODE1_BMC=admin:pw"}, known)
	want := []string{
		"PROVISIOND_HTTP_ADR is not a setting of any provisiond command (did you mean PROVISIOND_HTTP_ADDR, i.e. --http-addr?); ignored",
		"PROVISIOND_NODE1_BMC is not a setting of any provisiond command; ignored",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%q\nwant:\n%q", got, want)
	}
	// On the command line: a warning, and the command runs.
	t.Setenv("PROVISIOND_TOKEN_FIEL", "/etc/provisiond/api-token")
	code, _, errOut := runCmd("version")
	if code != 0 || !strings.Contains(errOut, "provisiond: warning: PROVISIOND_TOKEN_FIEL is not a setting of any provisiond command (did you mean PROVISIOND_TOKEN_FILE, i.e. --token-file?)") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
	// serve logs it, as it logs everything.
	code, _, errOut = runCmd("serve", "--profiles", "/nonexistent", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, `level=WARN msg="environment variable ignored" detail="PROVISIOND_TOKEN_FIEL is not a setting`) {
		t.Errorf("serve: exit %d\n%s", code, errOut)
	}
	// serve, stopped by the mistake the typo made, says so too.
	t.Setenv("PROVISIOND_PROFILE", "/srv/provisiond/profiles")
	code, _, errOut = runCmd("serve")
	if code != 2 || !strings.Contains(errOut, "PROVISIOND_PROFILE is not a setting of any provisiond command (did you mean PROVISIOND_PROFILES, i.e. --profiles?)") ||
		!strings.Contains(errOut, "--profiles DIR or --profiles-git URL is required") {
		t.Errorf("serve with PROVISIOND_PROFILE: exit %d\n%s", code, errOut)
	}
}

func TestServeFlagMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string // PROVISIOND_BMC_TIMEOUT
		args []string
		want string
		not  string
	}{
		{"duration from env without a unit", "30", nil, "PROVISIOND_BMC_TIMEOUT=30: want a duration with a unit, such as 30s", ""},
		{"duration flag without a unit", "", []string{"--bmc-timeout", "30"}, `--bmc-timeout "30": want a duration with a unit, such as 30s`, ""},
		{"not a number", "", []string{"--bmc-parallel", "many"}, `--bmc-parallel "many": want a whole number`, ""},
		{"no TFTP transfers", "", []string{"--tftp-max-transfers", "0"}, "--tftp-max-transfers 0: want a positive count", ""},
		{"negative TFTP per client", "", []string{"--tftp-max-per-client", "-1"}, "--tftp-max-per-client -1: want a positive count", ""},
		{"no such interface", "", []string{"--dhcp-interface", "nosuch0"}, `--dhcp-interface "nosuch0": no such network interface`, "advertise-url"},
		{"unknown flag", "", []string{"--profile", "x"}, "unknown flag --profile; did you mean --profiles?", ""},
		{"unknown DHCP mode", "", []string{"--dhcp-mode", "full"}, `--dhcp-mode "full": dhcp mode "full": want proxy or authoritative`, ""},
		{"authoritative without an interface", "", []string{"--dhcp-mode", "authoritative"}, "--dhcp-mode authoritative needs --dhcp-interface", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("PROVISIOND_BMC_TIMEOUT", tc.env)
			}
			_, err := parseServe(append([]string{"--profiles", "x"}, tc.args...))
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) || (tc.not != "" && strings.Contains(err.Error(), tc.not)) {
				t.Errorf("parseServe = %v; want a usage error with %q", err, tc.want)
			}
		})
	}
}

// serve checks what it is given before it writes anything: a mistyped
// --profiles leaves no data dir, token or key behind.
func TestServeChecksBeforeWriting(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	code, _, errOut := runCmd("serve", "--profiles", "/nonexistent/profiles", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "--profiles /nonexistent/profiles: no such directory") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data dir was created: %v", err)
	}
}

// The log says what happened: a first load that fails has no good set to
// keep serving, and a stop is logged when asked for and when done.
func TestServeLogs(t *testing.T) {
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "all.yaml"), []byte("kind: Machine\nname: a\nprofile: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServe([]string{"--profiles", broken, "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	if err := serve(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil))); err == nil {
		t.Fatal("serve started with profiles that do not validate")
	}
	if s := logs.String(); !strings.Contains(s, "profiles failed to load; nothing to serve") || strings.Contains(s, "last good set") {
		t.Errorf("first load failure logged as:\n%s", s)
	}

	profilesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(profilesDir, "all.yaml"), []byte(testProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(t, t.TempDir(), "--profiles", profilesDir)
	if err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	s := d.logs.String()
	if i, j := strings.Index(s, `msg="provisiond stopping"`), strings.Index(s, `msg="provisiond stopped"`); i < 0 || j < i {
		t.Errorf("stop not logged, or not in order:\n%s", s)
	}
}

// Without --server and --token-file, the client finds the daemon on this
// host: the systemd unit's settings, else ./data as make run leaves it.
func TestClientFindsTheDaemon(t *testing.T) {
	d := newTestDaemon(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(d.url, "http://127.0.0.1"), ":")
	dir := t.TempDir()
	host := hostPaths{envFile: filepath.Join(dir, "provisiond.env"), dataDir: filepath.Join(dir, "lib")}
	if err := os.WriteFile(host.envFile, []byte("# the unit's settings\nPROVISIOND_HTTP_ADDR=:"+port+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(host.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	token := readFile(t, d.tokenFile)
	if err := os.WriteFile(filepath.Join(host.dataDir, "api-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runOn(host, "machines", "list"); code != 0 || !strings.Contains(out, node1MAC) {
		t.Errorf("with the unit's data dir: exit %d\n%s%s", code, out, errOut)
	}

	// The unit's --api-token-file comes first.
	other := writeFile(t, "token", "not-the-token-0123456789\n")
	if err := os.WriteFile(host.envFile, []byte("PROVISIOND_HTTP_ADDR=:"+port+"\nPROVISIOND_API_TOKEN_FILE=\""+other+"\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runOn(host, "machines", "list"); code != 1 || !strings.Contains(errOut, "check that --token-file "+other) {
		t.Errorf("with the unit's --api-token-file: exit %d\n%s", code, errOut)
	}

	// Nothing installed: ./data/api-token, as make run leaves it.
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "data", "api-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	if code, out, errOut := runOn(testHost, "machines", "list", "--server", d.url); code != 0 || !strings.Contains(out, node1MAC) {
		t.Errorf("with ./data: exit %d\n%s%s", code, out, errOut)
	}

	// No token anywhere: every place looked at, and the flag.
	t.Chdir(t.TempDir())
	code, _, errOut := runOn(testHost, "machines", "list", "--server", d.url)
	if code != 1 || !strings.Contains(errOut, "no API token found: read token file /nonexistent/api-token: no such file or directory; "+
		"read token file ./data/api-token: no such file or directory; pass --token-file") {
		t.Errorf("without a token: exit %d\n%s", code, errOut)
	}
}

func TestAssetsFetchOffline(t *testing.T) {
	down := "http://" + testutil.FreeAddr(t)
	for _, name := range []string{"flatcar", "fcos", "talos"} {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := runCmd("assets", "fetch", name, "--version", "1.2.3", "--dest", t.TempDir(), "--"+name+"-base-url", down)
			if code != 1 || !strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, "the download failed") ||
				!strings.Contains(errOut, "point --"+name+"-base-url at a mirror") || strings.Contains(errOut, "not verified") {
				t.Errorf("exit %d\n%s\nwant 1, the network error, and the mirror flag", code, errOut)
			}
		})
	}
}
