// Package e2e boots real virtual machines through provisiond and checks what
// they received.
//
// TestPXEBoot builds a VLAN out of three network namespaces joined by a bridge:
// the site's plain DHCP server (dnsmasq, addresses only), provisiond (proxyDHCP
// on UDP 67 and 4011, TFTP, HTTP) and a "switch" namespace whose tap devices
// carry two QEMU VMs: one with SeaBIOS, whose NIC ROM is iPXE, and one with
// OVMF, whose EDK2 PXE client must first load iPXE over TFTP. Each VM boots a
// tiny test OS (the host's Debian cloud kernel and a busybox initramfs built
// by the test) that provisiond serves from its assets directory; the test OS
// fetches the ignition.config.url provisiond put on its kernel command line,
// prints the config on the serial console and powers off.
//
// The test passes when each VM printed a valid Ignition 3.x config, rendered
// from a Butane template, whose /etc/hostname is that VM's own hostname and
// which names no other VM's: proof that provisiond told the two machines
// apart, booted both firmware types and templated per machine. It logs the
// seconds from power-on to config fetched for each VM.
//
// Run it as root (it creates namespaces, a bridge and taps; every lab packet
// stays inside them) on a host with iproute2, qemu-system-x86, ovmf,
// ipxe-qemu, dnsmasq-base, busybox-static and linux-image-cloud-amd64:
//
//	mkdir -p /tmp/e2e
//	go test ./test/e2e/ -run TestPXEBoot -v -artifacts -outputdir /tmp/e2e
//
// Without root or those packages, or with -short, it skips. It needs no KVM:
// under TCG the two VMs boot side by side in about 35 s (BIOS ~21 s, UEFI
// ~32 s from power-on to config fetched). With -artifacts, each VM's serial
// console and every daemon's log are kept under -outputdir/_artifacts; on
// failure their last lines are in the test output either way.
package e2e
