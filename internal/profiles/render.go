package profiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"

	bconf "github.com/coreos/butane/config"
	bcommon "github.com/coreos/butane/config/common"
	ignutil "github.com/coreos/ignition/v2/config/util"
	ign30 "github.com/coreos/ignition/v2/config/v3_0"
	ign31 "github.com/coreos/ignition/v2/config/v3_1"
	ign32 "github.com/coreos/ignition/v2/config/v3_2"
	ign33 "github.com/coreos/ignition/v2/config/v3_3"
	ign34 "github.com/coreos/ignition/v2/config/v3_4"
	ign35 "github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/vcontext/report"
	"github.com/vincent-petithory/dataurl"
	"gopkg.in/yaml.v3"
)

// Rendered is a machine's config, ready to serve once For fills in the
// session values.
type Rendered struct {
	Kind        ConfigKind
	Body        []byte // may hold the session markers
	ContentType string
}

// Session values are known only when a machine boots, long after its config was
// rendered and translated at load time, so templates render markers in their
// place and For substitutes them per request. The markers use only characters
// that JSON strings, YAML and percent-encoded data URLs carry unescaped;
// exposeMarkers undoes the base64 that would hide them.
const (
	tokenMarker = "PROVISIOND_SESSION_TOKEN_6f1d2b9c"
	idMarker    = "PROVISIOND_MACHINE_ID_8e3a7c15"
)

// For returns the body served to the machine named id (its hyphenated MAC)
// holding session token token.
func (r *Rendered) For(id, token string) []byte {
	if !bytes.Contains(r.Body, []byte("PROVISIOND_")) {
		return r.Body
	}
	b := bytes.ReplaceAll(r.Body, []byte(tokenMarker), []byte(token))
	return bytes.ReplaceAll(b, []byte(idMarker), []byte(id))
}

// renderer holds the parsed templates of one Set.
type renderer struct {
	base      string                     // LoadOptions.BaseURL
	templates map[string]*configTemplate // by profile name
	// uninspected is .hardware of a machine never inspected, shared by
	// every render of one (templates cannot change it).
	uninspected map[string]any
	cache       *Cache
	used        *sync.Map // cache keys Load relied on, for Cache.retain; nil after Load
}

// sampleMAC stands in for the requester when a Default profile's template is
// checked at load time.
const sampleMAC = "00:00:00:00:00:00"

