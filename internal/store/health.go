package store

import "time"

// Health is how a backend is doing, for /healthz and /metrics.
type Health struct {
	Backend string
	// Err is the probe read's error: nil while reads and writes go through.
	Err     error
	Latency time.Duration // of the probe read
	// Leader is the etcd leader's member name as the endpoints see it; ""
	// when none answers with one, or for bbolt.
	Leader    string
	Endpoints []EndpointHealth // etcd's client endpoints, each asked
}

// EndpointHealth is one etcd client endpoint's answer to a status request.
type EndpointHealth struct {
	Endpoint string
	Member   string // the member's name
	Leader   string // the leader it knows; "" if none
	Version  string // etcd's version
	Latency  time.Duration
	Err      error // nil if it answered
}
