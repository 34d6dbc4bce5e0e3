package web_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/chromedp"

	"github.com/provisiond/provisiond/internal/testutil"
)

// -screenshots DIR saves a PNG of each page there; `make screenshots` refreshes
// the ones under docs/.
var screenshots = flag.String("screenshots", "", "directory to save a screenshot of each dashboard page in")

// browser starts Debian's Chromium, headless, with a fresh profile and the
// flags that keep it off the network; it skips when there is none.
func browser(t testing.TB) context.Context {
	t.Helper()
	testutil.RequireTools(t, testutil.Tool{Command: "chromium", Package: "chromium"})
	path, _ := exec.LookPath("chromium")
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900))
	t.Cleanup(cancel)
	tab, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(tab, 2*time.Minute)
	t.Cleanup(cancel3)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The page as it was when the test failed, even past the deadline.
		sctx, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("failure screenshot: %v", err)
			return
		}
		p := filepath.Join(os.TempDir(), "provisiond-"+strings.ReplaceAll(t.Name(), "/", "-")+".png")
		if err := os.WriteFile(p, png, 0o644); err == nil {
			t.Logf("failure screenshot: %s", p)
		}
	})
	return ctx
}

func do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s: %v", what, time.Since(start)) }()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitText waits until the element's text contains want.
func waitText(t testing.TB, ctx context.Context, sel, want string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e !== null && e.textContent.includes(%q); })()`, sel, want)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {textContent: "(none)"}).textContent`, sel)))
		t.Fatalf("waiting for %q in %s: %v; it says %q", want, sel, err, strings.Join(strings.Fields(text), " "))
	}
}

