#!/usr/bin/env bash
# Boot-storm figures for the shared etcd store, on loopback: a 3-member etcd
# (test/etcdserver, plain processes), two `provisiond serve --store etcd`
# instances sharing the API token and secret key, and scripts/bootstorm
# replaying N machines' /ipxe + /ignition + phone-home through both (each
# machine's config and phone-home go through the other instance than its
# script). The same storm then runs against one instance on bbolt, for
# comparison in the same run. Then two fault figures:
#   leader change: a steady storm runs while the etcd leader is killed
#     (SIGKILL, a crash), then again with SIGTERM (a clean stop, which hands
#     leadership over); failed boots are counted, the member restarted.
#   join: a third instance starts against the live cluster; the time from
#     exec to its first /healthz 200 and its first /ipxe 200.
# Everything (etcd, daemons, load) shares this host's cores: the figures are
# for comparing runs on one host, not for sizing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}            # machines in the storm
C=${C:-16}              # machines booting at once
STEADY=${STEADY:-20s}   # length of each leader-change storm
KILL_AT=${KILL_AT:-5}   # seconds into it the leader is stopped
BASE=${BASE:-24000}     # etcd clients BASE+1..3, peers BASE+11..13; provisiond BASE+101..
KEEP=${KEEP:-}          # non-empty: keep the work dir (logs, data) and print its path
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ -n "$KEEP" ]; then echo "kept $work"; else rm -rf "$work"; fi' EXIT

make -s build
# Other work on the host skews every figure: say how busy it was.
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
go build -o "$work/etcd" ./test/etcdserver
go build -o "$work/bootstorm" ./scripts/bootstorm
go run ./scripts/genprofiles -n "$N" -dir "$work/profiles"
# Instances must share the API token and the secret key; the first creates the key.
head -c 32 /dev/urandom | base64 | tr -d '=+/\n' >"$work/api-token"

now() { date +%s.%N; }
since() { echo "($(now) - $1) * 1000" | bc -l | xargs printf '%.0f'; } # ms since $1

