package web

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// pageSize bounds one page of the machines table; past it the table pages.
const pageSize = 1000

// filter is the machines table's query: ?state=&label=k=v,k2=v2&profile=&q=&hw=&page=.
type filter struct {
	State   string
	Label   string            // as typed, shown back in the form
	labels  map[string]string // parsed Label
	Profile string            // the profile of the machine's last boot
	Q       string            // substring of name, MAC, UUID or IP
	HW      string            // substring of the reported vendor, product, serial or CPU model
	Page    int               // 1-based
	Err     string            // why Label did not parse
}

func parseFilter(r *http.Request) filter {
	q := r.URL.Query()
	f := filter{State: q.Get("state"), Label: strings.TrimSpace(q.Get("label")), Profile: q.Get("profile"),
		Q: strings.TrimSpace(q.Get("q")), HW: strings.TrimSpace(q.Get("hw")), Page: 1}
	if !store.State(f.State).Listed() {
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
	if f.Profile != "" && m.Profile != f.Profile {
		return false
	}
	if !profiles.HasLabels(m.Labels, f.labels) {
		return false
	}
	if !(boot.HardwareQuery{Text: f.HW}).Match(m.Hardware) {
		return false
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
	n := ""
	if page > 1 {
		n = strconv.Itoa(page)
	}
	return queryOf("state", f.State, "label", f.Label, "profile", f.Profile, "q", f.Q, "hw", f.HW, "page", n)
}

// active reports whether any filter is set, for the form's Clear link.
func (f filter) active() bool {
	return f.State != "" || f.Label != "" || f.Profile != "" || f.Q != "" || f.HW != ""
}

// table is the machines table's data.
type table struct {
	Filter   filter
	Active   bool // a filter is set
	States   []store.State
	Profiles []string        // the live set's, for the profile filter
	Machines []store.Machine // this page's
	Total    int             // in the inventory, declared machines included
	Matching int             // passing the filter
	Counts   []stateCount    // by state, over the whole inventory
	Pager    pager
	Query    string // this page's query, for the live refresh
}

type stateCount struct {
	State store.State
	N     int
}

func (d *Dashboard) table(r *http.Request) (table, error) {
	ms, err := d.b.Machines(r.Context())
	if err != nil {
		return table{}, err
	}
	f := parseFilter(r)
	states := store.ListedStates()
	t := table{Filter: f, Active: f.active(), States: states, Total: len(ms), Query: f.query(f.Page)}
	if set := d.b.Profiles(); set != nil {
		t.Profiles = slices.Sorted(maps.Keys(set.Profiles))
	}
	t.Profiles = options(t.Profiles, f.Profile)
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
		t.Pager.Prev, t.Pager.PrevLabel = href("/", f.query(f.Page-1)), "Previous page"
	}
	if hi < len(hits) {
		t.Pager.Next, t.Pager.NextLabel = href("/", f.query(f.Page+1)), "Next page"
	}
	return t, nil
}

// machinesPage serves / : the machines table.
func (d *Dashboard) machinesPage(w http.ResponseWriter, r *http.Request) {
	t, err := d.table(r)
	if err != nil {
		d.failPage(w, r, err)
		return
	}
	d.renderPage(w, r, http.StatusOK, "machines.html", "Machines", t)
}

// machineRows serves the table alone, for the page's live refresh.
func (d *Dashboard) machineRows(w http.ResponseWriter, r *http.Request) {
	d.fragment(w, r, "table", func() (any, error) { return d.table(r) })
}

// fragment renders a template alone, for a page's live refresh. Its ETag is
// the store's revision and the live profile set's load time: while neither
// moved, the browser gets a 304 and nothing is read or rendered, so an idle
// open page costs next to nothing, on whichever instance it asks. (Fragments
// carry no relative times, which would change alone.)
func (d *Dashboard) fragment(w http.ResponseWriter, r *http.Request, name string, load func() (any, error)) {
	etag := d.etag(r.Context())
	w.Header().Set("Cache-Control", "no-cache")
	if etag != "" && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	data, err := load()
	if err != nil {
		code, public := d.answer(r, err)
		http.Error(w, public, code)
		return
	}
	var buf bytes.Buffer
	if err := d.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		d.log.Error("render dashboard fragment", "template", name, "error", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// etag is what a fragment's content depends on: the store's revision and the
// live set's load time; "" when the revision cannot be read.
func (d *Dashboard) etag(ctx context.Context) string {
	rev, err := d.b.Revision(ctx)
	if err != nil {
		return ""
	}
	var loaded int64
	if set := d.b.Profiles(); set != nil {
		loaded = set.LoadedAt.UnixNano()
	}
	return `"` + strconv.FormatUint(rev, 36) + "-" + strconv.FormatInt(loaded, 36) + `"`
}
