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
// Both build ./cmd/provisiond once, without -race even under `go test -race`,
// so the daemon runs at its real speed; both skip under -short.
//
//	go test -race -v ./test/reliability/
package reliability
