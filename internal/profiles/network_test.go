package profiles

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	netProfile = "kind: Profile\nname: p\nboot: {kernel: /assets/k}\n"
	// prov is a valid Network; lines: kind 1, name 2, subnet 3, range 4, router 5, dns 6, leaseTime 7.
	provNetwork = "kind: Network\nname: prov\nsubnet: 10.99.0.0/24\nrange: [10.99.0.100, 10.99.0.199]\nrouter: 10.99.0.1\ndns: [10.99.0.1]\nleaseTime: 1h\n"
)

// machineAt is a Machine document matched by mac that reserves ip (line 5).
func machineAt(name, mac, ip string) string {
	return "kind: Machine\nname: " + name + "\nmatch: {mac: \"" + mac + "\"}\nprofile: p\nip: " + ip + "\n"
}

// TestNetworkProblems: every refusal of a Network, a reservation or a boot
// loader, at its line; the whole list of problems is exactly want, each
// entry a prefix of one problem.
func TestNetworkProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // added to p.yaml (netProfile)
		want  []string
	}{
		{
			name:  "unknown kind lists Network",
			files: map[string]string{"n.yaml": "kind: Netwrk\nname: prov\n"},
			want:  []string{`n.yaml:1: unknown kind "Netwrk" (want Profile, Machine, Network or Default)`},
		},
		{
			name:  "no name",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "name: prov\n", "", 1)},
			want:  []string{`n.yaml:1: network needs a name of letters, digits, '.', '_' or '-' (got "")`},
		},
		{
			name: "second network of one name",
			files: map[string]string{
				"n.yaml": provNetwork,
				"o.yaml": strings.NewReplacer("10.99.0.", "10.98.0.").Replace(provNetwork),
			},
			want: []string{`o.yaml:2: network "prov" is also defined at n.yaml:1`},
		},
		{
			name:  "typo in a field",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "leaseTime", "leaseTme", 1)},
			want:  []string{`n.yaml:7: unknown field "leaseTme" in network, did you mean "leaseTime"? (known: dns, kind, leaseTime, name, range, router, subnet)`},
		},
		{
			name:  "range as one value",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "[10.99.0.100, 10.99.0.199]", "10.99.0.100-10.99.0.199", 1)},
			want:  []string{`n.yaml:4: range must be a list, e.g. [10.99.0.100, 10.99.0.199]; got "10.99.0.100-10.99.0.199"`},
		},
		{
			name:  "no subnet",
			files: map[string]string{"n.yaml": "kind: Network\nname: prov\nrange: [10.99.0.100, 10.99.0.199]\n"},
			want:  []string{`n.yaml:1: network "prov" needs a subnet, e.g. subnet: 10.99.0.0/24`},
		},
		{
			name:  "subnet without a length",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "10.99.0.0/24", "10.99.0.0", 1)},
			want:  []string{`n.yaml:3: subnet: "10.99.0.0" is not a subnet; write address/length, e.g. 10.99.0.0/24`},
		},
		{
			name:  "IPv6 subnet",
			files: map[string]string{"n.yaml": "kind: Network\nname: prov\nsubnet: 2001:db8::/64\nrange: [2001:db8::10, 2001:db8::20]\n"},
			want: []string{
				"n.yaml:3: subnet: 2001:db8::/64 is not IPv4; Networks are for DHCPv4 only",
				"n.yaml:4: range[0]: 2001:db8::10 is not IPv4",
				"n.yaml:4: range[1]: 2001:db8::20 is not IPv4",
			},
		},
		{
			name:  "subnet with host bits",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "10.99.0.0/24", "10.99.0.5/24", 1)},
			want:  []string{"n.yaml:3: subnet: 10.99.0.5/24 has host bits set (the address of a subnet is its first); write 10.99.0.0/24"},
		},
		{
			name:  "subnet too narrow",
			files: map[string]string{"n.yaml": "kind: Network\nname: prov\nsubnet: 10.99.0.0/31\nrange: [10.99.0.0, 10.99.0.1]\n"},
			want:  []string{"n.yaml:3: subnet: 10.99.0.0/31 must be /8 to /30: a /31 or /32 has no address to hand out"},
		},
		{
			name:  "subnet too wide",
			files: map[string]string{"n.yaml": "kind: Network\nname: prov\nsubnet: 0.0.0.0/4\nrange: [10.99.0.1, 10.99.0.2]\n"},
			want:  []string{"n.yaml:3: subnet: 0.0.0.0/4 must be /8 to /30"},
		},
		{
			name:  "no range",
			files: map[string]string{"n.yaml": "kind: Network\nname: prov\nsubnet: 10.99.0.0/24\n"},
			want:  []string{`n.yaml:1: network "prov" needs a range: [first, last], the addresses it hands out`},
		},
		{
			name:  "range of three",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "10.99.0.199]", "10.99.0.150, 10.99.0.199]", 1)},
			want:  []string{"n.yaml:4: range must be two addresses, [first, last]; got 3"},
		},
		{
			name:  "range item not an address, at its own line",
			files: map[string]string{"n.yaml": "kind: Network\nname: prov\nsubnet: 10.99.0.0/24\nrange:\n  - 10.99.0.100\n  - 10.99.0.300\n"},
			want:  []string{`n.yaml:6: range[1]: "10.99.0.300" is not an IPv4 address`},
		},
		{
			name:  "range outside the subnet",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "10.99.0.199]", "10.99.1.10]", 1)},
			want:  []string{"n.yaml:4: range[1]: 10.99.1.10 is outside subnet 10.99.0.0/24"},
		},
		{
			name:  "range backwards",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "[10.99.0.100, 10.99.0.199]", "[10.99.0.199, 10.99.0.100]", 1)},
			want:  []string{"n.yaml:4: range: first 10.99.0.199 is after last 10.99.0.100"},
		},
		{
			name:  "range from the network address to the broadcast address",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "[10.99.0.100, 10.99.0.199]", "[10.99.0.0, 10.99.0.255]", 1)},
			want: []string{
				"n.yaml:4: range[0]: 10.99.0.0 is the network address of subnet 10.99.0.0/24, which no host may have",
				"n.yaml:4: range[1]: 10.99.0.255 is the broadcast address of subnet 10.99.0.0/24, which no host may have",
			},
		},
		{
			name:  "router outside the subnet",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "router: 10.99.0.1", "router: 10.98.0.1", 1)},
			want:  []string{"n.yaml:5: router: 10.98.0.1 is outside subnet 10.99.0.0/24"},
		},
		{
			name:  "router the broadcast address",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "router: 10.99.0.1", "router: 10.99.0.255", 1)},
			want:  []string{"n.yaml:5: router: 10.99.0.255 is the broadcast address"},
		},
		{
			name:  "router inside the range",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "router: 10.99.0.1", "router: 10.99.0.150", 1)},
			want:  []string{"n.yaml:5: router: 10.99.0.150 is inside range 10.99.0.100-10.99.0.199, which would hand the router's address to a machine"},
		},
		{
			name:  "dns not an address",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "dns: [10.99.0.1]", "dns: [10.99.0.1, dns.lab]", 1)},
			want:  []string{`n.yaml:6: dns[1]: "dns.lab" is not an IPv4 address`},
		},
		{
			name:  "lease in days",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "leaseTime: 1h", "leaseTime: 1d", 1)},
			want:  []string{`n.yaml:7: leaseTime: "1d" is not a duration; write e.g. 30m, 1h or 168h (Go durations have no days)`},
		},
		{
			name:  "lease too short",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "leaseTime: 1h", "leaseTime: 30s", 1)},
			want:  []string{"n.yaml:7: leaseTime: 30s is shorter than 1m0s"},
		},
		{
			name:  "lease too long",
			files: map[string]string{"n.yaml": strings.Replace(provNetwork, "leaseTime: 1h", "leaseTime: 721h", 1)},
			want:  []string{"n.yaml:7: leaseTime: 721h is longer than 720h0m0s (30 days)"},
		},
		{
			name: "overlapping ranges",
			files: map[string]string{
				"a.yaml": provNetwork,
				"b.yaml": "# the same subnet, written wider\nkind: Network\nname: prov2\nsubnet: 10.99.0.0/23\nrange: [10.99.0.150, 10.99.1.10]\n",
			},
			want: []string{`a.yaml:4: network "prov" range 10.99.0.100-10.99.0.199 overlaps network "prov2"'s range 10.99.0.150-10.99.1.10 at b.yaml:2: both would hand out 10.99.0.150-10.99.0.199`},
		},
		{
			name: "overlapping subnets, disjoint ranges",
			files: map[string]string{
				"a.yaml": provNetwork,
				"b.yaml": "kind: Network\nname: lab\nsubnet: 10.99.0.128/25\nrange: [10.99.0.200, 10.99.0.210]\n",
			},
			want: []string{`b.yaml:3: network "lab" subnet 10.99.0.128/25 overlaps network "prov"'s subnet 10.99.0.0/24 at a.yaml:1: a request's Network is the one whose subnet holds its relay's giaddr`},
		},
		{
			name:  "reservation not IPv4",
			files: map[string]string{"n.yaml": provNetwork, "m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.99.0.300")},
			want:  []string{`m.yaml:5: ip: "10.99.0.300" is not an IPv4 address`},
		},
		{
			name: "reservation without a mac",
			files: map[string]string{
				"n.yaml": provNetwork,
				"m.yaml": "kind: Machine\nname: node1\nmatch: {uuid: 4c4c4544-0042-3510-8057-b7c04f4e3732}\nprofile: p\nip: 10.99.0.50\n",
			},
			want: []string{`m.yaml:5: machine "node1" reserves 10.99.0.50 but does not match by mac: a DHCP server knows a client by its MAC`},
		},
		{
			name:  "reservation in no subnet",
			files: map[string]string{"n.yaml": provNetwork, "m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.1.2.3")},
			want:  []string{"m.yaml:5: reservation 10.1.2.3 of machine node1 is in no Network's subnet (prov 10.99.0.0/24)"},
		},
		{
			name:  "reservation with no Network at all",
			files: map[string]string{"m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.1.2.3")},
			want:  []string{"m.yaml:5: reservation 10.1.2.3 of machine node1 is in no Network's subnet; declare the kind: Network whose subnet holds it"},
		},
		{
			name:  "reservation of the network address",
			files: map[string]string{"n.yaml": provNetwork, "m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.99.0.0")},
			want:  []string{`m.yaml:5: reservation 10.99.0.0 of machine node1 is the network address of subnet 10.99.0.0/24, which no host may have (Network "prov")`},
		},
		{
			name:  "reservation of the broadcast address",
			files: map[string]string{"n.yaml": provNetwork, "m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.99.0.255")},
			want:  []string{`m.yaml:5: reservation 10.99.0.255 of machine node1 is the broadcast address of subnet 10.99.0.0/24`},
		},
		{
			name:  "reservation of the router",
			files: map[string]string{"n.yaml": provNetwork, "m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.99.0.1")},
			want:  []string{`m.yaml:5: reservation 10.99.0.1 of machine node1 is the router of Network "prov"`},
		},
		{
			name: "one address reserved twice",
			files: map[string]string{
				"n.yaml": provNetwork,
				"m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.99.0.50") + "---\n" + machineAt("node2", "52:54:00:00:00:02", "10.99.0.50"),
			},
			want: []string{`m.yaml:11: machine "node2" reserves 10.99.0.50, already reserved by machine "node1" at m.yaml:1`},
		},
		{
			name:  "unknown loader",
			files: map[string]string{"q.yaml": "kind: Profile\nname: sb\nboot:\n  loader: shm\n  kernel: /assets/k\n"},
			want:  []string{`q.yaml:4: boot.loader: unknown loader "shm", did you mean "shim"? (want ipxe, shim, uki)`},
		},
		{
			name:  "shim with URLs",
			files: map[string]string{"q.yaml": "kind: Profile\nname: sb\nboot:\n  loader: shim\n  kernel: http://mirror/k\n  initrd: [/assets/i, https://mirror/i]\n"},
			want: []string{
				"q.yaml:5: boot.kernel: loader shim needs an /assets/ path, not the URL http://mirror/k: GRUB fetches the kernel and initrds over TFTP from --assets, because GRUB 2.06 fetches nothing over HTTP on a port other than 80",
				"q.yaml:6: boot.initrd: loader shim needs an /assets/ path, not the URL https://mirror/i",
			},
		},
		{
			name:  "uki without an image",
			files: map[string]string{"q.yaml": "kind: Profile\nname: talos\nboot: {loader: uki}\n"},
			want:  []string{"q.yaml:3: loader uki needs boot.uki, the unified kernel image to boot"},
		},
		{
			name:  "uki with kernel, initrd and args",
			files: map[string]string{"q.yaml": "kind: Profile\nname: talos\nboot:\n  loader: uki\n  uki: /assets/talos.efi\n  kernel: /assets/k\n  initrd: [/assets/i]\n  args: [quiet]\n"},
			want: []string{
				"q.yaml:6: boot.kernel is not read with loader uki: the UKI carries its own kernel and initrd",
				"q.yaml:7: boot.initrd is not read with loader uki",
				"q.yaml:8: boot.args cannot apply with loader uki: a signed UKI's command line is fixed",
			},
		},
		{
			name:  "uki not a boot reference",
			files: map[string]string{"q.yaml": "kind: Profile\nname: talos\nboot:\n  loader: uki\n  uki: /assets/../talos.efi\n"},
			want:  []string{"q.yaml:5: boot.uki: path /assets/../talos.efi is not a plain path"},
		},
		{
			name:  "uki without loader uki",
			files: map[string]string{"q.yaml": "kind: Profile\nname: w\nboot:\n  kernel: /assets/k\n  uki: /assets/talos.efi\n"},
			want:  []string{"q.yaml:5: boot.uki is only read with loader: uki"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"p.yaml": netProfile}
			for k, v := range tc.files {
				files[k] = v
			}
			_, err := Load(writeTree(t, files), LoadOptions{})
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v; want Problems", err)
			}
			if !matchProblems(probs, tc.want) {
				t.Errorf("problems:\n%v\nwant (prefixes):\n%s", probs, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// matchProblems reports whether probs are exactly as many as want, each
// starting with its entry of want in order.
func matchProblems(probs Problems, want []string) bool {
	if len(probs) != len(want) {
		return false
	}
	for i, p := range probs {
		if !strings.HasPrefix(p.String(), want[i]) {
			return false
		}
	}
	return true
}

// TestNetworksAndReservations loads two Networks and reserving Machines and
// checks what the DHCP server and the allocator read.
func TestNetworksAndReservations(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.yaml": netProfile +
			"---\nkind: Profile\nname: sb\nboot: {loader: shim, kernel: /assets/k, initrd: [/assets/i]}\n" +
			"---\nkind: Profile\nname: talos\nboot: {loader: uki, uki: https://factory.talos.dev/talos.efi}\n" +
			"---\nkind: Profile\nname: plain\nboot: {loader: ipxe, kernel: http://mirror/k}\n",
		"net/prov.yaml": provNetwork,
		"net/lab.yaml":  "kind: Network\nname: lab\nsubnet: 172.16.0.0/16\nrange: [172.16.1.0, 172.16.1.255]\n",
		"m.yaml": machineAt("node1", "52-54-00-AA-00-01", "10.99.0.50") +
			"---\n" + machineAt("node2", "52:54:00:aa:00:02", "10.99.0.150") + // inside the range: allowed
			"---\n" + machineAt("node3", "52:54:00:aa:00:03", "172.16.0.1") +
			"---\nkind: Machine\nname: node4\nmatch: {mac: \"52:54:00:aa:00:04\"}\nprofile: p\n",
	})
	set, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	nets := set.Networks()
	if len(nets) != 2 || nets[0].Name != "lab" || nets[1].Name != "prov" {
		t.Fatalf("Networks() = %v; want lab and prov, by name", nets)
	}
	lab, prov := nets[0], nets[1]
	addr := netip.MustParseAddr
	if prov.Prefix != netip.MustParsePrefix("10.99.0.0/24") || prov.First != addr("10.99.0.100") || prov.Last != addr("10.99.0.199") ||
		prov.RouterAddr != addr("10.99.0.1") || !slices.Equal(prov.DNSAddrs, []netip.Addr{addr("10.99.0.1")}) || prov.Lease != time.Hour {
		t.Errorf("prov parsed as %+v", prov)
	}
	if lab.RouterAddr.IsValid() || lab.DNSAddrs != nil || lab.Lease != time.Hour {
		t.Errorf("lab: router %v, dns %v, lease %v; want none, none and the default 1h", lab.RouterAddr, lab.DNSAddrs, lab.Lease)
	}
	if prov.Broadcast() != addr("10.99.0.255") || lab.Broadcast() != addr("172.16.255.255") {
		t.Errorf("broadcast %v, %v", prov.Broadcast(), lab.Broadcast())
	}
	for a, want := range map[string]bool{"10.99.0.99": false, "10.99.0.100": true, "10.99.0.199": true, "10.99.0.200": false, "::ffff:10.99.0.150": true} {
		if got := prov.InRange(addr(a)); got != want {
			t.Errorf("prov.InRange(%s) = %v; want %v", a, got, want)
		}
	}

	wantRes := map[string]netip.Addr{
		"52:54:00:aa:00:01": addr("10.99.0.50"),
		"52:54:00:aa:00:02": addr("10.99.0.150"),
		"52:54:00:aa:00:03": addr("172.16.0.1"),
	}
	if got := set.Reservations(); !maps.Equal(got, wantRes) {
		t.Errorf("Reservations() = %v; want %v", got, wantRes)
	}
	if m := set.Machine("node1"); m.IPAddr != addr("10.99.0.50") || m.IP != "10.99.0.50" {
		t.Errorf("node1 ip %q parsed as %v", m.IP, m.IPAddr)
	}

	for a, want := range map[string]*Network{
		"10.99.0.1": prov, "10.99.0.77": prov, "::ffff:10.99.0.5": prov, "172.16.200.1": lab,
		"10.98.0.1": nil, "192.168.1.1": nil,
	} {
		if got := set.NetworkFor(addr(a)); got != want {
			t.Errorf("NetworkFor(%s) = %v; want %v", a, got, want)
		}
	}

	for name, want := range map[string]string{"p": LoaderIPXE, "plain": LoaderIPXE, "sb": LoaderShim, "talos": LoaderUKI} {
		if got := set.Profiles[name].Boot.Loader; got != want {
			t.Errorf("profile %s loader %q; want %q", name, got, want)
		}
	}
	if got := set.Profiles["talos"].Boot.UKI; got != "https://factory.talos.dev/talos.efi" {
		t.Errorf("talos uki %q", got)
	}
}

