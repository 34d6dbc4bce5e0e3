package profiles

import (
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/provisiond/provisiond/internal/ident"
)

// AssetPrefix starts a boot path served from the assets directory.
const AssetPrefix = "/assets/"

// automaticArgs are kernel arguments provisiond adds itself; a profile setting them
// would boot with two conflicting values. The provisiond.* ones are the
// inspection agent's, added with inspect: true.
var automaticArgs = []string{"ignition.config.url=", "talos.config=", "initrd=", "provisiond.url=", "provisiond.mac=", "provisiond.token="}

func (l *loader) checkProfile(set *Set, p *Profile, n *yaml.Node) {
	file := p.Pos.File
	if !validName(p.Name) {
		l.probs.add(file, keyLine(n, "name"), "profile needs a name of letters, digits, '.', '_' or '-' (got %q)", p.Name)
	} else if prev, dup := set.Profiles[p.Name]; dup {
		l.probs.add(file, keyLine(n, "name"), "profile %q is also defined at %s", p.Name, prev.Pos)
	} else {
		set.Profiles[p.Name] = p
	}

	boot := mappingValue(n, "boot")
	if boot == nil {
		l.probs.add(file, n.Line, "profile %q has no boot section", p.Name)
		return
	}
	l.checkLoader(p, boot)
	if p.Inspect && p.Boot.Loader == LoaderUKI {
		l.probs.add(file, keyLine(n, "inspect"), "inspect: true cannot apply with loader uki: the agent finds its server and session token on the kernel command line, "+
			"and a signed UKI's command line is fixed when it is built; inspect with loader ipxe or shim")
	}
	if p.Boot.Kernel == "" {
		if p.Boot.Loader != LoaderUKI {
			l.probs.add(file, keyLine(boot, "kernel"), "boot.kernel is required")
		}
	} else if msg := checkBootRef(p.Boot.Kernel); msg != "" {
		l.probs.add(file, keyLine(boot, "kernel"), "boot.kernel: %s", msg)
	}
	for _, ref := range p.Boot.Initrd {
		if msg := checkBootRef(ref); msg != "" {
			l.probs.add(file, keyLine(boot, "initrd"), "boot.initrd: %s", msg)
		}
	}
	for _, arg := range p.Boot.Args {
		if arg == "" || strings.ContainsAny(arg, " \t\r\n") {
			l.probs.add(file, keyLine(boot, "args"), "boot.args: %q must be one non-empty word (one list item per argument)", arg)
		}
		for _, auto := range automaticArgs {
			if strings.HasPrefix(arg, auto) {
				l.probs.add(file, keyLine(boot, "args"), "boot.args: %q is added by provisiond; remove it", arg)
			}
		}
	}

	cfg := mappingValue(n, "config")
	var sources int
	for _, s := range []string{p.Config.Butane, p.Config.Ignition, p.Config.Talos, p.Config.Template} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		l.probs.add(file, keyLine(n, "config"), "config names %d sources; at most one of butane, ignition, talos, template", sources)
		return
	}
	if kind, src := p.Config.Source(); src != "" {
		line := keyLine(cfg, string(kind))
		if clean, ok := localPath(src); !ok {
			l.probs.add(file, line, "config.%s: %q must be a relative path inside the profiles directory", kind, src)
		} else if _, err := l.root.Stat(clean); err != nil {
			l.probs.add(file, line, "config.%s: %s does not exist in the profiles directory", kind, src)
		}
	}
}

