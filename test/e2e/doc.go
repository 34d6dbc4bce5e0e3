// Package e2e boots real virtual machines through provisiond and checks what
// they received.
//
// TestPXEBoot builds a VLAN out of network namespaces joined by a bridge:
// the site's plain DHCP server (dnsmasq, addresses only), provisiond (proxyDHCP
// on UDP 67 and 4011, TFTP, HTTP) and a "switch" namespace whose tap devices
// carry QEMU VMs: one with SeaBIOS, whose NIC ROM is iPXE, and one with OVMF,
// whose EDK2 PXE client must first load iPXE over TFTP. A router namespace
// joins the VLAN (10.99.0.254) to a second subnet, 10.98.0.0/24 on its own
// bridge (the router at 10.98.0.254), and runs a real DHCP relay there:
// dnsmasq relays each request, giaddr 10.98.0.254, to both the site's DHCP
// server (which leases 10.98.0.x by giaddr, the router as gateway) and
// provisiond, which sees the relayed DHCP only that way and must answer
// through the relay. A third VM, BIOS, boots on that subnet. The site host
// and the provisioner route 10.98.0.0/24 via the router.
//
// Each VM boots a tiny test OS (the host's Debian cloud kernel and a busybox
// initramfs built by the test) that provisiond serves from its assets
// directory; the test OS leases an address, fetches the ignition.config.url
// provisiond put on its kernel command line, prints the config on the serial
// console, phones home with the session token and phone-home URL provisiond
// templated into that config (a systemd unit of testdata/e2e.bu) and reboots.
// The profile is boot-once, so the VM's next power-on must be told to boot
// from disk (iPXE `exit`; the VM has no disk).
//
// For each VM the test checks: a valid Ignition 3.x config, rendered from a
// Butane template, whose /etc/hostname is that VM's own hostname and which
// names no other VM's (provisiond told the machines apart, booted both
// firmware types, on-link and relayed, and templated per machine), whose
// phone-home unit names this machine's installed URL and this boot's token;
// the phone-home accepted; the machine `installed` in /api/v1 (asked with the
// API token serve generated); then, on the second power-on, a boot-local
// event, no second session and no second config fetch.
//
// While each VM's first session is open, three attackers ask in its name
// (by MAC; the UEFI VM by UUID alone, as its Machine matches it) for
// /boot.ipxe with a forged UUID and architecture, /ipxe, /ignition with a
// made-up token, and POST its phone-home with a made-up bearer token:
//   - the site's DHCP host, on the VLAN: the kernel's neighbour table gives
//     its own MAC, so /ipxe and /ignition get 403 neighbor-mismatch;
//   - a host at 10.98.0.66 behind the router that never asked for a lease:
//     no DHCP binding vouches for it, 403 unbound;
//   - a host on the same subnet that leased its address through the relay
//     (busybox udhcpc): bound to its own MAC, 403 binding-mismatch.
//
// /boot.ipxe naming another machine and the phone-home from another source
// get 403 too (the source is checked before the token). A UUID counts only as far as DHCP showed it from the
// requester's own MAC, so a UUID-only request of an attacker provisiond can
// put a MAC to (neighbour entry, binding) is answered as that attacker's own:
// 404, as no Machine matches it. Each 403 must give the attacker's reason and
// be on record (script-refused, config-refused) with its address, and the
// victim stay untouched: the same session (issued_at), still provisioning or
// installed, no UUID, architecture or address of the attackers' in its
// inventory record, and its own install completing as above. All the while
// the routed attacker floods provisiond's TFTP with ~500 read requests a
// second that it never acknowledges; the UEFI VM must still fetch ipxe.efi
// over TFTP and install. It logs every
// answer, and the seconds from power-on to config fetched, to installed and
// (second power-on) to the boot-local event.
//
// Run it as root (it creates namespaces, bridges and taps; every lab packet
// stays inside them) on a host with iproute2, qemu-system-x86, ovmf,
// ipxe-qemu, dnsmasq-base, busybox-static and linux-image-cloud-amd64:
//
//	mkdir -p /tmp/e2e
//	go test ./test/e2e/ -run TestPXEBoot -v -artifacts -outputdir /tmp/e2e
//
// Without root or those packages, or with -short, it skips. It needs no KVM:
// under TCG it runs two VMs at a time, one per core (a third at once slowed
// all of them twofold), the relayed VM taking the core of the first to finish,
// in about 100 s (BIOS ~23 s to config fetched and installed, ~19 s for the
// second boot; UEFI ~35 s and ~26 s; relayed BIOS ~24 s and ~19 s).
// With -artifacts, each VM's serial console (both power-ons) and every
// daemon's log are kept under -outputdir/_artifacts; on failure their last
// lines, and each machine's events, are in the test output either way.
//
// TestBMCLifecycle runs on the same VLAN (no routed subnet) with two BIOS VMs
// whose power a BMC owns: one behind OpenIPMI's ipmi_sim (IPMI over LAN,
// driven by bmclib's ipmitool provider), one behind test/bmcsim's Redfish
// service (driven by bmclib's gofish provider), both on the provisioner's
// loopback. Each BMC starts and stops its VM's QEMU through a test/bmcsim
// chassis script, with the boot order of the device it was told (pxe: network;
// disk: disk, then network). Everything goes through provisiond: `provisiond
// power on`, the install (PXE, Ignition, phone-home), the boot from disk after
// it, then POST /api/v1/machines/{id}/reprovision with power, which must set
// the next boot to PXE before it power-cycles the machine into a second
// install. It checks the BMC's own record of what it was told and what it
// booted, the consoles, and the power, reprovision and install events, and
// logs the seconds from power-on to config fetched and from reprovision to
// installed. It also needs openipmi, ipmitool and util-linux (setsid, flock,
// setpriv); without them it skips, or fails with PROVISIOND_REQUIRE_LAB=1. If
// the test binary dies without its cleanups (-timeout), its VMs are powered
// off and ipmi_sim is killed all the same.
//
// TestCluster runs two provisiond instances on the VLAN (10.99.0.2 and
// 10.99.0.3), each with proxyDHCP, TFTP and HTTP, sharing one etcd
// (test/etcdserver, on its own host at 10.99.0.4), the API token and the key
// that seals BMC credentials, and a BIOS VM behind ipmi_sim (10.99.0.5)
// whose guest reboot powers it off. The BMC is set once through the API of
// one instance and used by the other; the VM installs through whichever
// answers its PXE first, that instance is SIGKILLed, and the survivor's
// power-on boots it from disk (boot-once in the shared store); a reprovision
// through the survivor reinstalls it with a new session token; then, the
// killed instance restarted, a reprovision with power asked of both at once
// must power-cycle the VM exactly once. It needs what TestBMCLifecycle needs.
//
// The boot modes of issue 16 (each test's doc comment has the detail):
//
//   - TestAuthoritative: a BIOS and a UEFI VM on a VLAN whose only DHCP
//     server is provisiond --dhcp-mode authoritative lease their addresses
//     (one by its Machine's ip: reservation) and boot to their configs; the
//     same VMs then boot with dnsmasq as the full DHCP server, the reference
//     for the "figure:" lines.
//   - TestAuthoritativePerfdhcp: perfdhcp's full DORA exchanges, relayed, at
//     1,000/s for 10 s and as an avalanche of 1,000 new clients: no address
//     ACKed twice, every ACKed address leased.
//   - TestAuthoritativeLeaseCrash: SIGKILLs during DORA exchanges, on bbolt
//     and on etcd: no ACKed lease is lost, and a returning MAC is offered its
//     address again.
//   - TestSecureBoot: OVMF's Secure Boot build (q35, SMM, Microsoft keys
//     enrolled: OVMF_CODE_4M.secboot.fd + OVMF_VARS_4M.ms.fd) on provisiond
//     --dhcp-mode authoritative --shim-dir, with Debian's signed shim and
//     network GRUB: a loader: shim profile boots shim, GRUB, its per-MAC GRUB
//     config and Debian's signed kernel over TFTP (the kernel prints "Secure
//     boot enabled"), fetches its own config with its token and phones home;
//     its next power-on gets GRUB's exit (boot-local). The same firmware
//     offered the embedded unsigned ipxe.efi refuses it (Access Denied), with
//     no script served. A dnsmasq DHCP+TFTP run of the same chain is the
//     reference figure. GRUB 2.06 names its TFTP files with a leading "/"
//     (/grub/machines/52:54:00:..:..:...cfg, from ${net_default_mac}), shim
//     asks blksize 512 and GRUB 1024 without windowsize, and a missing
//     per-MAC file leaves GRUB at its prompt. Needs shim-signed and
//     grub-efi-amd64-signed; ~60 s on an idle host, ~150 s on a loaded one.
//   - TestUKIBoot: a UKI (the test OS with systemd-stub and a fixed command
//     line, signed with OVMF's snakeoil key) over UEFI HTTP Boot with Secure
//     Boot enforced and PXE off, in authoritative mode: the firmware gets the
//     UKI's URL, the kernel reports Secure Boot, the test OS fetches its
//     config without a token exactly once (another host and provisiond's own
//     host are refused), phones home with the token minted then; installed,
//     its next power-on gets no boot file; an unsigned copy is refused. Needs
//     systemd-boot-efi, sbsigntool and openssl.
//
// Inspection and the boot timeline (issue 17):
//
//   - TestInspect: a VM with chosen hardware (-smp 2, -m 1536, two virtio
//     disks with serials, an SMBIOS identity) boots an inspect: true
//     profile; the test OS downloads /agent/amd64 and runs it with no flags;
//     the inventory must then hold exactly those facts. A Machine matching
//     the SMBIOS serial (not the MAC) is then added to Git, and the VM's next
//     boot gets its profile, whose config names the disk by serial.
//   - TestStalledAssetMissing: the same VM with its kernel missing from
//     --assets: one asset-missing event, a stalled mark with "kernel" as the
//     last step (API, event, metric), and no event per iPXE retry.
//   - TestInspectArm64: the inspection on an arm64 UEFI VM (QEMU virt, EDK2,
//     TCG), the agent served from --agent-dir. Needs qemu-system-arm,
//     qemu-efi-aarch64 and PROVISIOND_ARM64_ROOT: a directory where Debian's
//     arm64 cloud kernel and busybox-static are unpacked (see .ci/run).
//
// The daemon these tests run is built static (testutil.Binary): it serves
// itself as the agent, which runs in the test OS without a libc.
package e2e
