package bmcsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Files WriteChassisScript's script keeps in its directory.
const (
	// CallsLog has a line per script call: a timestamp and the arguments.
	CallsLog = "calls.log"
	// BootsLog has a line per machine start: a timestamp and the boot device.
	BootsLog = "boots.log"
	// MachineLog is the machine's stdout and stderr.
	MachineLog = "machine.log"
)

// bootDevices are the devices a machine starts from, in Boot.Device terms.
var bootDevices = []string{"pxe", "disk", "cdrom", "bios"}

// WriteChassisScript writes dir/chassis.sh, a chassis-control program in the
// form ipmi_sim's lan.conf chassis_control expects, and returns its absolute
// path. Other callers run it the same way (ScriptChassis does):
//
//	chassis.sh <target> get <parm>...        prints "<parm>:<value>" lines
//	chassis.sh <target> set <parm> <value>... prints nothing; errors exit non-zero
//
// with parms power (0|1), reset (1: restart a running machine), shutdown (1:
// power off), boot (none|pxe|default|disk|cdrom|bios; disk is default, and
// setting it clears persistent and efi, as IPMI's boot flags carry all three),
// persistent (0|1), efi (0|1) and identify (accepted, ignored). ipmi_sim only
// ever passes one parm and only the ipmi_sim names.
//
// Powering on runs start(device), device being "pxe", "disk", "cdrom" or
// "bios" (no override boots "disk"), detached in its own session with stdio
// on MachineLog; a device for which start returns nil cannot be set. The
// command must stay in the foreground (no QEMU -daemonize): the script tracks
// its pid and powers off by killing its process group.
//
// State lives in dir, so a ScriptChassis and an ipmi_sim steer the same
// machine; calls are serialized with a lock file.
func WriteChassisScript(dir string, start func(device string) []string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	var cases, devices strings.Builder
	for _, dev := range bootDevices {
		argv := start(dev)
		if len(argv) == 0 {
			continue
		}
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = shellQuote(a)
		}
		fmt.Fprintf(&cases, "\t%s) set -- %s ;;\n", dev, strings.Join(quoted, " "))
		fmt.Fprintf(&devices, " %s", dev)
	}
	if devices.Len() == 0 {
		return "", errors.New("chassis script: start gives no command for any boot device")
	}
	script := strings.NewReplacer(
		"@DIR@", shellQuote(dir),
		"@DEVICES@", shellQuote(devices.String()+" "),
		"@CASES@", cases.String(),
	).Replace(chassisScript)
	path := filepath.Join(dir, "chassis.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", err
	}
	return path, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// chassisScript is POSIX sh (Debian's /bin/sh is dash) plus bash and