func (l *loader) checkMachine(m *Machine, n *yaml.Node) {
	file := m.Pos.File
	if !validName(m.Name) {
		l.probs.add(file, keyLine(n, "name"), "machine needs a name of letters, digits, '.', '_' or '-' (got %q)", m.Name)
	}
	if m.Profile == "" {
		l.probs.add(file, keyLine(n, "profile"), "machine %q needs a profile", m.Name)
	}
	match := mappingValue(n, "match")
	if match == nil || !m.Match.identified() && len(m.Match.Labels) == 0 && len(m.Match.Hardware) == 0 {
		l.probs.add(file, keyLine(n, "match"), "machine %q needs a match with mac, uuid, serial, hardware and/or labels", m.Name)
		return
	}
	l.checkHardwareMatch(m, match)
	for _, k := range slices.Sorted(maps.Keys(m.Match.Labels)) {
		if m.Match.Labels[k] == "" {
			// A request without the label has it empty too, so the
			// Machine would match every request that does not send it.
			l.probs.add(file, keyLine(mappingValue(match, "labels"), k), "match.labels.%s has no value, which would match every request without a %s label; give it one, e.g. %s: r1", k, k, k)
		}
	}
	if m.Match.MAC != "" {
		mac, err := ident.MAC(m.Match.MAC)
		if err != nil {
			l.probs.add(file, keyLine(match, "mac"), "match.mac: %q is not a MAC address", m.Match.MAC)
		}
		m.Match.MAC = mac
	}
	if m.Match.UUID != "" {
		uuid, err := ident.UUID(m.Match.UUID)
		if err != nil {
			l.probs.add(file, keyLine(match, "uuid"), "match.uuid: %q is not a UUID", m.Match.UUID)
		}
		m.Match.UUID = uuid
	}
	if m.BMC != nil {
		bmc := mappingValue(n, "bmc")
		if u, err := url.Parse(m.BMC.Address); err != nil || (u.Scheme != "ipmi" && u.Scheme != "redfish") || u.Host == "" {
			l.probs.add(file, keyLine(bmc, "address"), "bmc.address: %q must be ipmi://host[:port] or redfish://host[:port]", m.BMC.Address)
		} else if u.User != nil {
			l.probs.add(file, keyLine(bmc, "address"), "bmc.address must not carry credentials; use bmc.credentials: env:VAR or file:PATH")
		}
		c := m.BMC.Credentials
		if !(strings.HasPrefix(c, "env:") && len(c) > 4 || strings.HasPrefix(c, "file:") && len(c) > 5) {
			// Never echo the value: it may be an inline password.
			l.probs.add(file, keyLine(bmc, "credentials"), "bmc.credentials must be env:VAR or file:PATH (secrets never go in Git)")
		}
	}
}

// checkHardwareMatch checks match.serial and match.hardware of m, whose
// match is the node match, and trims the serial.
func (l *loader) checkHardwareMatch(m *Machine, match *yaml.Node) {
	file := m.Pos.File
	if m.Match.Serial != "" {
		serial := MatchSerial(m.Match.Serial)
		if serial == "" {
			l.probs.add(file, keyLine(match, "serial"), "match.serial: %q is a placeholder that boards ship on every unit, so it tells no machine apart; match by mac or uuid", strings.TrimSpace(m.Match.Serial))
		}
		m.Match.Serial = serial
	}
	if len(m.Match.Hardware) == 0 {
		return
	}
	keys := hardwareKeys()
	hw := mappingValue(match, "hardware")
	for _, k := range slices.Sorted(maps.Keys(m.Match.Hardware)) {
		switch {
		case k == "system.serial":
			l.probs.add(file, keyLine(hw, k), "match.hardware.system.serial: write it as match.serial, which identifies the machine like a MAC")
		case !slices.Contains(keys, k):
			l.probs.add(file, keyLine(hw, k), "match.hardware: unknown fact %q%s (known: %s)", k, didYouMean(k, keys), strings.Join(keys, ", "))
		case strings.TrimSpace(m.Match.Hardware[k]) == "":
			l.probs.add(file, keyLine(hw, k), "match.hardware.%s has no value, which would match every machine that did not report it; give it one", k)
		default:
			m.Match.Hardware[k] = strings.TrimSpace(m.Match.Hardware[k])
		}
	}
}

// loaders are the values boot.loader accepts, for messages.
var loaders = []string{"ipxe", LoaderShim, LoaderUKI}

