#!/bin/busybox sh
# /init of the e2e test OS, a stand-in for an OS installer: bring up the virtio
# NIC, lease an address from the site's DHCP server, fetch the Ignition config
# named on the kernel command line and print it between markers on the serial
# console, phone home to provisiond as the config says, then reboot (QEMU runs
# with -no-reboot, so the VM process exits and the test can wait for it). On
# any failure it prints PVD-E2E-FAIL and powers off.

/bin/busybox --install -s
mount -t proc proc /proc
# Only errors from the kernel on the console from here on: a late message
# (a "tsc: Refined TSC clocksource calibration" was seen) can land inside a
# line the test reads, such as PVD-IGNITION-URL's.
echo 4 >/proc/sys/kernel/printk
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

# An inspection profile (inspect: true) names provisiond on the command line:
# run the agent it serves (provisiond itself) with no flags, as a discovery
# image does; then install as below if a config is named too, else power off.
agent=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^provisiond\.url=//p')
if [ -n "$agent" ]; then
	case $(uname -m) in
	x86_64) agent="$agent/agent/amd64" ;;
	aarch64) agent="$agent/agent/arm64" ;;
	*) fail "no agent for $(uname -m)" ;;
	esac
	wget -q -O /tmp/provisiond "$agent" || fail "fetch $agent"
	chmod +x /tmp/provisiond
	echo "PVD-AGENT-BYTES $(wc -c </tmp/provisiond)"
	start=$(cut -d ' ' -f 1 /proc/uptime)
	echo PVD-AGENT-BEGIN
	/tmp/provisiond agent 2>&1
	status=$?
	echo PVD-AGENT-END
	end=$(cut -d ' ' -f 1 /proc/uptime)
	echo "PVD-AGENT-EXIT $status"
	awk "BEGIN { printf \"PVD-AGENT-SECONDS %.2f\\n\", $end - $start }"
	grep -q ignition.config.url= /proc/cmdline || { echo PVD-E2E-DONE; poweroff -f; }
fi

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
# A signed UKI's command line is fixed when it is built: it names its machine
# by ${mac}, which the OS fills in, as Talos does with talos.config.
case "$url" in
*'${mac}'*) url=$(echo "$url" | sed "s/[$]{mac}/$(cat /sys/class/net/eth0/address)/g") ;;
esac
echo "PVD-IGNITION-URL $url"
wget -q -O /tmp/config.ign "$url" || fail "fetch $url"

# Keep late kernel messages from landing between the markers.
echo 1 >/proc/sys/kernel/printk
echo PVD-IGNITION-BEGIN
cat /tmp/config.ign
echo
echo PVD-IGNITION-END

# Phone home the way the config's provisiond-phone-home.service would on a
# real install: POST to the PHONE_HOME_URL it names with its PHONE_HOME_TOKEN,
# both filled in by provisiond for this boot. In the JSON the unit's contents
# are one string: a value ends at the escaped newline's backslash.
value() { grep -o "$1"'=[^\" ]*' /tmp/config.ign | head -n 1 | cut -d= -f2-; }
home=$(value PHONE_HOME_URL)
token=$(value PHONE_HOME_TOKEN)
[ -n "$home" ] && [ -n "$token" ] || fail "no PHONE_HOME_URL and PHONE_HOME_TOKEN in the config"
echo "PVD-PHONE-HOME $home"
# -S prints the status line on stderr; wget fails on anything but 2xx.
wget -S -q -O /tmp/phone-home.out --header "Authorization: Bearer $token" --post-data '' "$home" 2>/tmp/phone-home.err
status=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' /tmp/phone-home.err | tail -n 1)
echo "PVD-PHONED-HOME ${status:-none}"
if [ "$status" != 200 ]; then
	cat /tmp/phone-home.err /tmp/phone-home.out
	fail "phone-home answered ${status:-nothing}"
fi
# The install is done: boot again, now from "disk" as provisiond will say.
reboot -f
