#!/usr/bin/env bash
# HTTP boot-path figures with wrk on loopback: a generated profiles directory of
# N Machines (default 10,000, each with its own Butane-rendered Ignition), then
# startup time, RSS, /ipxe and /ignition req/s at -c16, and a full reload.
# Every /ipxe request opens a provisioning session (a synchronous store write).
# wrk cannot carry each session's token, so the daemon runs with the token and
# refetch checks relaxed: each /ignition still checks the session and writes
# its fetch count. wrk is every machine from loopback, hence --trust-loopback;
# --max-discovered keeps the machines it makes up.
#
# Right after provisiond's /ipxe run, matchbox (the tool provisiond replaces)
# serves /ipxe in the same run, with the same wrk script, over 10 groups
# selected by MAC. It is built at a pinned version into bin/ from a throwaway
# module (its sources checked against the Go checksum database, as the
# Makefile builds cyclonedx-gomod); none of its code enters this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
DUR=${DUR:-10s}
PORT=${PORT:-18080}
MATCHBOX_VERSION=${MATCHBOX_VERSION:-v0.11.0}
MATCHBOX_PORT=${MATCHBOX_PORT:-18090}
MATCHBOX_GROUPS=10
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)"; exit 1; }
work=$(mktemp -d)
pid=""
mbpid=""
trap 'kill $pid $mbpid 2>/dev/null || true; wait $pid $mbpid 2>/dev/null || true; rm -rf "$work"' EXIT

# matchbox: built once per version; a failed build skips the comparison.
matchbox=bin/matchbox-$MATCHBOX_VERSION
if [ ! -x "$matchbox" ]; then
  mkdir -p bin
  root=$PWD
  if ! (tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT && cd "$tmp" \
      && go mod init provisiond-bench-matchbox >/dev/null 2>&1 \
      && go get "github.com/poseidon/matchbox/cmd/matchbox@$MATCHBOX_VERSION" \
      && CGO_ENABLED=0 go build -o "$root/$matchbox" github.com/poseidon/matchbox/cmd/matchbox) >"$work/matchbox-build.log" 2>&1; then
    echo "matchbox $MATCHBOX_VERSION: could not be built, no side-by-side run: $(tail -1 "$work/matchbox-build.log")"
    matchbox=""
  fi
fi

go run ./scripts/genprofiles -n "$N" -dir "$work/profiles"
# Other work on the host skews every figure: say how busy it was.
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
start=$(date +%s.%N)
serve() {
  ./bin/provisiond serve --profiles "$work/profiles" --data-dir "$work/data" --http-addr "127.0.0.1:$PORT" \
    --advertise-url "http://127.0.0.1:$PORT" --log-level warn --allow-config-without-token --allow-config-refetch \
    --trust-loopback --max-discovered 1000000 2>>"$work/log" &
  pid=$!
}
serve
until curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
  kill -0 $pid 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.05
done
ready=$(date +%s.%N)
printf 'machines: %d\nstartup to healthy: %.2f s\n' "$N" "$(echo "$ready - $start" | bc)"

# Each request names a random one of the first COUNT machines (genprofiles' MACs).
randlua() {
  cat <<LUA
math.randomseed(os.time())
request = function()
  local i = math.random(0, $1 - 1)
  -- wrk embeds LuaJIT (Lua 5.1): no bitwise operators.
  local mac = string.format("02-00-00-%02x-%02x-%02x", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  return wrk.format("GET", wrk.path .. "?mac=" .. mac)
end
LUA
}
randlua "$N" >"$work/rand.lua"
# matchbox gets the same requests, over the machines its groups select.
randlua "$MATCHBOX_GROUPS" >"$work/matchbox.lua"

# matchbox's data: one group per machine, selected by MAC, each with its own
# profile: the same iPXE boot (kernel, initrd, args with the Ignition URL).
# /ipxe reads no Ignition template, so none is written.
if [ -n "$matchbox" ]; then
  mb=$work/matchbox
  mkdir -p "$mb/groups" "$mb/profiles" "$mb/assets"
  # matchbox finds a profile by its id: profiles/<id>.json.
  for ((i = 0; i < MATCHBOX_GROUPS; i++)); do
    id=$(printf 'node%05d' "$i")
    mac=$(printf '02:00:00:%02x:%02x:%02x' $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255)))
    printf '{"id": "%s", "name": "%s", "profile": "%s", "selector": {"mac": "%s"}, "metadata": {"hostname": "%s.bench"}}\n' \
      "$id" "$id" "$id" "$mac" "$id" >"$mb/groups/$id.json"
    printf '{"id": "%s", "name": "worker", "boot": {"kernel": "/assets/flatcar/flatcar_production_pxe.vmlinuz", "initrd": ["--name main /assets/flatcar/flatcar_production_pxe_image.cpio.gz"], "args": ["initrd=main", "flatcar.first_boot=yes", "console=ttyS0", "ignition.config.url=http://127.0.0.1:%d/ignition?mac=${mac:hexhyp}"]}}\n' \
      "$id" "$MATCHBOX_PORT" >"$mb/profiles/$id.json"
  done
  "$matchbox" -address "127.0.0.1:$MATCHBOX_PORT" -data-path "$mb" -assets-path "$mb/assets" -log-level error 2>>"$work/matchbox.log" &
  mbpid=$!
  for ((try = 0; try < 100; try++)); do
    curl -fsS "http://127.0.0.1:$MATCHBOX_PORT/ipxe?mac=02-00-00-00-00-00" >"$work/matchbox.ipxe" 2>/dev/null && break
    kill -0 $mbpid 2>/dev/null || break
    sleep 0.05
  done
  grep -q '^kernel ' "$work/matchbox.ipxe" || { echo "matchbox $MATCHBOX_VERSION serves no boot script at /ipxe:"; cat "$work/matchbox.ipxe" "$work/matchbox.log"; exit 1; }
