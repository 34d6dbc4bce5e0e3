#!/usr/bin/env bash
# Authoritative DHCP figures with perfdhcp (kea-admin), as root, in two network
# namespaces joined by a veth pair (nothing leaves them): provisiond serve
# --dhcp-mode authoritative on 10.96.0.2 with one /16 Network, perfdhcp on
# 10.96.0.1 as a relay (it always is: giaddr set, answers to port 67).
# Full DORA exchanges at each rate of RATES for DUR seconds among CLIENTS MACs,
# each rate with its own MACs (new leases), printing DORA/s completed and the
# exchanges dropped; then the time to hand out 1,000 leases (--scenario
# avalanche: 1,000 new clients at once, retransmitting until each has its ACK).
# STORE=etcd runs against a one-member etcd (test/etcdserver) instead of bbolt.
# Daemon and load share this host's cores: the figures compare runs on one host.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"250 500 1000 2000 4000"}
DUR=${DUR:-5}
CLIENTS=${CLIENTS:-20000}
STORE=${STORE:-bolt}
KEEP=${KEEP:-} # non-empty: keep the work dir (logs, data) and print its path
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)"; exit 1; }
command -v perfdhcp >/dev/null || { echo "perfdhcp not installed (apt-get install kea-admin)"; exit 1; }
work=$(mktemp -d)
srv=pvdbench-srv-$$ cli=pvdbench-cli-$$
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true; ip netns del "$cli" 2>/dev/null || true
  if [ -n "$KEEP" ]; then echo "kept $work"; else rm -rf "$work"; fi' EXIT

go build -o "$work/provisiond" ./cmd/provisiond
echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
ip netns add "$srv"
ip netns add "$cli"
ip link add vsrv netns "$srv" type veth peer name vcli netns "$cli"
ip -n "$srv" addr add 10.96.0.2/16 dev vsrv
ip -n "$cli" addr add 10.96.0.1/16 dev vcli
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set vsrv up
ip -n "$cli" link set vcli up

mkdir "$work/profiles" "$work/assets"
cat >"$work/profiles/networks.yaml" <<'EOF'
kind: Network
name: bench
subnet: 10.96.0.0/16
range: [10.96.1.0, 10.96.255.254]
router: 10.96.0.1
dns: [10.96.0.1]
leaseTime: 1h
EOF
store=()
if [ "$STORE" = etcd ]; then
  go build -o "$work/etcd" ./test/etcdserver
  ip netns exec "$srv" "$work/etcd" --name bench --data-dir "$work/etcd-data" --log-level warn \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster bench=http://127.0.0.1:2380 >"$work/etcd.log" 2>&1 &
  pids+=($!)
  store=(--store etcd --etcd-endpoints http://127.0.0.1:2379)
fi
ip netns exec "$srv" "$work/provisiond" serve --profiles "$work/profiles" --assets "$work/assets" \
  --data-dir "$work/data" --http-addr 127.0.0.1:8080 --advertise-url http://10.96.0.2:8080 \
  --dhcp-interface vsrv --dhcp-mode authoritative "${store[@]}" >"$work/provisiond.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  ip netns exec "$srv" curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null && break
  sleep 0.2
done
ip netns exec "$srv" curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || { tail "$work/provisiond.log"; exit 1; }

# field FILE SECTION LABEL: LABEL's count in perfdhcp's SECTION statistics.
field() { awk -v s="$2" -v l="$3: " 'index($0, "Statistics for: " s) { in_s = 1 } in_s && index($0, l) == 1 { print substr($0, length(l) + 1); exit }' "$1"; }
perf() { ip netns exec "$cli" perfdhcp -4 -l vcli "$@" 10.96.0.2 || [ $? = 3 ]; } # 3: some exchanges incomplete

echo "store $STORE; DORA for $DUR s at each rate, $CLIENTS MACs per rate"
printf '%8s %10s %10s %8s %8s %12s\n' offered/s DORA/s ACKs drops NAKs avg-ack-ms
i=0
for rate in $RATES; do
  i=$((i + 1))
  out="$work/rate-$rate.txt"
  perf -r "$rate" -p "$DUR" -R "$CLIENTS" -W 2000000 -b "mac=02:$(printf %02x "$i"):00:00:00:00" >"$out" 2>&1
  naks=$(grep -c 'msg="dhcp nak"' "$work/provisiond.log" || true)
  acks=$(field "$out" REQUEST-ACK 'received packets')
  # DORA/s over the sending period: perfdhcp's own Rate also counts its -W wait.
  printf '%8s %10.0f %10s %8s %8s %12s\n' "$rate" "$((acks / DUR))" "$acks" \
    "$(($(field "$out" DISCOVER-OFFER drops) + $(field "$out" REQUEST-ACK drops)))" "$naks" \
    "$(field "$out" REQUEST-ACK 'avg delay' | cut -d' ' -f1)"
done
perf --scenario avalanche -R 1000 -b mac=02:ff:00:00:00:00 >"$work/avalanche.txt" 2>&1
echo "1,000 new leases at once (avalanche): $(sed -n 's/^It took \(.*\) to provision.*/\1/p' "$work/avalanche.txt"), $(sed -n 's/^Rate: \([0-9.]*\) 4-way.*/\1/p' "$work/avalanche.txt") DORA/s"
echo "leases held: $(ip netns exec "$srv" "$work/provisiond" leases --server http://127.0.0.1:8080 --token-file "$work/data/api-token" -o json 2>/dev/null | grep -o '"ip"' | wc -l)"
