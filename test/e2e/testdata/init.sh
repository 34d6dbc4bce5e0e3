#!/bin/busybox sh
# /init of the e2e test OS: bring up the virtio NIC, lease an address from the
# site's DHCP server, fetch the Ignition config named on the kernel command line
# and print it between markers on the serial console, then power off (QEMU runs
# with -no-reboot, so the VM process exits and the test can wait for it).

/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
	echo "PVD-E2E-FAIL: $*"
	poweroff -f
}

# The cloud kernel builds virtio_net as a module; /etc/modules lists the ones
# that are not built in, in dependency order.
while read -r m; do
	insmod "/lib/modules/$m.ko" || fail "insmod $m"
done </etc/modules

i=0
while ! ip link show eth0 >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -gt 100 ] && fail "no eth0"
	sleep 0.1
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /udhcpc.script -n -q -t 10 -T 3 || fail "no DHCP lease"

# The URL holds '?' and '&': no globbing while splitting the command line.
set -f
url=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	ignition.config.url=*) url="${arg#ignition.config.url=}" ;;
	esac
done
set +f
[ -n "$url" ] || fail "no ignition.config.url on the kernel command line"
echo "PVD-IGNITION-URL $url"
wget -q -O /tmp/config.ign "$url" || fail "fetch $url"

# Keep late kernel messages from landing between the markers.
echo 1 >/proc/sys/kernel/printk
echo PVD-IGNITION-BEGIN
cat /tmp/config.ign
echo
echo PVD-IGNITION-END
poweroff -f