fi

# wrkline LABEL CONNS DURATION URL LUA: one wrk run, printed as one line; its
# req/s in $rps. Non-2xx answers count in req/s: they are printed beside it.
wrkline() {
  local out p99 non2xx
  out=$(wrk -t2 -c"$2" -d"$3" --latency -s "$5" "$4")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-10s %s req/s, p99 %s (wrk -c%s %s)%s\n' "$1" "$rps" "$p99" "$2" "$3" "${non2xx:+  non-2xx: $non2xx}"
}
# /ipxe first: it opens the sessions /ignition needs.
# -c64 is the daemon's limit of connections per address: a connection wrk
# opens before the daemon has noticed an old one close gets a 503.
wrkline /ipxe 64 3s "http://127.0.0.1:$PORT/ipxe" "$work/rand.lua"
wrkline /ipxe 16 "$DUR" "http://127.0.0.1:$PORT/ipxe" "$work/rand.lua"
if [ -n "$matchbox" ]; then
  ours=$rps
  wrkline "matchbox $MATCHBOX_VERSION /ipxe, $MATCHBOX_GROUPS groups:" 16 "$DUR" "http://127.0.0.1:$MATCHBOX_PORT/ipxe" "$work/matchbox.lua"
  printf '/ipxe: provisiond (%d machines) / matchbox (%d groups) = %.2fx\n' "$N" "$MATCHBOX_GROUPS" "$(echo "$ours / $rps" | bc -l)"
  kill $mbpid; wait $mbpid 2>/dev/null || true; mbpid=""
fi
# A non-2xx here is a machine wrk never sent to /ipxe: no session.
wrkline /ignition 16 "$DUR" "http://127.0.0.1:$PORT/ignition" "$work/rand.lua"
# File-backed RSS is mostly the store's mmap: page cache the kernel can reclaim.
printf 'RSS after load: %s MiB (anonymous %s, file-backed %s)\n' "$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)" \
  "$(awk '/RssAnon/ {printf "%.1f", $2/1024}' /proc/$pid/status)" "$(awk '/RssFile/ {printf "%.1f", $2/1024}' /proc/$pid/status)"
printf 'peak RSS: %s MiB\n' "$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$pid/status)"

# Full reload: change the template so every machine re-translates.
before=$(curl -fsS "http://127.0.0.1:$PORT/healthz" | sed -n 's/.*"last_reload":"\([^"]*\)".*/\1/p')
echo "# changed" >>"$work/profiles/worker.bu"
until now=$(curl -fsS "http://127.0.0.1:$PORT/healthz" | sed -n 's/.*"last_reload":"\([^"]*\)".*/\1/p'); [ "$now" != "$before" ]; do sleep 0.05; done
curl -fsS "http://127.0.0.1:$PORT/healthz" | sed -n 's/.*"last_reload_ms":\([0-9.]*\).*/full reload (every Butane re-translated): \1 ms/p'
printf 'peak RSS after reload: %s MiB\n' "$(awk '/VmHWM/ {printf "%.1f", $2/1024}' /proc/$pid/status)"

# Restart on the same data dir: translations come from the persisted cache.
kill "$pid"; wait "$pid" 2>/dev/null || true
start=$(date +%s.%N)
serve
until curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
  kill -0 $pid 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.05
done
printf 'restart to healthy (translation cache warm): %.2f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
printf 'RSS after warm start: %s MiB\n' "$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$pid/status)"

# What went wrong under load, if anything: the daemon's warnings and errors,
# grouped (the relaxed-checks warning at start is expected).
lines=$(grep -E 'level=(WARN|ERROR)' "$work/log" | grep -v 'checks relaxed by flag' |
  sed -E 's/^time=[^ ]+ //; s/mac=[^ ]+/mac=M/g; s/machine=[^ ]+/machine=M/g; s/[0-9a-f]{2}(:[0-9a-f]{2}){5}/M/g' | sort | uniq -c | sort -rn | head -8) || true
printf 'daemon warnings and errors: %s\n' "${lines:-none}"
