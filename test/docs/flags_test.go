package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/testutil"
)

// otherTools are the --flags the docs' prose gives other programs.
var otherTools = map[string]string{
	"ff-only":  "git pull --ff-only",
	"name":     "iPXE's initrd --name",
	"network":  "docker run --network host",
	"tftp-max": "the README's --tftp-max-* (both TFTP caps)",
}

var (
	// "  -name type" (Go's flag package) or "  -l, --label key=value" and
	// "      --name VALUE"; deeper indentation is a description going on.
	helpFlag      = regexp.MustCompile(`(?m)^ {2,6}(?:-([a-z0-9]), )?--?([a-z][a-z0-9-]*)`)
	helpCommand   = regexp.MustCompile(`(?m)^  ([a-z]+)\s{2,}\S`)
	helpActions   = regexp.MustCompile(`(?m)^actions: (.*)$`)
	helpVerb      = regexp.MustCompile(`^[a-z]+$`) // a usage line's first word, when it is a verb
	proseFlag     = regexp.MustCompile("(?:^|[\\s`(\\[/])--([a-z][a-z0-9-]*[a-z0-9])")
	envName       = regexp.MustCompile(`PROVISIOND_[A-Z][A-Z0-9_]*[A-Z0-9]`)
	envLine       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	envAssign     = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`) // an environment file's line, not a log's key=value
	inlineComment = regexp.MustCompile(`\s#`)
)

// commandFlags asks the binary for each command's (and verb's) flags.
func commandFlags(t *testing.T, bin string) map[string]map[string]bool {
	t.Helper()
	help := func(args ...string) string {
		out, _ := exec.Command(bin, append(args, "-h")...).CombinedOutput() // -h exits 0 or 2
		return string(out)
	}
	top := help()
	i := strings.Index(strings.ToLower(top), "commands:")
	if i < 0 {
		t.Fatalf("provisiond -h lists no commands:\n%s", top)
	}
	flags := map[string]map[string]bool{}
	for _, c := range helpCommand.FindAllStringSubmatch(top[i:], -1) {
		cmd := c[1]
		flags[cmd] = map[string]bool{}
		h := help(cmd)
		texts := []string{h}
		var verbs []string
		for _, v := range helpCommand.FindAllStringSubmatch(h, -1) {
			verbs = append(verbs, v[1])
		}
		if a := helpActions.FindStringSubmatch(h); a != nil {
			for _, v := range strings.Split(a[1], ",") {
				verbs = append(verbs, strings.TrimSpace(v))
			}
		}
		if f := strings.Fields(strings.TrimPrefix(h, "usage: provisiond "+cmd+" ")); strings.HasPrefix(h, "usage: provisiond "+cmd+" ") && len(f) > 0 && helpVerb.MatchString(f[0]) {
			verbs = append(verbs, f[0])
		}
		for _, v := range verbs {
			texts = append(texts, help(cmd, v))
		}
		for _, text := range texts {
			for _, f := range helpFlag.FindAllStringSubmatch(text, -1) {
				flags[cmd][f[2]] = true
				if f[1] != "" {
					flags[cmd][f[1]] = true
				}
			}
		}
	}
	if len(flags["serve"]) < 10 {
		t.Fatalf("provisiond serve -h lists %d flags:\n%s", len(flags["serve"]), help("serve"))
	}
	return flags
}

// invocations returns, for each provisiond command the block runs or shows,
// the command and its arguments. A synopsis's indented lines continue the
// line before; in shell blocks, a backslash does, and a pipe ends it.
func invocations(f *fence, commands map[string]map[string]bool) [][]string {
	var lines []string
	for _, l := range strings.Split(f.body, "\n") {
		if n := len(lines); n > 0 && (f.command() && strings.HasSuffix(lines[n-1], "\\") || f.plain() && strings.HasPrefix(l, " ") && strings.TrimSpace(l) != "") {
			lines[n-1] = strings.TrimSuffix(lines[n-1], "\\") + " " + l
			continue
		}
		lines = append(lines, l)
	}
	var out [][]string
	for _, l := range lines {
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		words := strings.Fields(l)
		for i := 0; i+1 < len(words); i++ {
			if w := words[i]; w != "provisiond" && !strings.HasSuffix(w, "/provisiond") || commands[words[i+1]] == nil {
				continue
			}
			inv := []string{words[i+1]}
			for _, a := range words[i+2:] {
				if f.command() && slices.Contains([]string{"|", "||", "&&", ";", ">", "2>&1"}, a) {
					break
				}
				inv = append(inv, a)
			}
			out = append(out, inv)
		}
	}
	return out
}

