package docs

import (
	"regexp"
	"strings"
	"testing"
)

// volatile values and the placeholder each becomes, in order: what differs
// between the doc's run and the test's without being drift.
var volatile = []struct {
	re *regexp.Regexp
	to string
}{
	{regexp.MustCompile(`(^|\s)time=\S+`), ""}, // slog's time=, which samples leave out
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`), "<uuid>"},
	{regexp.MustCompile(`\[[0-9a-fA-F:]*\](:\d+)?`), "<addr>"},
	{regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b`), "<addr>"},
	{regexp.MustCompile(`\b(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))+\b`), "<dur>"},
	{regexp.MustCompile(`\bversion=\S+`), "version=<version>"},
	{regexp.MustCompile(`\b[A-Z2-7]{26}\b`), "<token>"}, // a session token, base32
}

// hexRun is a commit hash or another long hex string.
var hexRun = regexp.MustCompile(`\b[0-9a-f]{7,64}\b`)

// annotation is a doc's comment on a sample line, after two spaces.
var annotation = regexp.MustCompile(`\s{2,}#\s.*$`)

// tokens normalises a line of output (or of a sample) into the tokens
// compared: volatile values replaced by placeholders, whitespace collapsed.
func tokens(line string) []string {
	for _, v := range volatile {
		line = v.re.ReplaceAllString(line, v.to)
	}
	line = hexRun.ReplaceAllStringFunc(line, func(s string) string {
		if strings.ContainsAny(s, "0123456789") {
			return "<hex>"
		}
		return s // a word such as "defaced"
	})
	return strings.Fields(line)
}

// matchTokens reports whether pattern occurs in tokens as a contiguous run,
// a "..." in pattern standing for any number of tokens.
func matchTokens(pattern, toks []string) bool {
	pattern = append(append([]string{"..."}, pattern...), "...")
	// memo[i][j]: pattern[i:] matches toks[j:] (0 unknown, 1 yes, 2 no).
	memo := make([][]byte, len(pattern)+1)
	for i := range memo {
		memo[i] = make([]byte, len(toks)+1)
	}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i == len(pattern) {
			return j == len(toks)
		}
		if memo[i][j] != 0 {
			return memo[i][j] == 1
		}
		ok := false
		if pattern[i] == "..." {
			ok = match(i+1, j) || j < len(toks) && match(i, j+1)
		} else {
			ok = j < len(toks) && pattern[i] == toks[j] && match(i+1, j+1)
		}
		memo[i][j] = 2
		if ok {
			memo[i][j] = 1
		}
		return ok
	}
	return match(0, 0)
}

// unmatched returns the lines of sample that no line of output matches,
// leaving out the lines containing one of unchecked.
func unmatched(sample, output string, unchecked []string) []string {
	var outs [][]string
	for _, l := range strings.Split(output, "\n") {
		outs = append(outs, tokens(l))
	}
	var missing []string
next:
	for _, l := range strings.Split(sample, "\n") {
		for _, u := range unchecked {
			if strings.Contains(l, u) {
				continue next
			}
		}
		p := tokens(annotation.ReplaceAllString(l, ""))
		if len(p) == 0 || len(p) == 1 && p[0] == "..." {
			continue
		}
		for _, o := range outs {
			if matchTokens(p, o) {
				continue next
			}
		}
		missing = append(missing, l)
	}
	return missing
}

func TestSampleMatch(t *testing.T) {
	const out = `time=2026-12-04T21:56:45.060Z level=INFO msg="profiles loaded" dir=/srv/provisiond/profiles profiles=7 machines=1 warnings=0 duration=6.739521ms
time=2026-12-04T21:56:45.062Z level=INFO msg="provisiond starting" version=dev advertise_url=http://127.0.0.1:18080 profiles=/srv/provisiond/profiles
time=2026-12-04T21:56:45.067Z level=INFO msg="http listening" addr=127.0.0.1:18080
NAME  MAC                UUID                                  ARCH        IP         PROFILE          STATE      LAST-SEEN
nuc1  1c:69:7a:0a:bc:de  4c4c4544-0042-3510-8052-b4c04f4e3732  efi-x86_64  127.0.0.1  flatcar-install  installed  0s ago
set config-url http://127.0.0.1:18080/ignition?mac=1c-69-7a-0a-bc-de&token=U4SLGWXF6JECAVEIQHR5DWZ6M4
provisiond dev (commit 9a1c277f487daf541467aca22c69885ac768a61d, go1.26.8, linux/amd64)`
	for _, tc := range []struct {
		name, sample string
		ok           bool
	}{
		{"log line without time, durations differ", `level=INFO msg="profiles loaded" dir=/srv/provisiond/profiles profiles=7 machines=1`, true},
		{"log line with ...", `msg="provisiond starting" version=9a1c277 advertise_url=http://192.168.1.10:8080 ...`, true},
		{"IPv6 listener in the sample", `level=INFO msg="http listening" addr=[::]:8080`, true},
		{"a changed value", `msg="profiles loaded" dir=/srv/provisiond/profiles profiles=7 machines=3`, false},
		{"a renamed field", `msg="profiles loaded" directory=/srv/provisiond/profiles`, false},
		{"a missing field", `msg="profiles loaded" profiles=7`, false},
		{"table header, other widths", "NAME MAC   UUID  ARCH IP PROFILE STATE LAST-SEEN", true},
		{"table header with a stale column", "NAME MAC UUID ARCH IP PROFILE STATE SEEN", false},
		{"table row: uuid, address and age vary", "nuc1  1c:69:7a:0a:bc:de  4c4c4544-0051-3310-8047-c7c04f4b5a30  efi-x86_64  192.168.1.57  flatcar-install  installed  12s ago", true},
		{"table row: another arch", "nuc1  1c:69:7a:0a:bc:de  4c4c4544-0051-3310-8047-c7c04f4b5a30  x86_64  192.168.1.57  flatcar-install  installed  12s ago", false},
		{"config URL: server and token vary", "set config-url http://10.0.0.2:8080/ignition?mac=1c-69-7a-0a-bc-de&token=QNRNIQ2MMGP22XGUQV3SLU7QQS", true},
		{"config URL of another machine", "set config-url http://10.0.0.2:8080/ignition?mac=1c-69-7a-0a-bc-df&token=QNRNIQ2MMGP22XGUQV3SLU7QQS", false},
		{"annotation", `msg="http listening" addr=[::]:8080     # the HTTP listener`, true},
		{"hash", "provisiond dev (commit 0123456789abcdef0123456789abcdef01234567, go1.26.8, linux/amd64)", true},
		{"only dots", "...", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			missing := unmatched(tc.sample, out, nil)
			if ok := len(missing) == 0; ok != tc.ok {
				t.Errorf("sample %q matched = %v; want %v", tc.sample, ok, tc.ok)
			}
		})
	}
	if m := unmatched("msg=\"dhcp listening\" service=dhcp\nmsg=\"http listening\"", out, []string{`msg="dhcp listening"`}); len(m) != 0 {
		t.Errorf("unchecked line reported: %q", m)
	}
}
