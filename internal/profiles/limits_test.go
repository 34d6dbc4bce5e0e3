package profiles

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"
)

// templateTree is a profiles directory whose one profile, used by machines
// n1..nN, renders tmpl as a plain template.
func templateTree(t *testing.T, tmpl string, machines int) string {
	t.Helper()
	var m strings.Builder
	for i := 1; i <= machines; i++ {
		fmt.Fprintf(&m, "---\nkind: Machine\nname: n%d\nmatch: {mac: \"52:54:00:00:%02x:%02x\"}\nprofile: p\nmetadata: {disks: [sda, sdb], n: %d}\n", i, i>>8, i&0xff, i)
	}
	return writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {template: t.txt}\n",
		"m.yaml": m.String(),
		"t.txt":  tmpl,
	})
}

// TestRenderLimits loads templates that would hang or exhaust memory without
// the limits: each must fail validation quickly, once, at the template line
// that passed a limit.
func TestRenderLimits(t *testing.T) {
	for _, tc := range []struct {
		name, tmpl string
		want       string // the problem, as "file:line: start of message"
	}{
		{"range bomb", "a\n{{range 9223372036854775807}}{{end}}\n", "t.txt:2: template passed the"},
		{"nested ranges", "{{range 100000}}\n{{range 100000}}\n{{range 100000}}{{end}}{{end}}{{end}}\n", "t.txt:3: template passed the"},
		{"range in else", "{{range slice .metadata.disks 0 0}}{{else}}\n{{range 9223372036854775807}}{{end}}{{end}}\n", "t.txt:2: template passed the"},
		{"template calls", templateCallBomb(60), "t.txt:2: template passed the"},
		{"printf width", "x\n{{printf \"%9999999d\" 1}}\n", "t.txt:2: printf: width or precision 9999999 passes the limit of 4096"},
		{"printf precision", "{{printf \"%.9999999f\" 1.0}}", "t.txt:1: printf: width or precision 9999999 passes the limit of 4096"},
		{"printf wide list", "{{printf \"%40v\" .metadata.disks}}", "t.txt:1: printf: a width or precision on a list or map is refused"},
		{"printf loop", "{{range 100000}}\n{{printf \"%4000d\" 1}}{{end}}", "t.txt:2: printf: the strings built by printf, print, println, html, js, urlquery, quote, toJson and join passed the limit of 4 MiB"},
		{"printf doubling", "{{$x := \"ab\"}}{{range 64}}\n{{$x = printf \"%s%s\" $x $x}}{{end}}", "t.txt:2: printf: the strings built by printf"},
		{"printf repeated operand", `{{$f := "%[1]s"}}{{range 16}}{{$f = print $f $f}}{{end}}{{$s := printf "%1000d" 0}}` + "\n" + `{{printf $f $s}}`, "t.txt:2: printf: the strings built by printf"},
		{"print many operands", `{{$s := printf "%4000d" 0}}{{range 10}}{{$s = print $s $s}}{{end}}`, "t.txt:1: print: the strings built by printf"},
		// Each escaping doubles the backslashes.
		{"js growth", "{{$x := \"\\\\\"}}{{range 40}}{{$x = js $x}}{{end}}", "t.txt:1: js: the strings built by printf"},
		{"output", "{{range 1000}}" + strings.Repeat("0123456789abcdef", 512) + "{{end}}", "t.txt: template output passed the limit of 4 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := Load(templateTree(t, tc.tmpl, 50), LoadOptions{})
			took := time.Since(start)
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load = %v; want Problems", err)
			}
			// Once, although 50 machines use the template.
			if len(probs) != 1 || !strings.HasPrefix(probs[0].String(), tc.want) || !strings.Contains(probs[0].Msg, "(rendering machine ") {
				t.Errorf("problems:\n%v\nwant one starting %q", probs, tc.want)
			}
			if took > renderTimeout+2*time.Second {
				t.Errorf("Load took %v", took)
			}
			t.Logf("rejected in %v: %v", took.Round(time.Millisecond), probs[0])
		})
	}
}

// templateCallBomb defines n templates each calling the next twice: 2^n calls
// without a single range.
func templateCallBomb(n int) string {
	var b strings.Builder
	b.WriteString("{{template \"t0\"}}\n")
	for i := range n {
		fmt.Fprintf(&b, "{{define \"t%d\"}}{{template \"t%d\"}}{{template \"t%d\"}}{{end}}", i, i+1, i+1)
	}
	fmt.Fprintf(&b, "{{define \"t%d\"}}{{end}}", n)
	return b.String()
}

// A machine's config that ranges over its metadata loads as before.
func TestRangeOverListRenders(t *testing.T) {
	set, err := Load(templateTree(t, "{{range $i, $d := .metadata.disks}}{{$i}}=/dev/{{$d}} {{end}}n{{.metadata.n}}", 3), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q := Query{MAC: "52:54:00:00:00:02"}
	res, err := set.Match(q)
	if err != nil {
		t.Fatal(err)
	}
	out, err := set.Config(res, q)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Body) != "0=/dev/sda 1=/dev/sdb n2" {
		t.Errorf("Config = %q", out.Body)
	}
}

