// Package reliability checks that the real provisiond binary never loses a
// machine record it acknowledged, whether it is SIGKILLed under load or
// flooded with concurrent discoveries.
//
// TestCrashSafety reuses one data directory across 50 rounds: each round
// starts the daemon, checks that everything acknowledged so far is in the
// store, runs concurrent /ipxe discoveries and API lifecycle calls for a
// random 50–400 ms and SIGKILLs the daemon with requests in flight; after
// every kill the bbolt file must pass tx.Check. TestConcurrentDiscovery
// discovers 10,000 new MACs through /ipxe from 64 clients and checks that the
// inventory holds exactly those, reporting /ipxe latency and discoveries/s.
//
// TestCluster runs instances with --store etcd on a three-member etcd
// cluster of real processes (etcdtest.StartCluster). Its chaos subtest
// drives full boots (/ipxe, the config fetched from two or three instances
// at once, phone-home) and discoveries against random instances while it
// SIGKILLs and restarts an instance or an etcd member (never two: quorum
// stays) PROVISIOND_CLUSTER_ROUNDS times (default 30); then every
// acknowledged change must be in the store, no token's config served twice,
// the event log gapless and holding every acknowledged change's event, and
// no log a panic. quorum-loss takes two members down: boot requests must
// fail closed within 10 s, /healthz be degraded, and boots resume by
// themselves once the members are back. start-during-election starts an
// instance just after the leader's death.
//
// All build ./cmd/provisiond once, without -race even under `go test -race`,
// so the daemon runs at its real speed; all skip under -short.
//
//	go test -race -v ./test/reliability/
package reliability