// checkLoader checks boot.loader and what it requires of the rest of boot
// (the node boot), and keeps "ipxe" as LoaderIPXE.
func (l *loader) checkLoader(p *Profile, boot *yaml.Node) {
	file, b := p.Pos.File, &p.Boot
	p.loaderLine = keyLine(boot, "loader")
	switch b.Loader {
	case "ipxe":
		b.Loader = LoaderIPXE
	case LoaderIPXE, LoaderShim, LoaderUKI:
	default:
		l.probs.add(file, p.loaderLine, "boot.loader: unknown loader %q%s (want %s)", b.Loader, didYouMean(b.Loader, loaders), strings.Join(loaders, ", "))
		return
	}
	if b.Loader != LoaderUKI && b.UKI != "" {
		l.probs.add(file, keyLine(boot, "uki"), "boot.uki is only read with loader: uki; remove it or set loader: uki")
	}
	switch b.Loader {
	case LoaderShim:
		// What is not an /assets/ path is reported by checkBootRef.
		refs := append([]string{b.Kernel}, b.Initrd...)
		for i, ref := range refs {
			if !strings.HasPrefix(ref, "http://") && !strings.HasPrefix(ref, "https://") {
				continue
			}
			key := "kernel"
			if i > 0 {
				key = "initrd"
			}
			l.probs.add(file, keyLine(boot, key), "boot.%s: loader shim needs an %s path, not the URL %s: GRUB fetches the kernel and initrds over TFTP from --assets, "+
				"because GRUB 2.06 fetches nothing over HTTP on a port other than 80", key, AssetPrefix, ref)
		}
	case LoaderUKI:
		if b.UKI == "" {
			l.probs.add(file, p.loaderLine, "loader uki needs boot.uki, the unified kernel image to boot (e.g. uki: /assets/talos/talos-uki.efi)")
		} else if msg := checkBootRef(b.UKI); msg != "" {
			l.probs.add(file, keyLine(boot, "uki"), "boot.uki: %s", msg)
		}
		for _, key := range []string{"kernel", "initrd"} {
			if mappingValue(boot, key) != nil {
				l.probs.add(file, keyLine(boot, key), "boot.%s is not read with loader uki: the UKI carries its own kernel and initrd; remove it", key)
			}
		}
		if len(b.Args) > 0 {
			l.probs.add(file, keyLine(boot, "args"), "boot.args cannot apply with loader uki: a signed UKI's command line is fixed when it is built "+
				"(Secure Boot ignores another); put the arguments into the UKI, or boot its kernel and initrd with loader ipxe")
		}
	}
}

// checkBootRef returns why a kernel, initrd or UKI reference is unusable, or "".
func checkBootRef(ref string) string {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" {
			return "invalid URL " + ref
		}
		if strings.ContainsAny(ref, " \t\r\n") {
			return "URL must not contain whitespace"
		}
		return ""
	}
	if !strings.HasPrefix(ref, AssetPrefix) {
		return "must be " + AssetPrefix + "<path> or an http(s) URL (got " + ref + ")"
	}
	// The same test the /assets handler applies, so that what validates is
	// what is served: no "..", ".", empty or backslashed elements.
	if p := strings.TrimPrefix(ref, AssetPrefix); !fs.ValidPath(p) || p == "." || strings.Contains(p, "\\") || strings.ContainsAny(ref, " \t\r\n") {
		return "path " + ref + " is not a plain path inside the assets directory (no ., .., // or \\) or contains whitespace"
	}
	return ""
}

// localPath cleans a slash-separated relative path and reports whether it stays
// inside its root.
func localPath(p string) (string, bool) {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return "", false
	}
	clean := path.Clean(p)
	if clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
		return "", false
	}
	return clean, true
}

