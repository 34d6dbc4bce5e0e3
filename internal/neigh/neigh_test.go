package neigh

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func TestOnLinkIndexes(t *testing.T) {
	pfx := netip.MustParsePrefix
	s := &snapshot{
		links: []link{
			{index: 1, name: "lo", l2: false},
			{index: 2, name: "eth0", l2: true},
			{index: 3, name: "eth1", l2: true},
			{index: 4, name: "wg0", l2: false},
		},
		addrs: []ifAddr{
			{1, pfx("127.0.0.1/8")},
			{1, pfx("::1/128")},
			{1, pfx("10.9.0.1/32")}, // anycast service address on lo
			{2, pfx("10.0.0.1/24")},
			{2, pfx("172.16.0.1/16")},
			{2, pfx("2001:db8:1::1/64")},
			{2, pfx("fe80::1/64")},
			{3, pfx("192.168.5.10/24")},
			{3, pfx("172.16.0.2/16")}, // same subnet on two links
			{3, pfx("fe80::2/64")},
			{4, pfx("10.8.0.1/24")},
		},
	}
	tests := []struct {
		ip   string
		zone string
		want []int
	}{
		{"10.0.0.5", "", []int{2}},
		{"10.0.0.255", "", []int{2}},
		{"10.0.0.1", "", nil}, // own
		{"10.0.1.5", "", nil}, // routed
		{"192.168.5.200", "", []int{3}},
		{"172.16.9.9", "", []int{2, 3}},
		{"10.8.0.5", "", nil}, // wireguard: no neighbour resolution
		{"10.9.0.1", "", nil}, // own, on lo
		{"127.0.0.1", "", nil},
		{"127.1.2.3", "", nil},
		{"0.0.0.0", "", nil},
		{"224.0.0.1", "", nil},
		{"::1", "", nil},
		{"::", "", nil},
		{"ff02::1", "", nil},
		{"2001:db8:1::99", "", []int{2}},
		{"2001:db8:1::1", "", nil}, // own
		{"2001:db8:2::1", "", nil},
		{"10.0.0.5", "eth1", []int{2}}, // zone only matters for link-local
		{"fe80::99", "", []int{2, 3}},
		{"fe80::99", "eth1", []int{3}},
		{"fe80::99", "3", []int{3}},
		{"fe80::99", "wg0", nil},
		{"fe80::99", "lo", nil},
		{"fe80::99", "nosuch0", []int{2, 3}},
		{"fe80::1", "", nil}, // own link-local
		{"fe80::2", "eth0", nil},
	}
	for _, tt := range tests {
		got := onLinkIndexes(s, netip.MustParseAddr(tt.ip), tt.zone)
		if !slices.Equal(got, tt.want) {
			t.Errorf("onLinkIndexes(%s%%%s) = %v, want %v", tt.ip, tt.zone, got, tt.want)
		}
	}
}

func TestStateUsable(t *testing.T) {
	tests := []struct {
		state int
		want  bool
	}{
		{netlink.NUD_NONE, false},
		{netlink.NUD_INCOMPLETE, false},
		{netlink.NUD_FAILED, false},
		{netlink.NUD_REACHABLE, true},
		{netlink.NUD_STALE, true},
		{netlink.NUD_DELAY, true},
		{netlink.NUD_PROBE, true},
		{netlink.NUD_PERMANENT, true},
		{netlink.NUD_NOARP, true},
	}
	for _, tt := range tests {
		if got := stateUsable(tt.state); got != tt.want {
			t.Errorf("stateUsable(%#x) = %v, want %v", tt.state, got, tt.want)
		}
	}
}

// neighMsg builds an RTM_NEWNEIGH payload as the kernel sends it.
func neighMsg(family uint8, idx uint32, state uint16, flags uint8, dst net.IP, lladdr net.HardwareAddr) []byte {
	b := (&netlink.Ndmsg{Family: family, Index: idx, State: state, Flags: flags}).Serialize()
	b = append([]byte(nil), b...)
	if dst != nil {
		b = append(b, nl.NewRtAttr(netlink.NDA_DST, dst).Serialize()...)
	}
	if lladdr != nil {
		b = append(b, nl.NewRtAttr(netlink.NDA_LLADDR, lladdr).Serialize()...)
	}
	return b
}

func TestUsable(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:AB:CD:EF")
	ip4 := netip.MustParseAddr("10.0.0.5")
	ip6 := netip.MustParseAddr("fd00::5")
	tests := []struct {
		name string
		msg  []byte
		ip   netip.Addr
		want string
	}{
		{"reachable", neighMsg(unix.AF_INET, 2, netlink.NUD_REACHABLE, 0, ip4.AsSlice(), mac), ip4, "52:54:00:ab:cd:ef"},
		{"stale v6", neighMsg(unix.AF_INET6, 2, netlink.NUD_STALE, 0, ip6.AsSlice(), mac), ip6, "52:54:00:ab:cd:ef"},
		{"incomplete", neighMsg(unix.AF_INET, 2, netlink.NUD_INCOMPLETE, 0, ip4.AsSlice(), nil), ip4, ""},
		{"failed with stale lladdr", neighMsg(unix.AF_INET, 2, netlink.NUD_FAILED, 0, ip4.AsSlice(), mac), ip4, ""},
		{"other interface", neighMsg(unix.AF_INET, 3, netlink.NUD_REACHABLE, 0, ip4.AsSlice(), mac), ip4, ""},
		{"other address", neighMsg(unix.AF_INET, 2, netlink.NUD_REACHABLE, 0, net.IP{10, 0, 0, 6}, mac), ip4, ""},
		{"no lladdr", neighMsg(unix.AF_INET, 2, netlink.NUD_NOARP, 0, ip4.AsSlice(), nil), ip4, ""},
		{"proxy entry", neighMsg(unix.AF_INET, 2, netlink.NUD_REACHABLE, netlink.NTF_PROXY, ip4.AsSlice(), mac), ip4, ""},
		{"truncated", []byte{unix.AF_INET, 0, 0}, ip4, ""},
	}
	for _, tt := range tests {
		hw, ok := usable(tt.msg, 2, tt.ip)
		if got := hw.String(); got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: usable = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}

// These never reach the kernel, so they run anywhere.
func TestLookupWithoutKernel(t *testing.T) {
	tbl := New()
	if _, _, err := tbl.Lookup(netip.Addr{}); err == nil {
		t.Error("Lookup(invalid) gave no error")
	}
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.251", "ff02::1"} {
		mac, onLink, err := tbl.Lookup(netip.MustParseAddr(s))
		if mac != "" || onLink || err != nil {
			t.Errorf("Lookup(%s) = %q, %v, %v; want not on-link", s, mac, onLink, err)
		}
	}
	if tbl.snap.Load() != nil {
		t.Error("addresses that cannot be on-link still read the interfaces")
	}
}