// TestDocFlags checks the docs' flags against the binary: every flag given
// to a provisiond command in a block (run or not, synopses included) is one
// of that command's; every --flag in the prose is some command's or a listed
// other tool's; every PROVISIOND_* variable is a flag's; every serve flag is
// in the README's command line synopsis; and env files carry no inline
// comments (systemd's EnvironmentFile= keeps them in the value).
func TestDocFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	commands := commandFlags(t, testutil.Binary(t))
	all := map[string]bool{}
	for _, fs := range commands {
		for f := range fs {
			all[f] = true
		}
	}
	envFiles := []string{filepath.Join(repoRoot, "examples", "systemd", "provisiond.env")}
	for _, path := range append(runnableDocs(t), envFiles...) {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range envName.FindAllString(string(text), -1) {
			if flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v, "PROVISIOND_"), "_", "-")); !all[flag] {
				t.Errorf("%s: %s: no provisiond command has a --%s flag", path, v, flag)
			}
		}
		var envBlocks []string
		if slices.Contains(envFiles, path) {
			envBlocks = append(envBlocks, string(text))
		}
		if strings.HasSuffix(path, ".md") {
			m, err := parseMarkdown(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range m.fences() {
				if f.lang == "dotenv" || f.command() && envFile(f.body) {
					envBlocks = append(envBlocks, f.body)
				}
				for _, inv := range invocations(f, commands) {
					for _, a := range inv[1:] {
						a = strings.TrimLeft(a, "[(")
						if !strings.HasPrefix(a, "-") {
							continue
						}
						name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
						name = strings.TrimRight(name, "])")
						if name != "" && !commands[inv[0]][name] {
							t.Errorf("%s:%d: provisiond %s has no flag %s (%s)", path, f.line, inv[0], a, strings.Join(inv, " "))
						}
					}
				}
			}
			for _, l := range m.prose {
				for _, mm := range proseFlag.FindAllStringSubmatch(l, -1) {
					if !all[mm[1]] && otherTools[mm[1]] == "" {
						t.Errorf("%s: --%s is no provisiond flag (another tool's? list it in otherTools): %s", path, mm[1], strings.TrimSpace(l))
					}
				}
			}
			if filepath.Base(path) == "README.md" {
				checkSynopsis(t, path, m, commands["serve"])
			}
		}
		for _, block := range envBlocks {
			for _, l := range strings.Split(block, "\n") {
				if l = strings.TrimSpace(l); envLine.MatchString(l) && inlineComment.MatchString(l) {
					t.Errorf("%s: %q: systemd's EnvironmentFile= keeps an inline comment in the value; put it on a line of its own", path, l)
				}
			}
		}
	}
}

// envFile reports whether a shell block's body is nothing but VAR=value
// lines (blank and comment lines aside): an environment file shown as shell.
func envFile(body string) bool {
	vars := 0
	for _, l := range strings.Split(body, "\n") {
		switch l = strings.TrimSpace(l); {
		case l == "", strings.HasPrefix(l, "#"):
		case envAssign.MatchString(l):
			vars++
		default:
			return false
		}
	}
	return vars > 0
}

// checkSynopsis wants every serve flag in the README's command line synopsis.
func checkSynopsis(t *testing.T, path string, m *markdown, serve map[string]bool) {
	for _, f := range m.fences() {
		if !f.plain() || !strings.HasPrefix(f.body, "provisiond serve ") {
			continue
		}
		for flag := range serve {
			if flag == "h" || flag == "help" {
				continue
			}
			if !regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `([^a-z0-9-]|$)`).MatchString(f.body) {
				t.Errorf("%s:%d: the command line synopsis lacks serve's --%s", path, f.line, flag)
			}
		}
		return
	}
	t.Errorf("%s: no command line synopsis (a plain block starting with \"provisiond serve \")", path)
}

// TestEnvFile: an env file shown as a shell block is found, a log sample is not.
func TestEnvFile(t *testing.T) {
	for body, want := range map[string]bool{
		"PROVISIOND_STORE=etcd\n# the cluster\nPROVISIOND_ETCD_PREFIX=/provisiond/dc1\n": true,
		"export PROVISIOND_STORE=etcd\n":                                                 false,
		`msg="dhcp offer" mac=1c:69:7a:0a:bc:de   # a log` + "\n":                        false,
		"# nothing set\n": false,
	} {
		if got := envFile(body); got != want {
			t.Errorf("envFile(%q) = %v, want %v", body, got, want)
		}
	}
}
