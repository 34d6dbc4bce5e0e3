package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// ranges is a Range header of n one-byte ranges, 0-0 upwards.
func ranges(n int) string {
	rs := make([]string, n)
	for i := range rs {
		rs[i] = fmt.Sprintf("%d-%d", i, i)
	}
	return "bytes=" + strings.Join(rs, ",")
}

// A request may ask for at most maxRanges ranges; more is a 416 that says so,
// before any is parsed or served.
func TestRangeLimit(t *testing.T) {
	ts := newTestServer(t) // /assets/flatcar/kernel is "0123456789abcdef", /nbp/ipxe.efi "MZ-efi"
	for _, tc := range []struct {
		name, method, path, rng string
		code                    int
		parts                   int    // parts of a multipart answer
		body                    string // the whole body, if not multipart
	}{
		{name: "one range", method: "GET", path: "/assets/flatcar/kernel", rng: "bytes=4-7", code: 206, body: "4567"},
		{name: "the most ranges", method: "GET", path: "/assets/flatcar/kernel", rng: ranges(maxRanges), code: 206, parts: maxRanges},
		{name: "one range too many", method: "GET", path: "/assets/flatcar/kernel", rng: ranges(maxRanges + 1), code: 416, body: "range not satisfiable: more than 16 byte ranges in one request\n"},
		{name: "one range too many, HEAD", method: "HEAD", path: "/assets/flatcar/kernel", rng: ranges(maxRanges + 1), code: 416},
		{name: "thousands of ranges", method: "GET", path: "/assets/flatcar/kernel", rng: ranges(5000), code: 416},
		{name: "blank elements are no ranges", method: "GET", path: "/assets/flatcar/kernel", rng: "bytes=4-7" + strings.Repeat(", ,", 100), code: 206, body: "4567"},
		// Overlap cannot multiply the answer: ranges adding up to more than
		// the file get the file once.
		{name: "the whole file, the most times", method: "GET", path: "/assets/flatcar/kernel", rng: "bytes=" + strings.Repeat("0-,", maxRanges), code: 200, body: "0123456789abcdef"},
		{name: "nbp, one range", method: "GET", path: "/nbp/ipxe.efi", rng: "bytes=0-1", code: 206, body: "MZ"},
		{name: "nbp, one range too many", method: "GET", path: "/nbp/ipxe.efi", rng: ranges(maxRanges + 1), code: 416},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Range", tc.rng)
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			body := string(raw)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s with %d ranges = %d %q; want %d", tc.method, tc.path, strings.Count(tc.rng, ",")+1, resp.StatusCode, body, tc.code)
			}
			if tc.code == 416 {
				size := map[string]string{"/assets/flatcar/kernel": "16", "/nbp/ipxe.efi": "6"}[tc.path]
				if cr := resp.Header.Get("Content-Range"); cr != "bytes */"+size {
					t.Errorf("416 with Content-Range %q; want bytes */%s", cr, size)
				}
			}
			if tc.parts > 0 {
				if n := strings.Count(body, "Content-Range: bytes "); !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") || n != tc.parts {
					t.Errorf("%s answer with %d parts; want multipart/byteranges with %d", resp.Header.Get("Content-Type"), n, tc.parts)
				}
			} else if tc.body != "" && body != tc.body {
				t.Errorf("body %q; want %q", body, tc.body)
			}
		})
	}
}
