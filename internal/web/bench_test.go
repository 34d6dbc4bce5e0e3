package web_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

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
	f := startFleet(b, "")
	for i := range 1000 {
		m := store.Machine{MAC: fmt.Sprintf("52:54:00:10:%02x:%02x", i/256, i%256), Name: fmt.Sprintf("node%04d", i),
			Arch: "efi-x86_64", LastIP: fmt.Sprintf("10.0.%d.%d", i/256, i%256), Profile: "linux",
			Labels: map[string]string{"rack": fmt.Sprintf("r%d", i%20)}, Power: "on"}
		if _, _, err := f.db.Seen(b.Context(), m, nil); err != nil {
			b.Fatal(err)
		}
	}
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
