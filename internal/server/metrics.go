package server

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// Metrics is what the server reports each request to and serves at /metrics;
// *metrics.Metrics implements it.
type Metrics interface {
	// ObserveHTTP counts one answered request by its route pattern and status.
	ObserveHTTP(route string, code int, took time.Duration)
	// Handler serves the metrics to Prometheus.
	Handler() http.Handler
}

// unmatched is the route label of requests no route matched: labelling them
// by path would let any client add series.
const unmatched = "unmatched"

// observe reports every request to m once it is answered, labelled with the
// pattern of the route that served it.
func observe(m Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			// The pattern is complete only after routing, mounted routers included.
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = unmatched
			}
			code := ww.Status()
			if code == 0 {
				code = http.StatusOK // nothing written: net/http answers 200
			}
			m.ObserveHTTP(route, code, time.Since(start))
		})
	}
}