func shoot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(*screenshots, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// An operator signs in, watches a machine appear and install, reprovisions
// it through the confirmation, and sees its state, power and events change
// without reloading.
func TestBrowserReprovision(t *testing.T) {
	f := startFleet(t, "")
	ctx := browser(t)

	do(t, ctx, "open the dashboard", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(`#token`))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(loc, "/ui/login") {
		t.Fatalf("signed out, / went to %s; want the sign-in page", loc)
	}
	checkAccessible(t, ctx, "sign-in")
	shoot(t, ctx, "login")

	do(t, ctx, "wrong token", chromedp.SendKeys(`#token`, "not-the-token"), chromedp.Submit(`#token`), chromedp.WaitVisible(`p.flash.bad`))
	waitText(t, ctx, `p.flash.bad`, "not the API token")
	do(t, ctx, "sign in", chromedp.SendKeys(`#token`, testToken), chromedp.SendKeys(`#name`, "alice"),
		chromedp.Submit(`#token`), chromedp.WaitVisible(`table.machines`))
	// node1 is declared in Git and never booted: listed as such, with Git's
	// labels, and its page says why it cannot be reprovisioned yet.
	waitText(t, ctx, `tr.declared[data-mac="`+node1MAC+`"]`, "declared")
	waitText(t, ctx, `tr.declared[data-mac="`+node1MAC+`"]`, "never seen")
	do(t, ctx, "open declared node1", chromedp.Click(`tr[data-mac="`+node1MAC+`"] a`), chromedp.WaitVisible(`#declared`))
	waitText(t, ctx, `#machine-state`, "declared")
	waitText(t, ctx, `#next-pending`, "never seen")
	waitText(t, ctx, `ul.blocked`, "power it on first")
	checkAccessible(t, ctx, "declared machine")
	do(t, ctx, "back to the table", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(`table.machines`))

	// A machine nobody listed PXE-boots, then node1 does: both appear live,
	// node1's record in place of its declared row.
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	waitText(t, ctx, `tr[data-mac="`+strayMAC+`"]`, "discovered")
	f.install(t, node1MAC)
	waitText(t, ctx, `tr[data-mac="`+node1MAC+`"]`, "installed")
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.machines tbody tr.declared").length`)); n != 0 {
		t.Fatalf("%d declared rows after node1 booted; want its record alone", n)
	}
	waitText(t, ctx, `tr[data-mac="`+node1MAC+`"]`, "node1")
	checkAccessible(t, ctx, "machines")
	shoot(t, ctx, "machines")

	// Filters: by state, then by label.
	do(t, ctx, "filter by state", chromedp.Navigate(f.url+"/?state=discovered"), chromedp.WaitVisible(`table.machines`))
	waitText(t, ctx, `p.summary`, "1 of 2 machines")
	do(t, ctx, "filter by label", chromedp.Navigate(f.url+"/?label=rack%3Dr1"), chromedp.WaitVisible(`table.machines`))
	waitText(t, ctx, `table.machines tbody`, "node1")
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.machines tbody tr").length`)); n != 1 {
		t.Fatalf("label filter rack=r1 shows %d rows; want 1", n)
	}
	// node1's agent reports its hardware: the table sums it up, and the
	// hardware filter, typed in and submitted, finds it by its CPU model.
	if _, err := f.core.ReportHardware(ctx, node1MAC, "", testHardware(), "", true); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, `tr[data-mac="`+node1MAC+`"] td.hw`, "1×2c, 1.5 GiB, 2 disks")
	do(t, ctx, "filter by hardware", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(`#f-hw`),
		chromedp.SendKeys(`#f-hw`, "epyc"), chromedp.Submit(`#f-hw`), chromedp.WaitVisible(`#f-hw[value="epyc"]`))
	waitText(t, ctx, `p.summary`, "1 of 2 machines")
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.machines tbody tr[data-mac='`+node1MAC+`']").length`)); n != 1 {
		t.Fatalf("hardware filter epyc shows %d rows of node1; want 1", n)
	}

	// node1's page: its state, events, and what it would boot: installed on
	// a boot-once profile, its disk.
	do(t, ctx, "open node1", chromedp.Click(`tr[data-mac="`+node1MAC+`"] a`), chromedp.WaitVisible(`#machine-state`))
	waitText(t, ctx, `#machine-state`, "installed")
	waitText(t, ctx, `ol.events`, "installed")
	waitText(t, ctx, `#next-boots`, "its disk")
	waitText(t, ctx, `pre.script`, "exit")
	waitText(t, ctx, `#explain`, "fleet.yaml")
	waitText(t, ctx, `#hardware`, "SN-0001")
	waitText(t, ctx, `#hardware table.disks`, "/dev/disk/by-id/virtio-disk-a")
	checkAccessible(t, ctx, "machine")

	// Reprovision, through its confirmation.
	do(t, ctx, "press reprovision", chromedp.Click(`a[href$="action=reprovision"]`), chromedp.WaitVisible(`#reason`))
	checkAccessible(t, ctx, "confirm")
	shoot(t, ctx, "confirm")
	boots := len(f.chassis.Boots())
	do(t, ctx, "confirm", chromedp.SendKeys(`#reason`, "new kernel"), chromedp.Submit(`#reason`), chromedp.WaitVisible(`p.flash`))
	waitText(t, ctx, `p.flash.ok`, "Reprovision requested")
	waitText(t, ctx, `#machine-state`, "provisioning")
	waitText(t, ctx, `ol.events`, "installed -> provisioning: new kernel")
	waitText(t, ctx, `ol.events`, "alice/web@127.0.0.1")
	waitText(t, ctx, `ol.events li.event-power`, "cycle")
	if got := f.chassis.Boots(); len(got) <= boots || got[len(got)-1].Device != "pxe" {
		t.Fatalf("the BMC's boots after reprovision: %+v; want one more, from pxe", got)
	}
	// Its next boot now installs its profile again.
	waitText(t, ctx, `#next-boots`, "profile linux")
	waitText(t, ctx, `pre.script`, "kernel "+f.url+"/assets/vmlinuz")
	shoot(t, ctx, "machine")

	// The machine was switched off behind provisiond's back: refreshing its
	// power state asks the BMC, with no confirmation (it changes nothing).
	waitText(t, ctx, `#machine-power`, "on")
	if err := f.chassis.SetPower(false); err != nil {
		t.Fatal(err)
	}
	// From a page without a flash, so that the one waited for is the answer's.
	do(t, ctx, "reload node1", chromedp.Reload(), chromedp.WaitVisible(`#action-status`))
	do(t, ctx, "refresh power", chromedp.Click(`#action-status`), chromedp.WaitVisible(`p.flash`))
	waitText(t, ctx, `p.flash.ok`, "The BMC says the machine is off")
	waitText(t, ctx, `#machine-power`, "off")

	// The machine boots again and installs: its page follows without a reload.
	f.install(t, node1MAC)
	waitText(t, ctx, `#machine-state`, "installed")

	// The event log, from the navigation: newest first, filtered by type
	// (the select submits itself), and live on its newest page.
	do(t, ctx, "open the events", chromedp.Click(`nav a[href="/ui/events"]`), chromedp.WaitVisible(`table.events-log`))
	waitText(t, ctx, `table.events-log tbody tr:first-child`, "installed")
	checkAccessible(t, ctx, "events")
	shoot(t, ctx, "events")
	// SetValue fires the select's change event, which submits its form; the
	// new page is the one whose form says power.
	do(t, ctx, "filter by type", chromedp.SetValue(`#f-type`, "power"), chromedp.WaitReady(`#f-type option[value="power"][selected]`))
	waitText(t, ctx, `p.summary`, "of type power")
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.events-log tbody tr:not(.event-power)").length`)); n != 0 {
		t.Fatalf("the power filter shows %d other events", n)
	}
	// The boot's timeline steps follow the script's event, so the live page
	// is watched for that type alone.
	do(t, ctx, "provisioning events", chromedp.Navigate(f.url+"/ui/events?type=provisioning"), chromedp.WaitVisible(`table.events-log`))
	f.get(t, "/ipxe?mac="+strayMAC+"&arch=x86_64")
	waitText(t, ctx, `table.events-log tbody tr:first-child`, "served the boot script of profile discovery")

	// The profiles, with the machines that use them.
	do(t, ctx, "open the profiles", chromedp.Click(`nav a[href="/ui/profiles"]`), chromedp.WaitVisible(`table.profiles`))
	waitText(t, ctx, `tr[data-profile="linux"]`, "node1")
	checkAccessible(t, ctx, "profiles")
	shoot(t, ctx, "profiles")

	// Phone width: nothing wider than the screen but the table's own scroller.
	do(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(`table.machines`))
	checkFits(t, ctx, "machines")
	shoot(t, ctx, "machines-phone")
	do(t, ctx, "phone machine page", chromedp.Navigate(f.url+"/ui/machines/"+node1MAC+"/confirm?action=reprovision"),
		chromedp.Submit(`#reason`), chromedp.WaitVisible(`#machine-state`))
	waitText(t, ctx, `pre.script`, "kernel "+f.url+"/assets/vmlinuz")
	checkFits(t, ctx, "machine")
	checkScriptShown(t, ctx)
	shoot(t, ctx, "machine-phone")
	for _, p := range []struct{ name, path, sel string }{
		{"events", "/ui/events", `table.events-log`},
		{"profiles", "/ui/profiles", `table.profiles`},
		{"confirm", "/ui/machines/" + node1MAC + "/confirm?action=wipe", `#reason`},
	} {
		do(t, ctx, "phone "+p.name+" page", chromedp.Navigate(f.url+p.path), chromedp.WaitVisible(p.sel))
		checkFits(t, ctx, p.name)
		shoot(t, ctx, p.name+"-phone")
	}
}

