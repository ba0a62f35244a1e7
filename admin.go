package wskafka

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(ReadinessAPI{})
}

// readyTimeout bounds the readiness check of each cluster.
const readyTimeout = 5 * time.Second

// ReadinessAPI adds GET /wskafka/ready to Caddy's admin API: 200 when every Kafka cluster that a wskafka handler
// of the running config uses answers a metadata request, 503 otherwise, with each cluster's state as JSON. Like
// every admin.api module it is loaded with the admin endpoint; it needs no config.
type ReadinessAPI struct{}

// CaddyModule returns the Caddy module information.
func (ReadinessAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.wskafka", New: func() caddy.Module { return new(ReadinessAPI) }}
}

// Routes returns the admin routes.
func (ReadinessAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/wskafka/ready", Handler: caddy.AdminHandlerFunc(handleReady)}}
}

// servingClusters counts, per cluster, the handlers using it that have not been cleaned up: those of the running
// config. A replaced config's clusters still serve its connections while they close (close_delay), but readiness
// is about the running config.
type servingClusters struct {
	mu       sync.Mutex
	handlers map[*cluster]int
}

var serving = servingClusters{handlers: make(map[*cluster]int)}

func (s *servingClusters) add(c *cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[c]++
}

func (s *servingClusters) remove(c *cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers[c]--; s.handlers[c] <= 0 {
		delete(s.handlers, c)
	}
}

func (s *servingClusters) clusters() []*cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	clusters := make([]*cluster, 0, len(s.handlers))
	for c := range s.handlers {
		clusters = append(clusters, c)
	}
	return clusters
}

// clusterReadiness is one cluster's entry in the readiness answer.
type clusterReadiness struct {
	Brokers   []string `json:"brokers"`
	Reachable bool     `json:"reachable"`
	LatencyMS float64  `json:"latency_ms"`
	Error     string   `json:"error,omitempty"`
}

func handleReady(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	clusters := serving.clusters()
	answers := make([]clusterReadiness, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			start := time.Now()
			err := c.Ping(ctx)
			answers[i] = clusterReadiness{Brokers: c.Brokers(), Reachable: err == nil, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				answers[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	ready := true
	for _, a := range answers {
		ready = ready && a.Reachable
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return json.NewEncoder(w).Encode(struct {
		Ready    bool               `json:"ready"`
		Clusters []clusterReadiness `json:"clusters"`
	}{ready, answers})
}

// Interface guard
var _ caddy.AdminRouter = ReadinessAPI{}