func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// index builds the lookup maps and reports cross-document problems: unknown
// profiles, duplicate names and two Machines claiming one MAC, UUID or label set.
func (l *loader) index(set *Set) {
	set.byName = map[string]*Machine{}
	set.byMAC = map[string]*Machine{}
	set.byUUID = map[string]*Machine{}
	set.bySerial = map[string]*Machine{}
	byLabels := map[string]*Machine{}
	var byHardware []*Machine // matched by serial or hardware facts, not by mac or uuid
	for _, m := range set.Machines {
		if prev, dup := set.byName[m.Name]; dup {
			l.probs.add(m.Pos.File, m.Pos.Line, "machine name %q is also used at %s", m.Name, prev.Pos)
		}
		set.byName[m.Name] = m
		if _, ok := set.Profiles[m.Profile]; !ok && m.Profile != "" && !l.broken[m.Profile] {
			l.probs.add(m.Pos.File, m.Pos.Line, "machine %q uses unknown profile %q", m.Name, m.Profile)
		}
		if mac := m.Match.MAC; mac != "" {
			if prev, dup := set.byMAC[mac]; dup {
				l.probs.add(m.Pos.File, m.Pos.Line, "machine %q claims MAC %s, already claimed by machine %q at %s", m.Name, mac, prev.Name, prev.Pos)
			}
			set.byMAC[mac] = m
		}
		if uuid := m.Match.UUID; uuid != "" {
			if prev, dup := set.byUUID[uuid]; dup {
				l.probs.add(m.Pos.File, m.Pos.Line, "machine %q claims UUID %s, already claimed by machine %q at %s", m.Name, uuid, prev.Name, prev.Pos)
			}
			set.byUUID[uuid] = m
		}
		if serial := m.Match.Serial; serial != "" {
			if prev, dup := set.bySerial[serial]; dup {
				l.probs.add(m.Pos.File, m.Pos.Line, "machine %q claims serial %s, already claimed by machine %q at %s", m.Name, serial, prev.Name, prev.Pos)
			}
			set.bySerial[serial] = m
		}
		if m.Match.Serial != "" || len(m.Match.Hardware) > 0 {
			set.hardwareMatched = true
			if m.Match.MAC == "" && m.Match.UUID == "" {
				byHardware = append(byHardware, m)
			}
		}
		if !m.Match.identified() {
			set.labelled = append(set.labelled, m)
			set.hasLabelled = set.hasLabelled || len(m.Match.Labels) > 0
			key := labelKey(m.Match.Labels) + labelKey(m.Match.Hardware)
			if prev, dup := byLabels[key]; dup {
				what := "labels"
				if len(m.Match.Hardware) > 0 {
					what = "labels and hardware facts"
				}
				l.probs.add(m.Pos.File, m.Pos.Line, "machine %q has the same %s as machine %q at %s: which one wins would be a coin toss", m.Name, what, prev.Name, prev.Pos)
			}
			byLabels[key] = m
			if p := set.Profiles[m.Profile]; p != nil && len(m.Match.Labels) > 0 {
				if kind, _ := p.Config.Source(); kind != ConfigNone {
					set.Warnings = append(set.Warnings, Problem{File: m.Pos.File, Line: m.Pos.Line, Msg: fmt.Sprintf(
						"machine %q is matched by labels only, and labels never identify a machine for its config (anyone can send them): "+
							"profile %q's config will not be served to it; match it by mac or uuid", m.Name, m.Profile)})
				}
			}
		}
	}
	if d := set.Default; d != nil {
		if _, ok := set.Profiles[d.Profile]; !ok && d.Profile != "" && !l.broken[d.Profile] {
			l.probs.add(d.Pos.File, d.Pos.Line, "Default uses unknown profile %q", d.Profile)
		}
	}
	if d := set.Default; d == nil || set.Profiles[d.Profile] == nil || !set.Profiles[d.Profile].Inspect {
		for _, m := range byHardware {
			set.Warnings = append(set.Warnings, Problem{File: m.Pos.File, Line: m.Pos.Line, Msg: fmt.Sprintf(
				"machine %q matches by serial or hardware only, which provisiond knows of a machine only once its inspection reported them (a DHCP request carries neither), "+
					"and no Default profile with inspect: true boots unknown machines into one: add inspect: true to the Default's profile, or match by mac", m.Name)})
		}
	}
	sortLabelled(set.labelled)
}
