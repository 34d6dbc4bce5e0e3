#!/usr/bin/env bash
# bench-tftp.sh: seconds to fetch ipxe.efi (~1 MB) over TFTP with atftp from
# provisiond's TFTP server (internal/tftp) and from dnsmasq's, both serving the
# same file from disk on the loopback of a throwaway network namespace (dnsmasq
# can only listen on port 69). Prints the median of RUNS single fetches at
# blksize 1468 and at the RFC 1350 default 512, and the wall time of 20
# concurrent blksize-1468 fetches.
#
# Needs root, ip (iproute2), atftp, dnsmasq (dnsmasq-base) and go.
# Usage: scripts/bench-tftp.sh        (RUNS=N to change the run count, default 5)
set -euo pipefail
# Command substitutions must fail the script too: each figure comes from one.
shopt -s inherit_errexit

RUNS=${RUNS:-5}
CONCURRENT=20
PORT_OURS=6969
cd "$(dirname "$0")/.."

for tool in ip atftp dnsmasq go timeout; do
	command -v "$tool" >/dev/null || { echo "bench-tftp: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "bench-tftp: needs root (network namespace)" >&2; exit 1; }

work=$(mktemp -d)
ns=provisiond-bench-tftp-$$
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/root" "$work/out"
go build -o "$work/benchserver" ./internal/tftp/internal/benchserver
ipxedust=$(go list -m -f '{{.Dir}}' github.com/tinkerbell/ipxedust)
install -m 0644 "$ipxedust/binary/ipxe.efi" "$work/root/ipxe.efi"
size=$(stat -c %s "$work/root/ipxe.efi")

ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { ip netns exec "$ns" "$@"; }

# Both servers are killed by cleanup, and by timeout should this script hang.
# Started without the in_ns function: backgrounding a function forks a
# subshell, and $! would be that subshell, not timeout (ip netns exec execs).
ip netns exec "$ns" timeout 600 "$work/benchserver" -addr "127.0.0.1:$PORT_OURS" -root "$work/root" &
pids+=($!)
ip netns exec "$ns" timeout 600 dnsmasq --keep-in-foreground --port=0 --enable-tftp \
	--tftp-root="$work/root" --listen-address=127.0.0.1 --bind-interfaces \
	--user=root --pid-file="$work/dnsmasq.pid" --log-facility="$work/dnsmasq.log" &
pids+=($!)
sleep 1

# fetch PORT OUT [atftp options...]: one verified fetch, bounded.
fetch() {
	local port=$1 out=$2
	shift 2
	local opts=()
	for o in "$@"; do opts+=(--option "$o"); done
	in_ns timeout 60 atftp "${opts[@]}" -g -r ipxe.efi -l "$out" 127.0.0.1 "$port" >/dev/null 2>&1
	cmp -s "$out" "$work/root/ipxe.efi" || { echo "bench-tftp: bad copy from port $port" >&2; exit 1; }
}

# median PORT [atftp options...]: median seconds of RUNS single fetches.
median() {
	local port=$1
	shift
	local times=() start
	for _ in $(seq "$RUNS"); do
		start=$EPOCHREALTIME
		fetch "$port" "$work/out/single" "$@"
		times+=("$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}')")
	done
	printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'
}

# concurrent PORT: wall seconds for CONCURRENT simultaneous fetches.
concurrent() {
	local port=$1 start fpids=()
	start=$EPOCHREALTIME
	for i in $(seq "$CONCURRENT"); do
		fetch "$port" "$work/out/c$i" "blksize 1468" "tsize 0" &
		fpids+=($!)
	done
	for pid in "${fpids[@]}"; do wait "$pid"; done
	awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}'
}

echo "ipxe.efi, $size bytes, atftp on namespace loopback, median of $RUNS runs (seconds)"
printf '%-34s %10s %10s\n' "" provisiond dnsmasq
printf '%-34s %10s %10s\n' "blksize 1468 + tsize" \
	"$(median $PORT_OURS "blksize 1468" "tsize 0")" "$(median 69 "blksize 1468" "tsize 0")"
printf '%-34s %10s %10s\n' "no options (512-byte blocks)" \
	"$(median $PORT_OURS)" "$(median 69)"
printf '%-34s %10s %10s\n' "$CONCURRENT concurrent, blksize 1468 (wall)" \
	"$(concurrent $PORT_OURS)" "$(concurrent 69)"
