// Command bootstorm replays the HTTP half of many machines network-booting at
// once against one or more provisiond instances. Each machine does what a
// Flatcar install does: GET /ipxe for its script, GET the Ignition URL the
// script sets as ${config-url} (it carries the session token), then phones
// home with POST /api/v1/machines/{mac}/installed and that token. Machines
// are spread over the instances round-robin; with -cross a machine fetches
// its config and phones home through the instance after the one that served
// its script, so that a boot needs the instances to share their sessions.
//
// It prints boots/s, the p50/p99 of a whole boot and of each request, and the
// failures by kind; with -timeline, boots and failures per second (for fault
// tests). It exits 1 when any boot failed. The machines are
// scripts/genprofiles' (MACs 02:00:00:xx:xx:xx, all on loopback), so the
// daemons must run with --trust-loopback.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	instances []*url.URL
	machines  int
	first     int
	workers   int
	duration  time.Duration
	timeout   time.Duration
	cross     bool
	timeline  bool
	label     string
}

func main() {
	var cfg config
	var instances string
	flag.StringVar(&instances, "instances", "", "`URL[,URL...]` base URLs of the provisiond instances (required)")
	flag.IntVar(&cfg.machines, "n", 1000, "`N` machines, genprofiles' machines first .. first+N-1")
	flag.IntVar(&cfg.first, "first", 0, "index of the first machine")
	flag.IntVar(&cfg.workers, "c", 16, "`C` machines booting at once")
	flag.DurationVar(&cfg.duration, "duration", 0, "keep booting the machines over and over this long; 0: each boots once")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "limit of one request")
	flag.BoolVar(&cfg.cross, "cross", true, "fetch the config and phone home through the next instance, not the one that served the script")
	flag.BoolVar(&cfg.timeline, "timeline", false, "print boots and failures per second")
	flag.StringVar(&cfg.label, "label", "", "name of this run in the summary")
	flag.Parse()
	if err := cfg.check(instances); err != nil {
		fmt.Fprintln(os.Stderr, "bootstorm:", err)
		os.Exit(2)
	}
	r := storm(cfg)
	r.print(os.Stdout, cfg)
	if r.failed > 0 {
		os.Exit(1)
	}
}

func (c *config) check(instances string) error {
	for s := range strings.SplitSeq(instances, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		u, err := url.Parse(strings.TrimRight(s, "/"))
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("-instances: %q is not an http(s) base URL", s)
		}
		c.instances = append(c.instances, u)
	}
	switch {
	case len(c.instances) == 0:
		return errors.New("-instances: give at least one base URL, such as http://127.0.0.1:18080")
	case c.machines <= 0 || c.first < 0 || c.first+c.machines > 1<<24:
		return fmt.Errorf("-n %d -first %d: want 1 to 2^24 machines from index 0", c.machines, c.first)
	case c.workers <= 0:
		return fmt.Errorf("-c %d: want a positive count", c.workers)
	case c.duration > 0 && c.workers > c.machines:
		// Each machine must finish a boot before it starts the next.
		return fmt.Errorf("-c %d with -duration: want at most -n (%d) workers", c.workers, c.machines)
	case c.timeout <= 0:
		return fmt.Errorf("-timeout %v: want a positive duration", c.timeout)
	}
	return nil
}

// mac is the i-th machine's MAC as iPXE's ${mac:hexhyp} spells it; the
// machines are scripts/genprofiles' (its MAC function).
func mac(i int) string {
	return fmt.Sprintf("02-00-00-%02x-%02x-%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

// Steps of one boot, in order.
const (
	stepScript = iota
	stepConfig
	stepPhoneHome
	steps
)

var stepNames = [steps]string{"/ipxe", "/ignition", "phone-home"}

// result is one machine's boot: how long each step took, and the failure
// that ended it, if any.
type result struct {
	end     time.Time
	took    [steps]time.Duration
	done    int    // steps that succeeded
	failure string // "" when the boot completed
}

// storm runs the boots and gathers their results.
func storm(cfg config) *report {
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.workers,
		MaxConnsPerHost:     cfg.workers,
		IdleConnTimeout:     10 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.timeout}

	var next atomic.Int64 // the next boot to start
	start := time.Now()
	deadline := start.Add(cfg.duration)
	results := make(chan result, cfg.workers)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if cfg.duration == 0 && k >= cfg.machines || cfg.duration > 0 && time.Now().After(deadline) {
					return
				}
				results <- boot(client, cfg, k)
			}
		})
	}
	go func() { wg.Wait(); close(results) }()
	r := &report{start: start, failures: map[string]int{}}
	for res := range results {
		r.add(res)
	}
	r.wall = time.Since(start)
	return r
}

// boot is boot number k: machine k mod N through instance k mod instances.
func boot(client *http.Client, cfg config, k int) result {
	var res result
	m := mac(cfg.first + k%cfg.machines)
	script := cfg.instances[k%len(cfg.instances)]
	other := script
	if cfg.cross {
		other = cfg.instances[(k+1)%len(cfg.instances)]
	}
	fail := func(step int, err error) result {
		res.end = time.Now()
		res.failure = stepNames[step] + ": " + strings.ReplaceAll(err.Error(), m, "<mac>")
		return res
	}

	t := time.Now()
	body, err := get(client, script.String()+"/ipxe?mac="+m)
	res.took[stepScript] = time.Since(t)
	if err != nil {
		return fail(stepScript, err)
	}
	cfgURL, token, err := configURL(body, other)
	if err != nil {
		return fail(stepScript, err)
	}
	res.done++

	t = time.Now()
	body, err = get(client, cfgURL)
	res.took[stepConfig] = time.Since(t)
	if err == nil {
		err = checkIgnition(body)
	}
	if err != nil {
		return fail(stepConfig, err)
	}
	res.done++

	t = time.Now()
	err = phoneHome(client, other.String()+"/api/v1/machines/"+m+"/installed", token)
	res.took[stepPhoneHome] = time.Since(t)
	if err != nil {
		return fail(stepPhoneHome, err)
	}
	res.done++
	res.end = time.Now()
	return res
}

