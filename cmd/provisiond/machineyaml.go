package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/profiles"
)

// `provisiond machines yaml ID`: a Machine document for a machine the daemon
// knows, so that adopting a discovered machine is a commit, not hand-typing
// its MAC.

func machinesYAML(c *cli, cf *clientFlags, name string, pos []string) error {
	id, cl, err := idClient(cf, pos)
	if err != nil {
		return err
	}
	var m api.Machine
	if _, err := cl.get("/machines/"+url.PathEscape(id), nil, &m); err != nil {
		return fmt.Errorf("yaml %s: %w", printable(id), err)
	}
	doc := machineDocument(m, name)
	return cf.out.print(c.stdout, map[string]string{"mac": m.MAC, "yaml": doc}, func(w io.Writer) error {
		_, err := io.WriteString(w, doc)
		return err
	})
}

// machineDocument is m as a kind: Machine document named name, else the
// Machine's name that matched it, else node-<mac hex>. It matches by MAC,
// and by the SMBIOS serial when the inspection reported a real one.
func machineDocument(m api.Machine, name string) string {
	switch {
	case name != "":
	case m.Machine != "":
		name = m.Machine
	default:
		name = "node-" + strings.ReplaceAll(m.MAC, ":", "")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s as provisiond saw it", printable(m.MAC))
	if hw := boot.Summary(m.Hardware); hw != "" {
		fmt.Fprintf(&b, ": %s", printable(hw))
	}
	b.WriteString(".\n# Commit it to the profiles to adopt the machine.\n")
	b.WriteString("kind: Machine\n")
	fmt.Fprintf(&b, "name: %s\n", yamlScalar(name))
	b.WriteString("match:\n")
	fmt.Fprintf(&b, "  mac: %s\n", strconv.Quote(m.MAC))
	if m.Hardware != nil {
		if serial := profiles.MatchSerial(m.Hardware.System.Serial); serial != "" {
			b.WriteString("  # The SMBIOS serial survives a NIC swap; the MAC does not. A Machine\n" +
				"  # matches only when all its criteria do: drop mac to match by serial alone.\n")
			fmt.Fprintf(&b, "  serial: %s\n", strconv.Quote(serial))
		}
	}
	switch {
	case m.Profile == "":
		b.WriteString("# profile: NAME  # the Profile to install: it never booted through provisiond\n")
	case m.Machine == "":
		fmt.Fprintf(&b, "profile: %s  # the Default's, which it booted last: name the Profile to install\n", yamlScalar(m.Profile))
	default:
		fmt.Fprintf(&b, "profile: %s\n", yamlScalar(m.Profile))
	}
	if len(m.Labels) == 0 {
		b.WriteString("labels: {}\n")
	} else {
		b.WriteString("labels:\n")
		for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
			fmt.Fprintf(&b, "  %s: %s\n", yamlScalar(k), strconv.Quote(m.Labels[k]))
		}
	}
	return b.String()
}

// yamlScalar is s as a YAML scalar: bare when it is a plain name that YAML
// reads back as the same string, else double-quoted (a YAML double-quoted
// string reads Go's escapes alike).
func yamlScalar(s string) string {
	plain := s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == "" &&
		strings.IndexAny(s[:1], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == 0
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "y", "n":
		plain = false
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}