# --- etcd ---------------------------------------------------------------
etcd_client() { echo "http://127.0.0.1:$((BASE + $1))"; }
etcd_pid=()
start_etcd() {
  local i=$1 cluster="" j
  for j in 1 2 3; do cluster+="${cluster:+,}e$j=http://127.0.0.1:$((BASE + 10 + j))"; done
  "$work/etcd" --name "e$i" --data-dir "$work/etcd$i" --log-level warn \
    --listen-client-urls "$(etcd_client "$i")" --advertise-client-urls "$(etcd_client "$i")" \
    --listen-peer-urls "http://127.0.0.1:$((BASE + 10 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 10 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state new >>"$work/etcd$i.log" 2>&1 &
  etcd_pid[i]=$!
  pids+=($!)
}
# status I: member I's status from etcd's JSON gateway, or nothing.
status() { curl -fsS -m 1 -X POST -d '{}' "$(etcd_client "$1")/v3/maintenance/status" 2>/dev/null || true; }
field() { sed -n "s/.*\"$1\":\"\([0-9]*\)\".*/\1/p"; }
# leader_of I: the index of the leader member I follows, or nothing. Member
# ids outlive restarts (they are in the data dirs), so ids[] is read once.
ids=()
leader_of() {
  local lead j
  lead=$(status "$1" | field leader)
  for j in 1 2 3; do
    [ -n "$lead" ] && [ "${ids[j]:-}" = "$lead" ] && { echo "$j"; return 0; }
  done
  return 0
}
# counters: the cluster's Txn and Range calls (every member's), the raft
# proposals committed and WAL fsync seconds and count (member 1's: each
# member commits and syncs every write), from the members' /metrics.
counters() {
  local j
  for j in 1 2 3; do curl -fsS -m 2 "$(etcd_client "$j")/metrics" | sed "s/^/$j /" || true; done | awk '
    $2 ~ /^grpc_server_handled_total\{.*grpc_method="Txn"/ { txn += $3 }
    $2 ~ /^grpc_server_handled_total\{.*grpc_method="Range"/ { rng += $3 }
    $1 == 1 && $2 == "etcd_server_proposals_committed_total" { prop = $3 }
    $1 == 1 && $2 == "etcd_disk_wal_fsync_duration_seconds_sum" { fs = $3 }
    $1 == 1 && $2 == "etcd_disk_wal_fsync_duration_seconds_count" { fc = $3 }
    END { printf "%d %d %d %f %d\n", txn, rng, prop, fs, fc }'
}
# per_boot BEFORE AFTER BOOTS: what the store cost per boot between two counters.
per_boot() {
  read -r t0 r0 p0 s0 c0 <<<"$1"
  read -r t1 r1 p1 s1 c1 <<<"$2"
  awk -v b="$3" -v t="$((t1 - t0))" -v r="$((r1 - r0))" -v p="$((p1 - p0))" -v s="$(echo "$s1 - $s0" | bc -l)" -v c="$((c1 - c0))" 'BEGIN {
    if (b == 0) b = 1
    printf "  etcd per boot: %.1f Txn calls, %.1f Range calls, %.1f raft proposals (writes tried); WAL fsync mean %.1f ms over %d\n", t / b, r / b, p / b, c ? s * 1000 / c : 0, c }'
}
# wait_leader EXCEPT: until a member other than EXCEPT sees a leader other than EXCEPT.
wait_leader() {
  local l j
  for ((try = 0; try < 600; try++)); do
    for j in 1 2 3; do
      [ "$j" = "${1:-}" ] && continue
      l=$(leader_of "$j")
      [ -n "$l" ] && [ "$l" != "${1:-}" ] && { echo "$l"; return 0; }
    done
    sleep 0.01
  done
  echo "no etcd leader elected" >&2
  return 1
}
for i in 1 2 3; do start_etcd "$i"; done
for i in 1 2 3; do
  for ((try = 0; try < 500; try++)); do
    ids[i]=$(status "$i" | field member_id)
    [ -n "${ids[i]}" ] && break
    sleep 0.02
  done
done
leader=$(wait_leader)
endpoints="$(etcd_client 1),$(etcd_client 2),$(etcd_client 3)"
echo "etcd: 3 members (v3.6.16, test/etcdserver) on loopback, leader e$leader"

# --- provisiond ---------------------------------------------------------
# serve NAME PORT STORE-FLAGS...: one instance, no proxyDHCP or TFTP.
serve() {
  local name=$1 port=$2
  shift 2
  ./bin/provisiond serve --profiles "$work/profiles" --data-dir "$work/$name" \
    --http-addr "127.0.0.1:$port" --advertise-url "http://127.0.0.1:$port" --log-level warn --trust-loopback \
    --api-token-file "$work/api-token" --secret-key-file "$work/secret-key" "$@" 2>>"$work/$name.log" &
  pids+=($!)
  last=$!
}
# healthy NAME PORT PID: wait for /healthz 200.
healthy() {
  for ((try = 0; try < 600; try++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$2/healthz" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.05
  done
  echo "$1 did not become healthy:" >&2
  cat "$work/$1.log" >&2
  return 1
}
etcd_flags=(--store etcd --etcd-endpoints "$endpoints")
pa=$((BASE + 101)) pb=$((BASE + 102)) pc=$((BASE + 103)) pbolt=$((BASE + 110))
serve etcd-a "$pa" "${etcd_flags[@]}"
healthy etcd-a "$pa" "$last" # it writes the shared secret key
serve etcd-b "$pb" "${etcd_flags[@]}"
healthy etcd-b "$pb" "$last"

# storm LABEL URL[,URL] [bootstorm flags]: prints bootstorm's report; failed
# boots are in it (bootstorm exits 1), they do not stop this script.
storm() {
  local label=$1 urls=$2
  shift 2
  "$work/bootstorm" -instances "$urls" -n "$N" -c "$C" -label "$label" "$@" || true
}

echo
echo "== boot storm: $N machines, -c $C; /ipxe + /ignition + phone-home per boot"
before=$(counters)
storm "etcd, 2 instances" "http://127.0.0.1:$pa,http://127.0.0.1:$pb" | tee "$work/storm.out"
per_boot "$before" "$(counters)" "$(sed -n 's/.*: \([0-9]*\) boots in .*/\1/p' "$work/storm.out")"
# The same per-boot cost with one machine at a time: no writer contends.
before=$(counters)
storm "etcd, 2 instances, -c 1" "http://127.0.0.1:$pa,http://127.0.0.1:$pb" -n 100 -c 1 | tee "$work/storm.out"
per_boot "$before" "$(counters)" "$(sed -n 's/.*: \([0-9]*\) boots in .*/\1/p' "$work/storm.out")"
serve bolt "$pbolt"
boltpid=$last
healthy bolt "$pbolt" "$boltpid"
storm "bbolt, 1 instance" "http://127.0.0.1:$pbolt"
kill "$boltpid"
wait "$boltpid" 2>/dev/null || true

# --- leader change ------------------------------------------------------
# change SIGNAL: a steady storm through both instances; KILL_AT s in, the
# leader gets SIGNAL; once another leads, it restarts on its data dir.
change() {
  local sig=$1 out=$work/change-$1.out t0 old tkill new pid
  t0=$(now)
  storm "leader $sig" "http://127.0.0.1:$pa,http://127.0.0.1:$pb" -duration "$STEADY" -timeline >"$out" &
  pid=$!
  sleep "$KILL_AT"
  old=$(wait_leader)
  tkill=$(now)
  exec 3>&2 2>/dev/null # bash's "Killed" notice when it reaps the member
  kill "-$sig" "${etcd_pid[old]}"
  new=$(wait_leader "$old")
  elected=$(since "$tkill")
  wait "${etcd_pid[old]}" || true
  exec 2>&3 3>&-
  printf 'leader e%s got SIG%s at t=%.1fs; e%s leads %s ms later\n' "$old" "$sig" "$(echo "$tkill - $t0" | bc)" "$new" "$elected"
  sleep 3
  start_etcd "$old"
  printf 'e%s restarted at t=%.1fs\n' "$old" "$(echo "$(now) - $t0" | bc)"
  wait "$pid"
  cat "$out"
}
echo
echo "== etcd leader change under a steady storm ($STEADY, -c $C, both instances)"
change KILL
wait_leader >/dev/null
sleep 2 # the restarted member catches up
change TERM

# --- join -----------------------------------------------------------------
echo
echo "== a third instance joins the live cluster"
t0=$(now)
serve etcd-c "$pc" "${etcd_flags[@]}"
joinpid=$last
health="" script=""
for ((try = 0; try < 3000; try++)); do
  [ -z "$health" ] && curl -fsS -o /dev/null "http://127.0.0.1:$pc/healthz" 2>/dev/null && health=$(since "$t0")
  [ -z "$script" ] && curl -fsS -o /dev/null "http://127.0.0.1:$pc/ipxe?mac=02-00-00-00-00-01" 2>/dev/null && script=$(since "$t0")
  [ -n "$health" ] && [ -n "$script" ] && break
  kill -0 "$joinpid" 2>/dev/null || { cat "$work/etcd-c.log"; exit 1; }
  sleep 0.01
done
printf 'exec to first /healthz 200: %s ms; to first /ipxe 200: %s ms\n' "${health:-never}" "${script:-never}"
storm "etcd, 3 instances" "http://127.0.0.1:$pa,http://127.0.0.1:$pb,http://127.0.0.1:$pc"

# --- what the daemons logged ------------------------------------------------
echo
echo "== warnings and errors the daemons logged (count, message)"
for name in etcd-a etcd-b etcd-c bolt; do
  # The relaxed --trust-loopback warning at start is expected.
  lines=$(grep -E 'level=(WARN|ERROR)' "$work/$name.log" | grep -v 'checks relaxed by flag' |
    sed -E 's/^time=[^ ]+ //; s/mac=[^ ]+/mac=M/g; s/machine=[^ ]+/machine=M/g; s/[0-9a-f]{2}([:-][0-9a-f]{2}){5}/M/g; s/(error="[^"]{0,160})[^"]*"/\1"/' |
    sort | uniq -c | sort -rn | head -10) || true
  printf '%s: %s\n' "$name" "${lines:-none}"
done