// render parses every profile's config template and renders the config of every
// Machine, and of the Default for a sample machine, so a template or Butane error
// is a load problem rather than a failed boot. It gives up when ctx ends.
func (l *loader) render(ctx context.Context, set *Set, cache *Cache, base string) {
	if cache == nil {
		cache = NewCache()
	}
	r := &renderer{base: base, templates: map[string]*configTemplate{}, uninspected: hardwareData(nil), cache: cache, used: &sync.Map{}}
	set.render = r
	set.configs = make(map[*Machine]*Rendered, len(set.Machines))
	// Profiles whose template does not parse: their machines are reported,
	// the others still rendered, so that one run shows every problem.
	unparsed := map[string]*configError{}
	for name, p := range set.Profiles {
		kind, src := p.Config.Source()
		if kind == ConfigNone {
			continue
		}
		clean, _ := localPath(src)
		text, err := l.root.ReadFile(clean)
		if err != nil {
			l.probs.add(p.Pos.File, p.Pos.Line, "read config %s: %v", src, err)
			continue
		}
		t, err := parseConfigTemplate(clean, string(text))
		if err != nil {
			ce := templateError(clean, err)
			if len(ce.places) == 0 {
				l.probs.add(clean, 0, "template: %v", err)
			}
			l.configAtFile(ce)
			unparsed[name] = ce
			continue
		}
		r.templates[name] = t
	}

	// Rendering is the one expensive step (Butane translation is ~1 ms per
	// machine), so it runs on every core.
	var mu sync.Mutex // guards l
	work := make(chan *Machine)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				who := fmt.Sprintf("machine %q", m.Name)
				if ce := unparsed[m.Profile]; ce != nil {
					mu.Lock()
					l.configFailed(m.Pos, who, ce)
					mu.Unlock()
					continue
				}
				mu.Lock()
				skip := l.overLimit[m.Profile]
				mu.Unlock()
				if skip {
					continue
				}
				out, err := r.config(ctx, set.Profiles[m.Profile], m, Query{MAC: m.Match.MAC, UUID: m.Match.UUID})
				mu.Lock()
				if err != nil {
					l.renderFailed(r, m.Profile, m.Pos, who, err)
				} else if out != nil {
					set.configs[m] = out
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, m := range set.Machines {
		select {
		case work <- m:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()

	if d := set.Default; d != nil && !l.overLimit[d.Profile] && ctx.Err() == nil {
		who := fmt.Sprintf("Default profile %q for a machine with no metadata", d.Profile)
		if ce := unparsed[d.Profile]; ce != nil {
			l.configFailed(d.Pos, who, ce)
		} else if _, err := r.config(ctx, set.Profiles[d.Profile], nil, Query{MAC: sampleMAC}); err != nil {
			l.renderFailed(r, d.Profile, d.Pos, who, err)
		}
	}
	// A cancelled load used only part of the cache.
	if len(l.probs.list) == 0 && ctx.Err() == nil {
		cache.retain(r.used)
	}
	r.used = nil
}

// renderFailed records why rendering profile's config for who failed, at pos
// and at the places of the config file that are wrong, unless its template
// passed a render limit: that is the template's problem, reported once at the
// action that passed the limit. The template is then not rendered for other
// machines, each of which would spend the limit anew.
func (l *loader) renderFailed(r *renderer, profile string, pos Pos, who string, err error) {
	var lim *limitError
	if !errors.As(err, &lim) {
		var ce *configError
		if errors.As(err, &ce) {
			l.configFailed(pos, who, ce)
		} else {
			l.probs.add(pos.File, pos.Line, "%s: %v", who, err)
		}
		return
	}
	if l.overLimit[profile] {
		return // another worker was rendering it too
	}
	if l.overLimit == nil {
		l.overLimit = map[string]bool{}
	}
	l.overLimit[profile] = true
	line := 0 // the output limit is met writing, with no action to name
	var ce *configError
	if errors.As(err, &ce) && len(ce.places) > 0 {
		line = ce.places[0].line
	}
	l.probs.add(r.templates[profile].t.Name(), line, "%v (rendering %s)", lim, who)
}

// Config returns the config served to the machine of res and q, or nil when its
// profile has none. Machines from Git were rendered at load time, as never
// inspected; Default machines, and machines whose inspection reported their
// hardware (q.Hardware), are rendered on request, through the cache by
// content: a template that does not read .hardware renders what was
// translated at load, and one that does is translated once per hardware.
func (s *Set) Config(res Result, q Query) (*Rendered, error) {
	if res.Machine != nil && res.Machine.Profile == res.Profile.Name && q.Hardware == nil {
		return s.configs[res.Machine], nil
	}
	// The Default profile, another profile than the Machine's own (the
	// wipe profile), or known hardware: rendered on demand within the
	// render limits.
	return s.render.config(context.Background(), res.Profile, res.Machine, q)
}

// config renders profile p's config for machine m (nil for a Default match),
// which asked with q. It fails with a *configError.
func (r *renderer) config(ctx context.Context, p *Profile, m *Machine, q Query) (*Rendered, error) {
	kind, _ := p.Config.Source()
	t := r.templates[p.Name]
	if kind == ConfigNone || t == nil {
		return nil, nil
	}
	data := r.templateData(p, m, q)
	body, err := t.execute(ctx, data)
	if err != nil {
		return nil, templateError(t.t.Name(), err)
	}
	key := sha256.Sum256(append(append(append([]byte(nil), translatorSalt...), kind+"\x00"...), body...))
	if r.used != nil {
		r.used.Store(key, true)
	}
	if out, ok := r.cache.get(key); ok {
		return out, nil
	}
	out, err := produce(kind, body)
	if err != nil {
		ce := &configError{stage: string(kind), file: t.t.Name(), err: err}
		// Only an unwrapped placedError is about body itself: produce wraps
		// those about what it made of body (the Ignition Butane produced).
		if pe, ok := err.(*placedError); ok {
			// Without the source's places the problem is still reported,
			// at the machine.
			ce.places, _ = t.locate(ctx, data, body, pe.places)
		}
		return nil, ce
	}
	r.cache.put(key, out, r.used == nil)
	return out, nil
}

// templateData is what config templates see: .metadata, .machine, .profile,
// .hardware (see hardwareData) and .provisiond (the server's URL, and this
// boot's session token and phone-home URL).
func (r *renderer) templateData(p *Profile, m *Machine, q Query) map[string]any {
	md := map[string]any{}
	machine := map[string]any{"name": "", "mac": q.MAC, "uuid": q.UUID, "labels": map[string]string{}}
	hardware := r.uninspected
	if q.Hardware != nil {
		hardware = hardwareData(q.Hardware)
	}
	if m != nil {
		if m.Metadata != nil {
			md = m.Metadata
		}
		machine["name"] = m.Name
		if m.Match.Labels != nil {
			machine["labels"] = m.Match.Labels
		}
	}
	return map[string]any{
		"metadata": md,
		"machine":  machine,
		"profile":  map[string]any{"name": p.Name, "once": p.Once, "inspect": p.Inspect},
		"hardware": hardware,
		"provisiond": map[string]any{
			"url":           r.base,
			"token":         tokenMarker,
			"installed_url": r.base + "/api/v1/machines/" + idMarker + "/installed",
		},
	}
}

// translateOptions names the translation settings and the post-processing of
// their output in the cache key, so that changing either invalidates persisted
// translations.
const translateOptions = "butane:no-auto-compression,markers:percent-encoded"

// produce turns rendered source into what is served, validating it. A
// *placedError it returns unwrapped locates problems in src.
func produce(kind ConfigKind, src []byte) (*Rendered, error) {
	switch kind {
	case ConfigButane:
		out, err := translateButane(src)
		if err != nil {
			return nil, err
		}
		if out, err = exposeMarkers(out); err != nil {
			return nil, err
		}
		return &Rendered{Kind: kind, Body: out, ContentType: "application/vnd.coreos.ignition+json"}, nil
	case ConfigIgnition:
		if err := validateIgnition(src, true); err != nil {
			return nil, err
		}
		out, err := exposeMarkers(src)
		if err != nil {
			return nil, err
		}
		return &Rendered{Kind: kind, Body: out, ContentType: "application/vnd.coreos.ignition+json"}, nil
	case ConfigTalos:
		if err := validateYAML(src); err != nil {
			return nil, yamlError(err)
		}
		return &Rendered{Kind: kind, Body: src, ContentType: "application/yaml"}, nil
	default:
		return &Rendered{Kind: kind, Body: src, ContentType: "text/plain; charset=utf-8"}, nil
	}
}

// translateButane translates Butane to validated Ignition.
func translateButane(src []byte) ([]byte, error) {
	out, rep, err := bconf.TranslateBytes(src, bcommon.TranslateBytesOptions{
		// Gzipping inline files would hide the session markers from For, and
		// is most of Butane's cost per machine. PXE configs travel over HTTP
		// with no size limit, so nothing is lost; an explicit
		// `compression: gzip` in the Butane is still honoured (and refused by
		// exposeMarkers if it hides a marker). Base64, which Butane still picks
		// when shorter, is undone by exposeMarkers.
		TranslateOptions: bcommon.TranslateOptions{NoResourceAutoCompression: true},
	})
	if err != nil {
		if len(rep.Entries) == 0 {
			return nil, yamlError(err) // a YAML syntax error, or no position at all
		}
		return nil, reportError(rep, src, err)
	}
	// Warnings too: an unused key is a typo that would silently drop config.
	if len(rep.Entries) > 0 {
		return nil, reportError(rep, src, errors.New("butane reported problems"))
	}
	if err := validateIgnition(out, false); err != nil {
		return nil, fmt.Errorf("the Ignition Butane produced: %w", err)
	}
	return out, nil
}

// ignitionParsers validate each released Ignition spec version. Picking the parser
// by version avoids config.Parse's up-translation to the experimental spec, which
// doubles the cost of a load.
var ignitionParsers = map[string]func([]byte) (report.Report, error){
	"3.0.0": func(b []byte) (report.Report, error) { _, r, err := ign30.Parse(b); return r, err },
	"3.1.0": func(b []byte) (report.Report, error) { _, r, err := ign31.Parse(b); return r, err },
	"3.2.0": func(b []byte) (report.Report, error) { _, r, err := ign32.Parse(b); return r, err },
	"3.3.0": func(b []byte) (report.Report, error) { _, r, err := ign33.Parse(b); return r, err },
	"3.4.0": func(b []byte) (report.Report, error) { _, r, err := ign34.Parse(b); return r, err },
	"3.5.0": func(b []byte) (report.Report, error) { _, r, err := ign35.Parse(b); return r, err },
}

// validateIgnition checks an Ignition config with the upstream validator.
// strict, for configs written by hand, refuses unknown keys too: Ignition
// ignores them with a warning, so a typo would silently drop config. Its
// other warnings (a unit enabled without an [Install] section) stay advice.
func validateIgnition(b []byte, strict bool) error {
	v, rep, err := ignutil.GetConfigVersion(b)
	if err != nil {
		return reportError(rep, b, fmt.Errorf("ignition: %w", err))
	}
	parse, ok := ignitionParsers[v.String()]
	if !ok {
		return fmt.Errorf("ignition: unsupported spec version %s (want 3.0.0 to 3.5.0)", v)
	}
	rep, err = parse(b)
	if err != nil {
		return reportError(rep, b, fmt.Errorf("ignition: %w", err))
	}
	if rep.IsFatal() {
		return reportError(rep, b, errors.New("ignition: invalid config"))
	}
	if !strict {
		return nil
	}
	var unused report.Report
	for _, e := range rep.Entries {
		if strings.HasPrefix(e.Message, "unused key ") {
			unused.Entries = append(unused.Entries, e)
		}
	}
	if len(unused.Entries) > 0 {
		return reportError(unused, b, errors.New("ignition: unknown keys"))
	}
	return nil
}

// exposeMarkers re-encodes every data URL resource of Ignition config b that
// hides a session marker from For (base64, which Butane picks whenever it is
// shorter than percent-encoding) as a percent-encoded data URL, where the
// marker appears verbatim. It returns b itself when nothing needed it, so
// unaffected configs stay byte-identical, and refuses what it cannot expose: a
// marker in gzip-compressed contents or under a verification hash.
func exposeMarkers(b []byte) ([]byte, error) {
	if !bytes.Contains(b, []byte("data:")) {
		return b, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers round-trip as written
	var cfg any
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("ignition: %w", err)
	}
	changed, err := exposeIn(cfg, "")
	if err != nil || !changed {
		return b, err
	}
	// The config was validated before, so the rewritten one differs only in
	// data URL sources, key order and insignificant whitespace; validate anyway,
	// as what is served must be.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("ignition: re-encode: %w", err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if err := validateIgnition(out, false); err != nil {
		return nil, fmt.Errorf("after re-encoding data URLs: %w", err)
	}
	return out, nil
}

// exposeIn walks the decoded JSON v, found at loc, rewriting each resource (an
// object whose source is a data URL: a file's contents and appends, merged or
// replacing configs, CAs, LUKS key files) in place. It reports whether anything
// changed.
func exposeIn(v any, loc string) (bool, error) {
	changed := false
	switch v := v.(type) {
	case map[string]any:
		if src, ok := v["source"].(string); ok && len(src) >= 5 && strings.EqualFold(src[:5], "data:") {
			c, err := exposeResource(v, src, loc)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the first error is the same on every load
		for _, k := range keys {
			child := strings.TrimPrefix(loc+"."+k, ".")
			if strings.HasPrefix(loc, "storage file ") {
				// A file's contents are the file; its appends are numbered.
				switch k {
				case "contents":
					child = loc
				case "append":
					child = loc + " append"
				}
			}
			c, err := exposeIn(v[k], child)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
	case []any:
		for i, e := range v {
			child := fmt.Sprintf("%s[%d]", loc, i)
			if f, ok := e.(map[string]any); ok && loc == "storage.files" {
				if p, ok := f["path"].(string); ok {
					child = "storage file " + p
				}
			}
			c, err := exposeIn(e, child)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
	}
	return changed, nil
}

// exposeResource handles the Ignition resource res at loc whose source src is a
// data URL.
func exposeResource(res map[string]any, src, loc string) (bool, error) {
	du, err := dataurl.DecodeString(src)
	if err != nil {
		return false, fmt.Errorf("%s: decode data URL: %w", loc, err)
	}
	// Markers come only from templates, which render text: they can be in
	// base64, never inside gzip bytes. Butane takes `compression: gzip` to
	// mean inline text is gzipped already and keeps it as written, so a
	// marker there is seen here and refused, since the machine would gunzip it.
	inData := countMarkers(du.Data)
	if inData == 0 {
		return false, nil
	}
	if res["compression"] == "gzip" {
		return false, fmt.Errorf("%s: uses the session token or machine id inside gzip-compressed contents, where it cannot be filled in per machine; remove `compression: gzip`", loc)
	}
	if ver, _ := res["verification"].(map[string]any); ver != nil {
		if h, _ := ver["hash"].(string); h != "" {
			return false, fmt.Errorf("%s: uses the session token or machine id, which differ per machine, in contents checked by verification.hash, which cannot match them all; remove the hash", loc)
		}
	}
	if countMarkers([]byte(src)) == inData {
		return false, nil // already percent-encoded with the markers verbatim
	}
	res["source"] = percentDataURL(src, du)
	return true, nil
}

// percentDataURL re-encodes data URL src, decoded as du, with percent-encoding,
// keeping its media type as written. Markers are [A-Za-z0-9_], which
// percent-encoding leaves alone.
func percentDataURL(src string, du *dataurl.DataURL) string {
	header, _, _ := strings.Cut(src[len("data:"):], ",")
	if strings.Contains(header, `"`) {
		// A quoted parameter may hold a comma: let the library spell it.
		header = du.MediaType.String()
	} else if i := len(header) - len(";base64"); i >= 0 && strings.EqualFold(header[i:], ";base64") {
		header = header[:i]
	}
	return "data:" + header + "," + dataurl.Escape(du.Data)
}

func countMarkers(b []byte) int {
	return bytes.Count(b, []byte(tokenMarker)) + bytes.Count(b, []byte(idMarker))
}

func validateYAML(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid YAML: %w", err)
		}
	}
}

// defaultEntryLimit bounds the cache entries kept for Default machines, whose
// configs are rendered per requester and could otherwise grow without bound.
const defaultEntryLimit = 4096

// Cache remembers produced configs by the hash of their rendered source, so
// reloads and repeat Default requests translate nothing twice. Safe for
// concurrent use.
type Cache struct {
	mu      sync.Mutex
	limit   int // on-demand entries kept beyond the pinned ones
	entries map[[32]byte]*Rendered
	pinned  map[[32]byte]bool // used by the live Set
	dirty   bool              // pinned entries changed since SaveFile
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{limit: defaultEntryLimit, entries: map[[32]byte]*Rendered{}, pinned: map[[32]byte]bool{}}
}

func (c *Cache) get(k [32]byte) (*Rendered, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.entries[k]
	return r, ok
}

// put adds an entry. onDemand entries (Default machines, the wipe profile,
// rendered per requester) are bounded; a load's own entries are not, or a
// large first load would evict what it just translated before retain pins it.
func (c *Cache) put(k [32]byte, r *Rendered, onDemand bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if onDemand && len(c.entries) >= len(c.pinned)+c.limit {
		for key := range c.entries {
			if !c.pinned[key] {
				delete(c.entries, key)
			}
		}
	}
	c.entries[k] = r
	c.dirty = true
}

// retain drops every entry the newly loaded Set does not use.
func (c *Cache) retain(used *sync.Map) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pinned := map[[32]byte]bool{}
	used.Range(func(k, _ any) bool {
		pinned[k.([32]byte)] = true
		return true
	})
	for k := range c.entries {
		if !pinned[k] {
			delete(c.entries, k)
		}
	}
	if len(pinned) != len(c.pinned) {
		c.dirty = true
	}
	c.pinned = pinned
}
