package bridge

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's Prometheus collectors. They are created once for the process and registered in each
// config's registry by Register (Caddy gives every config a new registry; collectors registered only once would
// vanish from the scrape after a reload). Labels are bounded: results and reasons are fixed sets; topics appear
// only in the topic_* collectors, which count only when a handler turns topic labels on.
var metrics = struct {
	connections      prometheus.Gauge
	refused          *prometheus.CounterVec
	framesIn         prometheus.Counter
	framesOut        prometheus.Counter
	bytesIn          prometheus.Counter
	bytesOut         prometheus.Counter
	publishes        *prometheus.CounterVec
	flushRecords     prometheus.Histogram
	produceSeconds   prometheus.Histogram
	delivered        prometheus.Counter
	queuedBytes      prometheus.Gauge
	slowCloses       *prometheus.CounterVec
	rebalances       prometheus.Counter
	lag              prometheus.Gauge
	topicPublishes   *prometheus.CounterVec
	topicDelivered   *prometheus.CounterVec
	topicLag         *prometheus.GaugeVec
	broadcastReaders prometheus.Gauge
}{
	connections: gauge("connections_open", "WebSocket connections open."),
	refused: counterVec("connections_refused_total",
		"WebSocket upgrades refused, by reason: too_many_connections, too_many_for_client, origin, shutting_down.", "reason"),
	framesIn:  counter("frames_received_total", "Frames read from clients."),
	framesOut: counter("frames_sent_total", "Frames written to clients."),
	bytesIn:   counter("received_bytes_total", "Bytes of frames read from clients."),
	bytesOut:  counter("sent_bytes_total", "Bytes of frames written to clients."),
	publishes: counterVec("publishes_total",
		"Publishes, by result: accepted (buffered; counted when its flush starts), acknowledged (written to Kafka), failed, rate_limited, forbidden.", "result"),
	flushRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "wskafka", Name: "flush_records",
		Help: "Records per flush of a connection's publish buffer.", Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	}),
	produceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "wskafka", Name: "produce_duration_seconds",
		Help: "Time from a flush's start until Kafka acknowledged it.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}),
	delivered:   counter("notifications_delivered_total", "Notifications written to clients."),
	queuedBytes: gauge("queued_bytes", "Bytes of frames waiting for the writers of all connections."),
	slowCloses: counterVec("slow_closes_total",
		"Connections closed for not keeping up, by reason: write_timeout, broadcast_queue_full, dead_peer.", "reason"),
	rebalances: counter("rebalances_total", "Consumer-group generations started by subscriptions (the first join included)."),
	lag:        gauge("consumer_lag", "Records not yet fetched by subscriptions and broadcast streams, summed over their partitions."),
	topicPublishes: counterVec("topic_publishes_total",
		"Publishes by topic and result (only with topic labels on).", "topic", "result"),
	topicDelivered: counterVec("topic_notifications_delivered_total",
		"Notifications written to clients, by topic (only with topic labels on).", "topic"),
	topicLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "wskafka", Name: "topic_consumer_lag",
		Help: "consumer_lag by topic (only with topic labels on).",
	}, []string{"topic"}),
	broadcastReaders: gauge("broadcast_partition_readers", "Partitions read by broadcast streams: each partition of each broadcast topic once, whatever the number of subscribers."),
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "caddy", Subsystem: "wskafka", Name: name, Help: help})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "wskafka", Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "wskafka", Name: name, Help: help}, labels)
}

// RegisterMetrics registers the bridge's collectors in a config's registry; registering them again in the same
// registry (two handlers in one config) is not an error.
func RegisterMetrics(registry prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		metrics.connections, metrics.refused, metrics.framesIn, metrics.framesOut, metrics.bytesIn, metrics.bytesOut,
		metrics.publishes, metrics.flushRecords, metrics.produceSeconds, metrics.delivered, metrics.queuedBytes,
		metrics.slowCloses, metrics.rebalances, metrics.lag, metrics.topicPublishes, metrics.topicDelivered,
		metrics.topicLag, metrics.broadcastReaders,
	} {
		var already prometheus.AlreadyRegisteredError
		if err := registry.Register(c); err != nil && !errors.As(err, &already) {
			return err
		}
	}
	return nil
}

// CountRefused counts an upgrade refused for reason.
func CountRefused(reason string) { metrics.refused.WithLabelValues(reason).Inc() }

// publishResults are the children of publishes_total, resolved once: a label lookup per publish would cost more
// than the rest of the counting.
var publishResults = map[string]prometheus.Counter{}

func init() {
	for _, result := range []string{"accepted", "acknowledged", "failed", "rate_limited", "forbidden"} {
		publishResults[result] = metrics.publishes.WithLabelValues(result)
	}
}

// countPublish counts one publish result, by topic too when asked.
func countPublish(topicLabels bool, topic, result string) {
	publishResults[result].Inc()
	if topicLabels {
		metrics.topicPublishes.WithLabelValues(topic, result).Inc()
	}
}

// lagGauge tracks one partition reader's share of consumer_lag.
type lagGauge struct {
	topic       string // "" unless topic labels are on
	last        float64
	topicLabels bool
}

// set records the reader's current lag.
func (g *lagGauge) set(lag int64) {
	delta := float64(max(lag, 0)) - g.last
	if delta == 0 {
		return
	}
	g.last += delta
	metrics.lag.Add(delta)
	if g.topicLabels {
		metrics.topicLag.WithLabelValues(g.topic).Add(delta)
	}
}