// TestCheckDHCP: what each DHCP mode refuses and warns about.
func TestCheckDHCP(t *testing.T) {
	const shim = "kind: Profile\nname: sb\nboot:\n  kernel: /assets/k\n  loader: shim\n"
	load := func(t *testing.T, files map[string]string) *Set {
		t.Helper()
		set, err := Load(writeTree(t, files), LoadOptions{})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		return set
	}
	withShim := map[string]string{"p.yaml": netProfile, "q.yaml": shim, "n.yaml": provNetwork, "m.yaml": machineAt("node1", "52:54:00:00:00:01", "10.99.0.50")}
	plain := map[string]string{"p.yaml": netProfile}
	for _, tc := range []struct {
		name           string
		files          map[string]string
		mode           string
		serving        bool
		want, warnings []string
	}{
		{
			name: "shim behind the proxy", files: withShim, mode: DHCPProxy, serving: true,
			want: []string{`q.yaml:5: profile "sb" boots loader shim, but signed GRUB does not take the server from a proxy offer: run --dhcp-mode authoritative, ` +
				"or have the site DHCP name provisiond (next-server/option 66 = this host, filename/option 67 = shimx64.efi) and serve without the proxy"},
			warnings: []string{`m.yaml:5: machine "node1" reserves 10.99.0.50, which only --dhcp-mode authoritative hands out`},
		},
		{
			// The site's DHCP server names provisiond: nothing to refuse.
			name: "shim with no proxy", files: withShim, mode: DHCPProxy, serving: false,
			warnings: []string{`m.yaml:5: machine "node1" reserves 10.99.0.50`},
		},
		{name: "shim authoritative", files: withShim, mode: DHCPAuthoritative, serving: true},
		{
			name: "authoritative without a Network", files: plain, mode: DHCPAuthoritative, serving: true,
			want: []string{"authoritative DHCP needs at least one kind: Network"},
		},
		{name: "plain proxy", files: plain, mode: DHCPProxy, serving: true},
		{
			name: "unknown mode", files: plain, mode: "relay", serving: true,
			want: []string{`unknown DHCP mode "relay" (want proxy or authoritative)`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probs, warns := load(t, tc.files).CheckDHCP(tc.mode, tc.serving)
			if !matchProblems(probs, tc.want) {
				t.Errorf("problems:\n%v\nwant (prefixes):\n%s", probs, strings.Join(tc.want, "\n"))
			}
			if !matchProblems(warns, tc.warnings) {
				t.Errorf("warnings:\n%v\nwant (prefixes):\n%s", warns, strings.Join(tc.warnings, "\n"))
			}
		})
	}
}