// checkScriptShown fails if a line of the explained iPXE script is cut off:
// wider than its box, which would hide the end of a long URL.
func checkScriptShown(t testing.TB, ctx context.Context) {
	t.Helper()
	w, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`(() => { const p = document.querySelector("pre.script"); return [p.scrollWidth, p.clientWidth]; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if w[0] > w[1] {
		t.Errorf("the iPXE script is %dpx wide in a %dpx box: its long lines are cut off", w[0], w[1])
	}
}

// checkFits fails if the page scrolls sideways at the current width.
func checkFits(t testing.TB, ctx context.Context, page string) {
	t.Helper()
	w, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
	if err != nil {
		t.Fatal(err)
	}
	if w[0] > w[1] {
		t.Errorf("%s page is %dpx wide in a %dpx window: it scrolls sideways", page, w[0], w[1])
	}
}

// checkAccessible reads the page as a screen reader does, through Chromium's
// accessibility tree: every control and link needs a name, the page needs a
// main landmark and one level-1 heading.
func checkAccessible(t testing.TB, ctx context.Context, page string) {
	t.Helper()
	tree, err := chromedp.Call(ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		t.Fatalf("%s: accessibility tree: %v", page, err)
	}
	named := map[string]bool{"button": true, "link": true, "textbox": true, "combobox": true, "searchbox": true, "region": true, "navigation": true}
	var mains, h1s int
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		role := strings.Trim(string(n.Role.Value), `"`)
		name := ""
		if n.Name != nil {
			name = strings.Trim(string(n.Name.Value), `"`)
		}
		if named[role] && strings.TrimSpace(name) == "" {
			t.Errorf("%s page: a %s has no accessible name", page, role)
		}
		switch role {
		case "main":
			mains++
		case "heading":
			for _, p := range n.Properties {
				if p.Name == "level" && strings.Trim(string(p.Value.Value), `"`) == "1" {
					h1s++
				}
			}
		}
	}
	if mains != 1 || h1s != 1 {
		t.Errorf("%s page: %d main landmarks and %d level-1 headings; want 1 and 1", page, mains, h1s)
	}
}
