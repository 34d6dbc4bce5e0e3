package web_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
)

// node4 names the linux profile but never booted.
const node4 = `---
kind: Machine
name: node4
match: {mac: "52:54:00:00:00:04"}
profile: linux
metadata: {hostname: node4.lab}
`

// The profiles page: each profile with the Machines naming it and the
// machines that booted it, the live commit when Git is on, and the last
// reload's problems by file:line while the last good set keeps serving.
func TestProfilesPage(t *testing.T) {
	f := startFleet(t, node4)
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	f.install(t, node1MAC)
	o := newOperator(t, f.url)
	o.signIn()
	row := func(page, profile string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<tr data-profile="` + profile + `">.*?</tr>`).FindString(page)
		if m == "" {
			t.Fatalf("no row for profile %s:\n%s", profile, page)
		}
		return m
	}

	_, page := o.do("GET", "/ui/profiles", nil)
	linux := row(page, "linux")
	for _, want := range []string{`<a href="/ui/machines/node1">node1</a>`, `node4 <span class="hint">(not booted yet)</span>`,
		`<a href="/?profile=linux">1 machine</a>`, `<span class="tag">boot-once</span>`, "template"} {
		if !strings.Contains(linux, want) {
			t.Errorf("the linux row lacks %q:\n%s", want, linux)
		}
	}
	if d := row(page, "discovery"); !strings.Contains(d, `<span class="tag">Default</span>`) || !strings.Contains(d, `<a href="/?profile=discovery">1 machine</a>`) {
		t.Errorf("the discovery row does not show the Default and the stray machine:\n%s", d)
	}
	if w := row(page, "wipe"); !strings.Contains(w, "wipe profile") {
		t.Errorf("the wipe row does not say it is the wipe profile:\n%s", w)
	}
	if !strings.Contains(page, "the directory <code>"+f.dir+"</code>") || strings.Contains(page, "Live commit") {
		t.Error("a directory's profiles page does not name the directory, or names a commit")
	}
	// The machines table lists a profile's machines.
	_, table := o.do("GET", "/?profile=linux", nil)
	if !strings.Contains(table, `data-mac="`+node1MAC+`"`) || strings.Contains(table, `data-mac="`+strayMAC+`"`) || !strings.Contains(table, `<option value="linux" selected>`) {
		t.Errorf("/?profile=linux does not list node1 alone")
	}

	// A failed reload: its problems, by file:line, and the last good set.
	writeFile(t, filepath.Join(f.dir, "broken.yaml"), "kind: Machine\nname: broken\nprofile: nosuch\nmatch: {mac: \"52:54:00:00:00:09\"}\n")
	if err := f.core.Reload(); err == nil {
		t.Fatal("a Machine naming no Profile loaded")
	}
	_, page = o.do("GET", "/ui/profiles", nil)
	for _, want := range []string{"Problems of the last reload", "<li><code>broken.yaml:1: ", "The last good set below keeps serving", `<tr data-profile="linux">`} {
		if !strings.Contains(page, want) {
			t.Errorf("after a failed reload the profiles page lacks %q", want)
		}
	}

	// From Git: the remote, the live commit, the last sync and the last
	// rejected commit with its problems.
	good := &boot.Revision{Commit: strings.Repeat("a", 40), Short: "aaaaaaa", Subject: "add rack r1", Author: "Ada", Time: time.Now()}
	rejected := &boot.Revision{Commit: strings.Repeat("b", 40), Short: "bbbbbbb", Subject: "typo", Author: "Bob"}
	rerr := f.core.LoadRevision(f.dir, rejected) // it holds broken.yaml
	if rerr == nil {
		t.Fatal("a commit with broken.yaml loaded")
	}
	goodDir := t.TempDir()
	writeFile(t, filepath.Join(goodDir, "p.yaml"), "kind: Profile\nname: wipe\nboot: {kernel: /assets/vmlinuz}\n")
	if err := f.core.LoadRevision(goodDir, good); err != nil {
		t.Fatal(err)
	}
	f.core.RecordSync(t.Context(), boot.SyncStatus{Time: time.Now(), Result: boot.SyncRejected, Remote: "https://git.example/fleet.git",
		Ref: "refs/heads/main", Fetched: rejected, Live: good, Err: rerr})
	_, page = o.do("GET", "/ui/profiles", nil)
	for _, want := range []string{"Git: <code>https://git.example/fleet.git</code>, <code>refs/heads/main</code>", `<code title="` + good.Commit + `">aaaaaaa</code> “add rack r1” by Ada`,
		"Last sync</dt><dd>rejected", "Last rejected commit", `<code title="` + rejected.Commit + `">bbbbbbb</code> “typo” by Bob`, "<li><code>broken.yaml:1: "} {
		if !strings.Contains(page, want) {
			t.Errorf("with Git the profiles page lacks %q", want)
		}
	}
	if strings.Contains(page, "Problems of the last reload") {
		t.Error("the last reload succeeded, but the page shows its problems")
	}
}
