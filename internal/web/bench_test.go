package web_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"
	"golang.org/x/sync/errgroup"

	"github.com/provisiond/provisiond/internal/store"
)

// paint is what the browser measured of one load of the machines page.
type paint struct {
	FCP    float64 `json:"fcp"`    // first contentful paint, ms after navigation start
	HTML   int     `json:"html"`   // decoded bytes
	HTMLGz int     `json:"htmlGz"` // bytes on the wire (gzip)
	CSS    int     `json:"css"`    // decoded bytes
	JS     int     `json:"js"`
	Rows   int     `json:"rows"`
}

const measurePaint = `(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const res = performance.getEntriesByType("resource");
  const size = (ext) => res.filter(r => r.name.includes(ext)).reduce((n, r) => n + r.decodedBodySize, 0);
  return {fcp: fcp ? fcp.startTime : -1, html: nav.decodedBodySize, htmlGz: nav.encodedBodySize,
    css: size(".css"), js: size(".js"), rows: document.querySelectorAll("table.machines tbody tr").length};
})()`

// BenchmarkDashboardFirstPaint loads the machines page with 1,000 machines in
// Chromium and reports its first contentful paint and the size of what it sent.
func BenchmarkDashboardFirstPaint(b *testing.B) {
	f := startFleetOn(b, "", boltStore(b))
	f.seed(b, 1000)
	ctx := browser(b)
	do(b, ctx, "sign in", chromedp.Navigate(f.url+"/ui/login"), chromedp.SendKeys(`#token`, testToken),
		chromedp.Submit(`#token`), chromedp.WaitVisible(`table.machines`))
	var p paint
	b.ResetTimer()
	for b.Loop() {
		// A fresh load each time; the CSS and JS come from the cache after the first.
		if err := chromedp.Do(ctx, chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(`table.machines`)); err != nil {
			b.Fatal(err)
		}
		var err error
		if p, err = chromedp.Run(ctx, chromedp.Evaluate[paint](measurePaint)); err != nil {
			b.Fatal(err)
		}
	}
	if p.Rows != 1000 {
		b.Fatalf("the page lists %d machines; want 1000", p.Rows)
	}
	b.ReportMetric(p.FCP, "fcp-ms")
	b.ReportMetric(float64(p.HTML), "html-B")
	b.ReportMetric(float64(p.HTMLGz), "html-gzip-B")
	b.ReportMetric(float64(p.CSS), "css-B")
	b.ReportMetric(float64(p.JS), "js-B")
}

// seed puts n machines in the inventory, in parallel so bbolt batches them.
func (f *fleet) seed(b *testing.B, n int) {
	var g errgroup.Group
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			m := store.Machine{MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff), Name: fmt.Sprintf("node%05d", i),
				Arch: "efi-x86_64", LastIP: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&0xff, i&0xff), Profile: "linux",
				Labels: map[string]string{"rack": fmt.Sprintf("r%d", i%20)}, Power: "on"}
			_, _, err := f.db.Seen(b.Context(), m, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIdlePoll is what an open machines page costs the server every
// refresh while nothing changes, at 10,000 machines: a 304.
func BenchmarkIdlePoll(b *testing.B) {
	f := startFleetOn(b, "", boltStore(b))
	f.seed(b, 10000)
	o := newOperator(b, f.url)
	o.signIn()
	res, _ := o.do("GET", "/ui/machines/rows", nil)
	etag := res.Header.Get("ETag")
	for b.Loop() {
		if res, _ := o.do("GET", "/ui/machines/rows", nil, "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
			b.Fatalf("idle poll: %s", res.Status)
		}
	}
}