// util-linux's setsid and flock.
const chassisScript = `#!/bin/sh
# Chassis control written by bmcsim.WriteChassisScript; see its doc.
set -u
dir=@DIR@
devices=@DEVICES@

exec 9>>"$dir/lock"
flock -w 10 9 || { echo "chassis busy"; exit 1; }
echo "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ) $*" >>"$dir/calls.log"

# alive reports whether the recorded machine runs, setting pid. The start time
# guards against a recycled pid: the machine may exit on its own (a guest
# powering off) and its pid go to another process, whose group we would kill.
# A zombie counts as gone: nothing may reap the orphaned machine promptly.
alive() {
	[ -s "$dir/machine.pid" ] || return 1
	read -r pid want <"$dir/machine.pid"
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	set -- ${stat##*) }
	[ "$1" != Z ] && [ "${20}" = "$want" ]
}

starttime() {
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	set -- ${stat##*) }
	echo "${20}"
}

start() {
	dev=none persistent=0
	[ -s "$dir/boot" ] && read -r dev persistent _ <"$dir/boot"
	case $dev in none|default) dev=disk ;; esac
	case $dev in
@CASES@	*) echo "cannot boot from $dev"; return 1 ;;
	esac
	rm -f "$dir/machine.pid" "$dir/machine.pid.new"
	# setsid: a session of its own, so ipmi_sim's call returns at once and
	# power off can kill the whole group. No fd but stdio may be inherited:
	# ipmi_sim reads the script's stdout to EOF, later calls wait for the
	# lock, and ipmi_sim's UDP socket would stay bound while the machine runs.
	# bash, as dash cannot name fds above 9.
	setsid bash -c 'for fd in /proc/$$/fd/*; do
		fd=${fd##*/}
		[ "$fd" -le 2 ] || eval "exec $fd>&-"
	done
	echo $$ >"$0.new" && exec "$@"' "$dir/machine.pid" "$@" \
		</dev/null >>"$dir/machine.log" 2>&1 &
	i=0
	until [ -s "$dir/machine.pid.new" ]; do
		i=$((i + 1))
		[ $i -le 100 ] || { echo "machine did not start"; return 1; }
		sleep 0.05
	done
	read -r pid <"$dir/machine.pid.new"
	echo "$pid $(starttime "$pid")" >"$dir/machine.pid"
	rm -f "$dir/machine.pid.new"
	echo "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ) $dev" >>"$dir/boots.log"
	[ "$persistent" = 1 ] || rm -f "$dir/boot"
}

# stop kills the machine's process group, SIGTERM then SIGKILL after 2 s,
# and returns once it is gone.
stop() {
	if alive; then
		kill -TERM "-$pid" 2>/dev/null
		i=0
		while alive; do
			i=$((i + 1))
			[ $i -ne 40 ] || kill -KILL "-$pid" 2>/dev/null
			[ $i -le 100 ] || { echo "machine $pid survives SIGKILL"; return 1; }
			sleep 0.05
		done
		# Children that outlived the leader.
		kill -KILL "-$pid" 2>/dev/null
	fi
	rm -f "$dir/machine.pid"
}

flag() {
	case $1 in 0|1) ;; *) echo "invalid $2 value: $1"; exit 1 ;; esac
	[ -s "$dir/boot" ] || { echo "no boot override to set $2 on"; exit 1; }
	read -r dev persistent efi <"$dir/boot"
	case $2 in persistent) persistent=$1 ;; efi) efi=$1 ;; esac
	echo "$dev $persistent $efi" >"$dir/boot"
}

[ $# -ge 2 ] || { echo "usage: $0 target get|set parm..."; exit 1; }
op=$2
shift 2
case $op in
get)
	for parm in "$@"; do
		dev=none persistent=0 efi=0
		[ -s "$dir/boot" ] && read -r dev persistent efi <"$dir/boot"
		case $parm in
		power) if alive; then echo power:1; else echo power:0; fi ;;
		boot) echo "boot:$dev" ;;
		persistent) echo "persistent:$persistent" ;;
		efi) echo "efi:$efi" ;;
		*) echo "cannot get $parm"; exit 1 ;;
		esac
	done
	;;
set)
	while [ $# -gt 0 ]; do
		[ $# -ge 2 ] || { echo "no value for $1"; exit 1; }
		parm=$1 val=$2
		shift 2
		case $parm:$val in
		power:1) alive || start || exit 1 ;;
		power:0 | shutdown:1) stop || exit 1 ;;
		reset:1) if alive; then stop && start || exit 1; fi ;;
		reset:0 | shutdown:0) ;;
		boot:none) rm -f "$dir/boot" ;;
		boot:*)
			[ "$val" != default ] || val=disk
			case $devices in *" $val "*) ;; *) echo "cannot boot from $val"; exit 1 ;; esac
			[ "$val" != disk ] || val=default
			echo "$val 0 0" >"$dir/boot"
			;;
		persistent:* | efi:*) flag "$val" "$parm" ;;
		identify:*) ;;
		*) echo "cannot set $parm to $val"; exit 1 ;;
		esac
	done
	;;
*)
	echo "unknown operation: $op"
	exit 1
	;;
esac
`

// ScriptChassis is the Chassis a WriteChassisScript script controls, so
// another simulated BMC can steer the machine an ipmi_sim steers.
type ScriptChassis struct {
	Path string // the script
}

var _ Chassis = ScriptChassis{}

// run runs the script for the BMC at 0x20 (the script ignores the target) and
// returns its output as parm -> value.
func (c ScriptChassis) run(args ...string) (map[string]string, error) {
	cmd := exec.Command(c.Path, append([]string{"0x20"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", c.Path, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	vals := make(map[string]string)
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			vals[k] = v
		}
	}
	return vals, nil
}

// Power implements Chassis.
func (c ScriptChassis) Power() (bool, error) {
	vals, err := c.run("get", "power")
	if err != nil {
		return false, err
	}
	return vals["power"] == "1", nil
}

// SetPower implements Chassis.
func (c ScriptChassis) SetPower(on bool) error {
	_, err := c.run("set", "power", bit(on))
	return err
}

// Reset implements Chassis.
func (c ScriptChassis) Reset() error {
	_, err := c.run("set", "reset", "1")
	return err
}

// BootOverride implements Chassis.
func (c ScriptChassis) BootOverride() (Boot, error) {
	vals, err := c.run("get", "boot", "persistent", "efi")
	if err != nil {
		return Boot{}, err
	}
	b := Boot{Device: vals["boot"], Once: vals["persistent"] != "1", EFI: vals["efi"] == "1"}
	if b.Device == "default" {
		b.Device = "disk"
	}
	return b, nil
}

// SetBootOverride implements Chassis. Device "none" clears the override.
func (c ScriptChassis) SetBootOverride(b Boot) error {
	args := []string{"set", "boot", b.Device}
	if b.Device != "none" {
		args = append(args, "persistent", bit(!b.Once), "efi", bit(b.EFI))
	}
	_, err := c.run(args...)
	return err
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ReadBoots returns the boot device ("pxe", "disk", "cdrom" or "bios") of
// each machine start the script in dir made, oldest first.
func ReadBoots(dir string) ([]string, error) {
	return readLog(filepath.Join(dir, BootsLog))
}

// ReadCalls returns the arguments of each call of the script in dir, oldest
// first, e.g. "0x20 set power 1".
func ReadCalls(dir string) ([]string, error) {
	return readLog(filepath.Join(dir, CallsLog))
}

// readLog returns a log's lines without their leading timestamps; a missing
// log is empty.
func readLog(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		_, rest, _ := strings.Cut(sc.Text(), " ")
		lines = append(lines, rest)
	}
	return lines, sc.Err()
}