// TestRenderLimitsKeepOutput renders legitimate templates, within the limits,
// exactly as text/template's own builtins do.
func TestRenderLimitsKeepOutput(t *testing.T) {
	data := map[string]any{"metadata": map[string]any{"disks": []any{"sda", "sdb"}, "sizes": map[string]any{"sda": 100, "sdb": 2.5}, "n": 7, "none": nil}}
	for _, tmpl := range []string{
		"{{range $i, $d := .metadata.disks}}disk {{$i}}: /dev/{{$d}}\n{{end}}",
		"{{range $k, $v := .metadata.sizes}}{{$k}}={{$v}} {{else}}none{{end}}",
		"{{range 3}}{{range $.metadata.disks}}{{.}}{{end}}{{end}}",
		`{{define "disk"}}[{{.}}]{{end}}{{range .metadata.disks}}{{template "disk" .}}{{end}}`,
		`{{printf "%05.1f|%-6s|%x|%q|%v|%+d|%#v|%%|%.2s|%6.2f|%c|%U" 3.14159 "ab" "hi" "q\n" .metadata.disks .metadata.n .metadata.sizes "xyz" 2.5 65 0x1F600}}`,
		`{{printf "%d %s" .metadata.n}} {{printf "%!"}} {{printf "%[2]s-%[1]s" "a" "b"}} {{printf "%v" .metadata.none}}`,
		`{{print "a" "b" 1 2 .metadata.disks "c"}}|{{println "a" 1 .metadata.n}}|{{print}}`,
		`{{html "<a href=\"x\">&</a>"}} {{js "it's \"q\"" 1}} {{urlquery "a b&c" .metadata.n}} {{.metadata.disks | print | html}}`,
	} {
		want := new(strings.Builder)
		parsed := template.Must(template.New("t").Option("missingkey=error").Parse(tmpl))
		if err := parsed.Execute(want, data); err != nil {
			t.Fatalf("%s: %v", tmpl, err)
		}
		limited := newConfigTemplate(template.Must(template.New("t").Option("missingkey=error").Parse(tmpl)))
		got, err := limited.execute(context.Background(), data)
		if err != nil {
			t.Errorf("%s: %v", tmpl, err)
		} else if string(got) != want.String() {
			t.Errorf("%s:\n got %q\nwant %q", tmpl, got, want)
		}
	}
}

func TestPrintfStarRefused(t *testing.T) {
	_, err := Load(templateTree(t, "{{printf \"%*d\" 5 1}}", 1), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `m.yaml:2: machine "n1": t.txt:1: template: `) || !strings.Contains(err.Error(), "(*) is not supported") {
		t.Errorf("Load = %v; want the star refused at the machine", err)
	}
	for format, want := range map[string]bool{"%*d": true, "%-.*f": true, "%[2]*d": true, "%d*": false, "*%s*": false, "%%*": false, "100%": false} {
		if hasStar(format) != want {
			t.Errorf("hasStar(%q) = %v; want %v", format, !want, want)
		}
	}
}

// TestLoadCancelled cancels a load busy rendering: it returns the cause, not
// problems, at once, and pins nothing in the cache.
func TestLoadCancelled(t *testing.T) {
	// Each render is legitimate but slow (far below the limits), and there
	// are many: uncancelled, the load would take a minute.
	dir := templateTree(t, "{{range 100000}}{{end}}{{.metadata.n}}", 300)
	cache := NewCache()
	cause := errors.New("superseded")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	set, err := Load(dir, LoadOptions{Context: ctx, Cache: cache})
	took := time.Since(start)
	var probs Problems
	if set != nil || !errors.Is(err, cause) || errors.As(err, &probs) {
		t.Fatalf("Load = %v, %v; want the cancellation's cause", set, err)
	}
	if took > time.Second {
		t.Errorf("cancelled Load returned after %v", took)
	}
	// What it translated stays for the next load to use or drop.
	if n := len(cache.pinned); n != 0 {
		t.Errorf("a cancelled load pinned %d cache entries", n)
	}
	t.Logf("returned %v after the cancel", took-200*time.Millisecond)
}

// TestDefaultRenderLimited: a Default rendered on request stops at the limits too.
func TestDefaultRenderLimited(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {template: t.txt}\n---\nkind: Default\nprofile: p\n",
		"t.txt":  "{{if ne .machine.mac \"00:00:00:00:00:00\"}}{{range 9223372036854775807}}{{end}}{{end}}",
	})
	var lim *limitError
	if err := defaultConfigErr(t, dir); !errors.As(err, &lim) {
		t.Errorf("Config = %v; want a render limit", err)
	}
}
