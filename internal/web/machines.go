package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/store"
)

// pageSize bounds one page of the machines table; past it the table pages.
const pageSize = 1000

// filter is the machines table's query: ?state=&label=k=v,k2=v2&q=&page=.
type filter struct {
	State  string
	Label  string            // as typed, shown back in the form
	labels map[string]string // parsed Label
	Q      string            // substring of name, MAC, UUID or IP
	Page   int               // 1-based
	Err    string            // why Label did not parse
}

func parseFilter(r *http.Request) filter {
	q := r.URL.Query()
	f := filter{State: q.Get("state"), Label: strings.TrimSpace(q.Get("label")), Q: strings.TrimSpace(q.Get("q")), Page: 1}
	if !store.State(f.State).Valid() {
		f.State = ""
	}
	if p, err := strconv.Atoi(q.Get("page")); err == nil && p > 1 {
		f.Page = p
	}
	if f.Label != "" {
		labels, err := parseLabels(f.Label)
		if err != nil {
			f.Err = err.Error()
		}
		f.labels = labels
	}
	return f
}

// parseLabels reads "k=v, k2=v2".
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("label filter %q: write key=value, several separated by commas", part)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func formatLabels(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

func (f filter) match(m store.Machine) bool {
	if f.State != "" && string(m.State) != f.State {
		return false
	}
	for k, v := range f.labels {
		if m.Labels[k] != v {
			return false
		}
	}
	if f.Q != "" {
		q := strings.ToLower(f.Q)
		if !strings.Contains(strings.ToLower(m.Name), q) && !strings.Contains(m.MAC, q) &&
			!strings.Contains(m.UUID, q) && !strings.Contains(m.LastIP, q) {
			return false
		}
	}
	return true
}

// query is the filter as a query string, for links and the live refresh.
func (f filter) query(page int) string {
	v := make([]string, 0, 4)
	for _, kv := range [][2]string{{"state", f.State}, {"label", f.Label}, {"q", f.Q}} {
		if kv[1] != "" {
			v = append(v, kv[0]+"="+url.QueryEscape(kv[1]))
		}
	}
	if page > 1 {
		v = append(v, "page="+strconv.Itoa(page))
	}
	return strings.Join(v, "&")
}

// table is the machines table's data.
type table struct {
	Filter   filter
	States   []store.State
	Machines []store.Machine // this page's
	Total    int             // in the inventory
	Matching int             // passing the filter
	Counts   []stateCount    // by state, over the whole inventory
	Prev     string          // query of the previous page, "" if none
	Next     string
	Query    string // this page's query, for the live refresh
}

type stateCount struct {
	State store.State
	N     int
}

var states = []store.State{store.StateDiscovered, store.StateReady, store.StateProvisioning,
	store.StateInstalled, store.StateWiping, store.StateWiped}

func (d *Dashboard) table(r *http.Request) (table, error) {
	ms, err := d.b.Machines(r.Context())
	if err != nil {
		return table{}, err
	}
	f := parseFilter(r)
	t := table{Filter: f, States: states, Total: len(ms), Query: f.query(f.Page)}
	counts := map[store.State]int{}
	var hits []store.Machine
	for _, m := range ms {
		counts[m.State]++
		if f.Err == "" && f.match(m) {
			hits = append(hits, m)
		}
	}
	for _, s := range states {
		t.Counts = append(t.Counts, stateCount{s, counts[s]})
	}
	t.Matching = len(hits)
	lo := min((f.Page-1)*pageSize, len(hits))
	hi := min(lo+pageSize, len(hits))
	t.Machines = hits[lo:hi]
	if f.Page > 1 {
		t.Prev = "?" + f.query(f.Page-1)
	}
	if hi < len(hits) {
		t.Next = "?" + f.query(f.Page+1)
	}
	return t, nil
}

// machinesPage serves / : the machines table.
func (d *Dashboard) machinesPage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	t, err := d.table(r)
	if err != nil {
		d.failPage(w, r, http.StatusInternalServerError, err)
		return
	}
	d.renderPage(w, r, http.StatusOK, "machines.html", "Machines", t)
}

// machineRows serves the table's body alone, for the page's live refresh. An
// unchanged body is a 304, so an idle dashboard costs a hash per poll.
func (d *Dashboard) machineRows(w http.ResponseWriter, r *http.Request) {
	t, err := d.table(r)
	if err != nil {
		d.log.Error("dashboard rows", "error", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	d.fragment(w, r, "table", t)
}

// fragment renders a template alone, answering 304 when the browser already
// has the same bytes.
func (d *Dashboard) fragment(w http.ResponseWriter, r *http.Request, name string, data any) {
	var buf bytes.Buffer
	if err := d.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		d.log.Error("render dashboard fragment", "template", name, "error", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(buf.Bytes())
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}