// configLine finds the script's `set config-url URL` (internal/ipxe's
// BootScript writes it for every profile with a config).
var configLine = regexp.MustCompile(`(?m)^set config-url (\S+)$`)

// configURL returns the config URL a boot script sets, moved to instance
// base, and the session token in it.
func configURL(script []byte, base *url.URL) (string, string, error) {
	mt := configLine.FindSubmatch(script)
	if mt == nil {
		first, _, _ := strings.Cut(strings.TrimPrefix(string(script), "#!ipxe\n"), "\n")
		return "", "", fmt.Errorf("no config-url in the script (%.60s)", first)
	}
	u, err := url.Parse(string(mt[1]))
	if err != nil {
		return "", "", fmt.Errorf("config-url: %w", err)
	}
	token := u.Query().Get("token")
	if token == "" {
		return "", "", errors.New("config-url carries no token")
	}
	u.Scheme, u.Host = base.Scheme, base.Host
	return u.String(), token, nil
}

// checkIgnition fails unless body is an Ignition config: JSON with
// ignition.version.
func checkIgnition(body []byte) error {
	var c struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(body, &c); err != nil || c.Ignition.Version == "" {
		return errors.New("not an Ignition config")
	}
	return nil
}

func get(client *http.Client, u string) ([]byte, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, transport(err)
	}
	return read(resp)
}

func phoneHome(client *http.Client, u, token string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, strings.NewReader(`{"message":"bootstorm"}`))
	if err != nil {
		return fmt.Errorf("phone-home request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return transport(err)
	}
	_, err = read(resp)
	return err
}

// read returns a 200's body; any other status is an error naming it and
// the start of the body (the daemon's reason), on one line.
func read(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, transport(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d %.120s", resp.StatusCode, strings.Join(strings.Fields(string(body)), " "))
	}
	return body, nil
}

// transport names a failure to talk to the server by its cause, so that
// failures group by kind rather than by port or address.
func transport(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("connection reset or closed")
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("timeout")
	}
	return err
}

// report accumulates results.
type report struct {
	start    time.Time
	wall     time.Duration
	boots    []time.Duration // completed boots, whole
	step     [steps][]time.Duration
	failed   int
	requests int
	failures map[string]int
	seconds  []second
}

type second struct{ boots, failed int }

func (r *report) add(res result) {
	s := int(res.end.Sub(r.start) / time.Second)
	for len(r.seconds) <= s {
		r.seconds = append(r.seconds, second{})
	}
	for i := range res.done {
		r.step[i] = append(r.step[i], res.took[i])
	}
	r.requests += res.done
	if res.failure != "" {
		r.requests++
		r.failed++
		r.failures[res.failure]++
		r.seconds[s].failed++
		return
	}
	var total time.Duration
	for _, d := range res.took {
		total += d
	}
	r.boots = append(r.boots, total)
	r.seconds[s].boots++
}

func (r *report) print(w io.Writer, cfg config) {
	label := cmp.Or(cfg.label, "bootstorm")
	mode := "each machine once"
	if cfg.duration > 0 {
		mode = "repeating for " + cfg.duration.String()
	}
	secs := r.wall.Seconds()
	fmt.Fprintf(w, "%s: %d instance(s), %d machines, -c %d, %s, cross=%v\n", label, len(cfg.instances), cfg.machines, cfg.workers, mode, cfg.cross)
	fmt.Fprintf(w, "%s: %d boots in %.2f s = %.0f boots/s (%.0f req/s); boot p50 %s p99 %s max %s; failed boots %d\n",
		label, len(r.boots), secs, float64(len(r.boots))/secs, float64(r.requests)/secs,
		ms(pct(r.boots, 50)), ms(pct(r.boots, 99)), ms(pct(r.boots, 100)), r.failed)
	for i, name := range stepNames {
		fmt.Fprintf(w, "  %-10s p50 %s p99 %s max %s (%d ok)\n", name, ms(pct(r.step[i], 50)), ms(pct(r.step[i], 99)), ms(pct(r.step[i], 100)), len(r.step[i]))
	}
	kinds := make([]string, 0, len(r.failures))
	for k := range r.failures {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Or(r.failures[b]-r.failures[a], strings.Compare(a, b)) })
	for _, k := range kinds {
		fmt.Fprintf(w, "  FAILED %6d  %s\n", r.failures[k], k)
	}
	if cfg.timeline {
		for i, s := range r.seconds {
			fmt.Fprintf(w, "  t=%3ds boots %5d failed %5d\n", i, s.boots, s.failed)
		}
	}
}

// pct is the p-th percentile of ds (nearest rank), sorting ds; 0 for none.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := (len(ds)*p+99)/100 - 1
	return ds[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
