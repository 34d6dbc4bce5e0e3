#!/usr/bin/env bash
# HTTP boot-path figures with wrk on loopback: a generated profiles directory of
# N Machines (default 10,000, each with its own Butane-rendered Ignition), then
# startup time, RSS, /ipxe and /ignition req/s at -c16, and a full reload.
# Every /ipxe request opens a provisioning session (a synchronous store write).
# wrk cannot carry each session's token, so the daemon runs with the token and
# refetch checks relaxed: each /ignition still checks the session and writes
# its fetch count. wrk is every machine from loopback, hence --trust-loopback;
# --max-discovered keeps the machines it makes up.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
DUR=${DUR:-10s}
PORT=${PORT:-18080}
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)"; exit 1; }
work=$(mktemp -d)
pid=""
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT

go run ./scripts/genprofiles -n "$N" -dir "$work/profiles"
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

# Each request names a random one of the N machines.
cat >"$work/rand.lua" <<LUA
math.randomseed(os.time())
request = function()
  local i = math.random(0, $N - 1)
  -- wrk embeds LuaJIT (Lua 5.1): no bitwise operators.
  local mac = string.format("02-00-00-%02x-%02x-%02x", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  return wrk.format("GET", wrk.path .. "?mac=" .. mac)
end
LUA
# /ipxe first: it opens the sessions /ignition needs.
for path in /ipxe /ignition; do
  [ "$path" = /ipxe ] && printf '/ipxe at -c64: %s req/s\n' "$(wrk -t2 -c64 -d3s -s "$work/rand.lua" "http://127.0.0.1:$PORT$path" | awk '/Requests\/sec/ {print $2}')"
  out=$(wrk -t2 -c16 -d"$DUR" --latency -s "$work/rand.lua" "http://127.0.0.1:$PORT$path")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-10s %s req/s, p99 %s (wrk -c16 %s)%s\n' "$path" "$rps" "$p99" "$DUR" "${non2xx:+  non-2xx: $non2xx (machines wrk never booted)}"
done
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
