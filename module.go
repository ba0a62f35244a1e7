// Package wskafka is a Caddy HTTP handler that puts Apache Kafka behind a WebSocket endpoint, speaking the JSON
// protocol of the Node.js kafka-node/ws connector it re-implements. Caddy routes, terminates TLS and
// authenticates; this package turns the handler's config into the bridge's and hands it upgraded connections.
package wskafka

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/wskafka/wskafka/bridge"
	"github.com/wskafka/wskafka/kafkago"
)

// embeddedBrokers is the brokers value that starts the in-process broker.
const embeddedBrokers = "embedded"

// Defaults are the original connector's values where it had the setting.
const (
	defaultClientID         = "wskafka"
	defaultConnectTimeout   = time.Second      // connectTimeout: 1000
	defaultRequestTimeout   = 60 * time.Second // requestTimeout: 60000
	defaultWriteTimeout     = 10 * time.Second
	defaultCloseTimeout     = 5 * time.Second
	defaultCloseDelay       = 10 * time.Second
	defaultProducerMQLimit  = 20000                  // producer mq_limit
	defaultProducerInterval = 200 * time.Millisecond // producer mq_interval
	defaultRequiredAcks     = "one"                  // requireAcks: 1
	defaultAckTimeout       = 10 * time.Second
	defaultPartitioner      = "murmur2"
	defaultMaxAttempts      = 3
	defaultMaxMessageBytes  = 1 << 20
	defaultGroupID          = "wskafka"
	defaultFromOffset       = "latest"   // fromOffset: 'latest'
	defaultOutOfRange       = "earliest" // outOfRangeOffset: 'earliest'
	defaultConsumerMQLimit  = 5000       // consumer mq_limit
	defaultConsumerInterval = 50 * time.Millisecond
	defaultSessionTimeout   = 10 * time.Second
	defaultHeartbeat        = time.Second
	defaultRebalanceTimeout = 30 * time.Second
	defaultCommitInterval   = 500 * time.Millisecond // autoCommitIntervalMs: 500
	defaultFetchMinBytes    = 1                      // fetchMinBytes: 1
	defaultFetchMaxBytes    = 1 << 20                // fetchMaxBytes: 1024 * 1024
	defaultFetchMaxWait     = 100 * time.Millisecond // fetchMaxWaitMs: 100
	defaultGroupBalancer    = "round_robin"          // protocol: ['roundrobin']
	defaultMaxUnacked       = 10000
	defaultTopicPartitions  = -1
	defaultTopicReplication = -1
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler bridges WebSocket clients to Kafka. Requests that are not WebSocket upgrades pass to the next handler.
type Handler struct {
	// Brokers are the host:port addresses of Kafka bootstrap brokers, or the single word "embedded" for an
	// in-process, in-memory broker that keeps nothing (for a first run and for tests). Default: embedded.
	Brokers []string `json:"brokers,omitempty"`

	// ClientID is the client id the bridge's Kafka connections announce. Default: wskafka.
	ClientID string `json:"client_id,omitempty"`

	// TLS makes the Kafka connections use TLS; with no settings it trusts the system's certificate pool.
	// Default: none (plaintext).
	TLS *KafkaTLS `json:"tls,omitempty"`

	// SASL authenticates the Kafka connections (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512). Default: none.
	SASL *KafkaSASL `json:"sasl,omitempty"`

	// ConnectTimeout bounds opening a connection to a broker, its API-version handshake included: a broker that
	// accepts connections but does not answer counts as unreachable. Default: 1s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	// RequestTimeout bounds every operation a client request starts against Kafka (a flush of publishes, a topic
	// create or list, joining a consumer group); past it the client gets s:1 with code kafka_timeout. When no
	// broker can be reached, requests fail sooner, with code kafka_unavailable. Default: 60s.
	RequestTimeout caddy.Duration `json:"request_timeout,omitempty"`

	// WriteTimeout is how long a frame may take to reach a client; a socket that takes longer is closed as dead.
	// Default: 10s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// CloseTimeout bounds each step of closing a connection: flushing its publishes, leaving its consumer
	// group, sending the close frame. Default: 5s.
	CloseTimeout caddy.Duration `json:"close_timeout,omitempty"`

	// CloseDelay spreads the closing of the connections over a window after a config reload: each keeps working
	// under the old config until its own moment, uniformly spread over the window, and is then closed with 1012
	// (reconnect), so that clients do not all reconnect at the same instant; the members of one consumer group
	// close together, so that the group rebalances once. The old config's Kafka clients are released when its
	// last connection has closed. 0 closes every
	// connection at once. Exiting Caddy always closes at once (1001). Default: 10s, which turns a reload of 20,000
	// sockets into 2,000 reconnects a second, well within what one instance subscribes.
	CloseDelay *caddy.Duration `json:"close_delay,omitempty"`

	// Identity is the placeholder that names the connection's authenticated user, set by an authentication
	// handler that runs before this one (basic_auth, forward_auth, mTLS via {http.request.tls.client.subject},
	// …). It is what permissions' placeholders and per-client limits refer to. Default: {http.auth.user.id}.
	Identity string `json:"identity,omitempty"`

	// Permissions says which topics and groups clients may use for each operation. Default: none, everything
	// is allowed (with a warning in the log).
	Permissions *Permissions `json:"permissions,omitempty"`

	// Origins are the browser origins, besides the site's own, whose pages may open sockets (scheme://host[:port],
	// glob patterns allowed; "*" allows any). Default: only the site's own; requests without Origin (native
	// clients) always pass.
	Origins []string `json:"origins,omitempty"`

	// Namespace is put before every topic and consumer group name a client sends, and taken off every name sent
	// back to it, so that each tenant sees only its own topics and groups (`{http.request.host}.` or
	// `tenant.{http.auth.user.tenant}.`). Placeholders resolve for each connection when it opens; one that resolves
	// to nothing refuses the connection (403), as does a namespace with characters Kafka refuses in topic names.
	// Permissions apply to the names the client sees. Default: none, names are used as sent.
	Namespace string `json:"namespace,omitempty"`

	// CredentialExpiry is a placeholder for when the connection's credential expires, in Unix seconds or RFC 3339,
	// set by an authentication handler before this one (a header copied by forward_auth, a JWT's exp claim). At
	// that moment the socket is closed with code 4001 after the flush of every server close; a credential expired
	// already, or a value that does not resolve or parse, refuses the upgrade (401). Default: none.
	CredentialExpiry string `json:"credential_expiry,omitempty"`

	// MaxConnectionAge closes every socket with code 4001 once it is this old, so that clients authenticate
	// again now and then. Default: 0, no bound.
	MaxConnectionAge caddy.Duration `json:"max_connection_age,omitempty"`

	// MaxConnectionAgeJitter closes each socket up to this much before MaxConnectionAge, at random, so that the
	// sockets opened together do not reconnect together. Default: a tenth of MaxConnectionAge.
	MaxConnectionAgeJitter *caddy.Duration `json:"max_connection_age_jitter,omitempty"`

	// Limits bound what one client can make the server hold or do.
	Limits *Limits `json:"limits,omitempty"`

	// TopicMetrics adds per-topic variants of the publish, delivery and lag metrics (caddy_wskafka_topic_*).
	// Their label values are unbounded when clients may name any topic. Default: false.
	TopicMetrics bool `json:"topic_metrics,omitempty"`

	// Topics sets how topic/create creates topics.
	Topics *TopicOptions `json:"topics,omitempty"`

	// Producer sets how publishes are batched and written.
	Producer *ProducerOptions `json:"producer,omitempty"`

	// Consumer sets how subscriptions read and deliver.
	Consumer *ConsumerOptions `json:"consumer,omitempty"`

	logger   *zap.Logger
	cluster  *cluster
	hub      *bridge.Hub
	upgrader websocket.Upgrader
	poolKeys []string // pool entries this handler holds, released by Cleanup
	// cleanedUp is set by the first Cleanup.
	cleanedUp bool
}

// TopicOptions sets the topics that topic/create makes.
type TopicOptions struct {
	// Partitions of a created topic; -1 (or 0) uses the broker's num.partitions. Default: -1.
	Partitions int `json:"partitions,omitempty"`
	// Replication factor of a created topic; -1 (or 0) uses the broker's default.replication.factor. Default: -1.
	Replication int `json:"replication,omitempty"`
	// AllowDelete enables topic/delete on this route. Default: false.
	AllowDelete bool `json:"allow_delete,omitempty"`
}

// ProducerOptions sets how publishes are batched and written to Kafka.
type ProducerOptions struct {
	// MQLimit flushes a connection's buffered publishes when this many are waiting; it is also the buffer's
	// bound: a connection with a full buffer is not read until a flush makes room. Default: 20000.
	MQLimit int `json:"mq_limit,omitempty"`
	// MQInterval flushes buffered publishes this long after the first of them arrived; 0 sends each at once.
	// Default: 200ms.
	MQInterval *caddy.Duration `json:"mq_interval,omitempty"`
	// RequiredAcks is what Kafka must confirm before a publish counts as written: none, one (the partition
	// leader) or all (every in-sync replica). Default: one.
	RequiredAcks string `json:"required_acks,omitempty"`
	// AckTimeout bounds one produce request, acknowledgements included. Default: 10s.
	AckTimeout caddy.Duration `json:"ack_timeout,omitempty"`
	// Partitioner chooses the partition of a record: murmur2 (by key, as Java clients do), crc32 (by key, as
	// librdkafka does), fnv1a (by key), round_robin, least_bytes. Records without a key go round-robin with the
	// key-based partitioners. Default: murmur2.
	Partitioner string `json:"partitioner,omitempty"`
	// Compression of produced batches: none, gzip, snappy, lz4, zstd. Default: none.
	Compression string `json:"compression,omitempty"`
	// MaxAttempts is how often a produce request is tried before its publishes are reported failed. Default: 3.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// MaxMessageBytes is the largest record accepted for publishing, also the largest produce batch. Default:
	// 1048576.
	MaxMessageBytes int `json:"max_message_bytes,omitempty"`
	// Receipts answers every publish with a receipt (topic, partition, offset, timestamp) once Kafka has
	// acknowledged it, as if each publish carried "ack": true. Default: false.
	Receipts bool `json:"receipts,omitempty"`
}

// ConsumerOptions sets how subscriptions read from Kafka and deliver to the socket.
type ConsumerOptions struct {
	// GroupID is the consumer group of a subscribe that names no consumer_group. Default: wskafka.
	GroupID string `json:"group_id,omitempty"`
	// FromOffset is where a group with no committed offset starts: latest or earliest. Default: latest.
	FromOffset string `json:"from_offset,omitempty"`
	// OutOfRange is where a group resumes when its committed offset no longer exists: earliest or latest.
	// Default: earliest.
	OutOfRange string `json:"out_of_range,omitempty"`
	// MQLimit delivers buffered notifications as one frame when this many are waiting. Default: 5000.
	MQLimit int `json:"mq_limit,omitempty"`
	// MQInterval delivers buffered notifications this long after the first of them arrived; 0 delivers each at
	// once. Default: 50ms.
	MQInterval *caddy.Duration `json:"mq_interval,omitempty"`
	// SessionTimeout is how long the group coordinator waits for a heartbeat before it evicts a member.
	// Default: 10s.
	SessionTimeout caddy.Duration `json:"session_timeout,omitempty"`
	// HeartbeatInterval is how often a member tells the coordinator it is alive. Default: 1s.
	HeartbeatInterval caddy.Duration `json:"heartbeat_interval,omitempty"`
	// RebalanceTimeout is how long the coordinator waits for members to rejoin during a rebalance. Default: 30s.
	RebalanceTimeout caddy.Duration `json:"rebalance_timeout,omitempty"`
	// CommitInterval is how often the offsets of delivered notifications are committed; 0 commits after every
	// frame. Only notifications written to the socket are committed. Default: 500ms.
	CommitInterval *caddy.Duration `json:"commit_interval,omitempty"`
	// FetchMinBytes is the least data a fetch waits for (up to FetchMaxWait). Default: 1.
	FetchMinBytes int `json:"fetch_min_bytes,omitempty"`
	// FetchMaxBytes is the most data one fetch returns. Default: 1048576.
	FetchMaxBytes int `json:"fetch_max_bytes,omitempty"`
	// FetchMaxWait is how long a fetch waits for FetchMinBytes. Default: 100ms.
	FetchMaxWait caddy.Duration `json:"fetch_max_wait,omitempty"`
	// MaxUnacked bounds the notifications a subscription with "commit": "client" has delivered and the client
	// has not acknowledged; at the bound the subscription stops fetching until acknowledgements arrive.
	// Default: 10000.
	MaxUnacked int `json:"max_unacked,omitempty"`
	// GroupBalancers are the partition assignment strategies offered to the group, in order of preference:
	// round_robin, range. Default: [round_robin].
	GroupBalancers []string `json:"group_balancers,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wskafka",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills in defaults, checks the config and takes the shared Kafka clients from the pool. It never
// dials Kafka: connections open on first use, so `caddy validate` works without a broker.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	// Every config has a new registry: register in each, or the metrics vanish after a reload.
	if err := bridge.RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if err := h.provisionKafkaSecurity(); err != nil {
		return err
	}

	if err := h.takeCluster(); err != nil {
		return err
	}

	if h.Permissions == nil {
		h.logger.Warn("no permissions block: every client may create, list, describe, publish to and subscribe to any topic, in any group; see the README's Security section")
	}
	serving.add(h.cluster)
	h.hub = bridge.NewHub(h.bridgeConfig(), h.cluster, h.cluster.broadcaster, h.logger)
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: time.Duration(h.WriteTimeout),
		Subprotocols:     []string{subprotocol},
		// Given a pool, gorilla keeps no write buffer per socket; it would draw on it only for data messages, and
		// the bridge's writer encodes those itself (bridge/writer.go).
		WriteBufferPool: &writeBuffers,
		CheckOrigin: func(r *http.Request) bool {
			if originAllowed(r, h.Origins) {
				return true
			}
			bridge.CountRefused("origin")
			h.logger.Info("connection refused: origin not allowed", zap.String("origin", r.Header.Get("Origin")), zap.String("remote", r.RemoteAddr))
			return false
		},
	}
	return nil
}

func (h *Handler) applyDefaults() {
	if h.Brokers == nil {
		h.Brokers = []string{embeddedBrokers}
	}
	setDefault(&h.ClientID, defaultClientID)
	setDefault(&h.ConnectTimeout, caddy.Duration(defaultConnectTimeout))
	setDefault(&h.RequestTimeout, caddy.Duration(defaultRequestTimeout))
	setDefault(&h.WriteTimeout, caddy.Duration(defaultWriteTimeout))
	setDefault(&h.CloseTimeout, caddy.Duration(defaultCloseTimeout))
	if h.CloseDelay == nil {
		h.CloseDelay = durationPtr(defaultCloseDelay)
	}
	setDefault(&h.Identity, defaultIdentity)
	h.applyTenancyDefaults()
	if h.Limits == nil {
		h.Limits = new(Limits)
	}
	h.Limits.applyDefaults()

	if h.Topics == nil {
		h.Topics = &TopicOptions{Partitions: defaultTopicPartitions, Replication: defaultTopicReplication}
	}
	setDefault(&h.Topics.Partitions, defaultTopicPartitions)
	setDefault(&h.Topics.Replication, defaultTopicReplication)

	if h.Producer == nil {
		h.Producer = new(ProducerOptions)
	}
	p := h.Producer
	setDefault(&p.MQLimit, defaultProducerMQLimit)
	if p.MQInterval == nil {
		p.MQInterval = durationPtr(defaultProducerInterval)
	}
	setDefault(&p.RequiredAcks, defaultRequiredAcks)
	setDefault(&p.AckTimeout, caddy.Duration(defaultAckTimeout))
	setDefault(&p.Partitioner, defaultPartitioner)
	setDefault(&p.Compression, "none")
	setDefault(&p.MaxAttempts, defaultMaxAttempts)
	setDefault(&p.MaxMessageBytes, defaultMaxMessageBytes)

	if h.Consumer == nil {
		h.Consumer = new(ConsumerOptions)
	}
	c := h.Consumer
	setDefault(&c.GroupID, defaultGroupID)
	setDefault(&c.FromOffset, defaultFromOffset)
	setDefault(&c.OutOfRange, defaultOutOfRange)
	setDefault(&c.MQLimit, defaultConsumerMQLimit)
	if c.MQInterval == nil {
		c.MQInterval = durationPtr(defaultConsumerInterval)
	}
	setDefault(&c.SessionTimeout, caddy.Duration(defaultSessionTimeout))
	setDefault(&c.HeartbeatInterval, caddy.Duration(defaultHeartbeat))
	setDefault(&c.RebalanceTimeout, caddy.Duration(defaultRebalanceTimeout))
	if c.CommitInterval == nil {
		c.CommitInterval = durationPtr(defaultCommitInterval)
	}
	setDefault(&c.MaxUnacked, defaultMaxUnacked)
	setDefault(&c.FetchMinBytes, defaultFetchMinBytes)
	setDefault(&c.FetchMaxBytes, defaultFetchMaxBytes)
	setDefault(&c.FetchMaxWait, caddy.Duration(defaultFetchMaxWait))
	if len(c.GroupBalancers) == 0 {
		c.GroupBalancers = []string{defaultGroupBalancer}
	}
}

// Validate checks the config; every message names the field. It is pure: Provision calls it after filling in
// defaults, and Caddy calls it again.
func (h *Handler) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case len(h.Brokers) == 0:
		fail("brokers must list at least one host:port, or be embedded")
	case slices.Contains(h.Brokers, embeddedBrokers) && len(h.Brokers) > 1:
		fail("brokers: embedded cannot be combined with other brokers")
	case !isEmbedded(h.Brokers):
		for _, b := range h.Brokers {
			if host, port, err := net.SplitHostPort(b); err != nil || host == "" || port == "" {
				fail("brokers: %q is not a host:port address", b)
			}
		}
	}
	for _, d := range []namedDuration{
		{"connect_timeout", h.ConnectTimeout}, {"request_timeout", h.RequestTimeout},
		{"write_timeout", h.WriteTimeout}, {"close_timeout", h.CloseTimeout}, {"close_delay", durationOr0(h.CloseDelay)},
	} {
		if d.value < 0 {
			fail("%s must not be negative", d.name)
		}
	}
	errs = append(errs, h.validateKafkaSecurity()...)
	errs = append(errs, h.validateTenancy()...)
	if h.Permissions != nil {
		errs = append(errs, h.Permissions.validate()...)
	}
	if h.Limits != nil {
		errs = append(errs, h.Limits.validate()...)
	}
	for _, o := range h.Origins {
		if _, err := path.Match(o, ""); err != nil {
			fail("origins: pattern %q: %v", o, err)
		}
	}
	if t := h.Topics; t != nil {
		if t.Partitions < -1 {
			fail("topics.partitions must be positive, or -1 for the broker's default")
		}
		if t.Replication < -1 {
			fail("topics.replication must be positive, or -1 for the broker's default")
		}
	}
	if p := h.Producer; p != nil {
		if p.MQLimit < 0 {
			fail("producer.mq_limit must not be negative")
		}
		if p.MQInterval != nil && *p.MQInterval < 0 {
			fail("producer.mq_interval must not be negative")
		}
		if _, ok := requiredAcks[p.RequiredAcks]; !ok && p.RequiredAcks != "" {
			fail("producer.required_acks: unknown value %q (want none, one or all)", p.RequiredAcks)
		}
		if p.AckTimeout < 0 {
			fail("producer.ack_timeout must not be negative")
		}
		if p.Partitioner != "" && !slices.Contains(kafkago.Partitioners, p.Partitioner) {
			fail("producer.partitioner: unknown value %q (want one of %s)", p.Partitioner, strings.Join(kafkago.Partitioners, ", "))
		}
		if p.Compression != "" && !slices.Contains(kafkago.Compressions, p.Compression) {
			fail("producer.compression: unknown value %q (want one of %s)", p.Compression, strings.Join(kafkago.Compressions, ", "))
		}
		if p.MaxAttempts < 0 {
			fail("producer.max_attempts must not be negative")
		}
		if p.MaxMessageBytes < 0 {
			fail("producer.max_message_bytes must not be negative")
		}
	}
	if c := h.Consumer; c != nil {
		if c.FromOffset != "" && c.FromOffset != "latest" && c.FromOffset != "earliest" {
			fail("consumer.from_offset: unknown value %q (want latest or earliest)", c.FromOffset)
		}
		if c.OutOfRange != "" && c.OutOfRange != "latest" && c.OutOfRange != "earliest" {
			fail("consumer.out_of_range: unknown value %q (want earliest or latest)", c.OutOfRange)
		}
		if c.MQLimit < 0 {
			fail("consumer.mq_limit must not be negative")
		}
		if c.MaxUnacked < 0 {
			fail("consumer.max_unacked must not be negative")
		}
		if c.MQInterval != nil && *c.MQInterval < 0 {
			fail("consumer.mq_interval must not be negative")
		}
		if c.CommitInterval != nil && *c.CommitInterval < 0 {
			fail("consumer.commit_interval must not be negative")
		}
		for _, d := range []namedDuration{
			{"session_timeout", c.SessionTimeout}, {"heartbeat_interval", c.HeartbeatInterval},
			{"rebalance_timeout", c.RebalanceTimeout}, {"fetch_max_wait", c.FetchMaxWait},
		} {
			if d.value < 0 {
				fail("consumer.%s must not be negative", d.name)
			}
		}
		if c.SessionTimeout > 0 && c.HeartbeatInterval >= c.SessionTimeout {
			fail("consumer.heartbeat_interval must be shorter than consumer.session_timeout")
		}
		if c.FetchMinBytes < 0 || c.FetchMaxBytes < 0 {
			fail("consumer.fetch_min_bytes and consumer.fetch_max_bytes must not be negative")
		}
		if c.FetchMaxBytes > 0 && c.FetchMinBytes > c.FetchMaxBytes {
			fail("consumer.fetch_min_bytes must not exceed consumer.fetch_max_bytes")
		}
		for _, b := range c.GroupBalancers {
			if !slices.Contains(kafkago.GroupBalancers, b) {
				fail("consumer.group_balancers: unknown value %q (want %s)", b, strings.Join(kafkago.GroupBalancers, " or "))
			}
		}
		if c.GroupID != "" && len(c.GroupID) > 255 {
			fail("consumer.group_id must be at most 255 characters")
		}
	}
	return errors.Join(errs...)
}

// namedDuration lets Validate check durations in a fixed order, so its messages come out the same every time.
type namedDuration struct {
	name  string
	value caddy.Duration
}

var requiredAcks = map[string]int{"none": 0, "one": 1, "all": -1}

func (h *Handler) kafkaConfig(brokers []string) kafkago.Config {
	p, c := h.Producer, h.Consumer
	return kafkago.Config{
		Brokers:           brokers,
		ClientID:          h.ClientID,
		ConnectTimeout:    time.Duration(h.ConnectTimeout),
		RequestTimeout:    time.Duration(h.RequestTimeout),
		RequiredAcks:      requiredAcks[p.RequiredAcks],
		AckTimeout:        time.Duration(p.AckTimeout),
		Partitioner:       p.Partitioner,
		Compression:       p.Compression,
		MaxAttempts:       p.MaxAttempts,
		MaxMessageBytes:   p.MaxMessageBytes,
		TopicPartitions:   h.Topics.Partitions,
		TopicReplication:  h.Topics.Replication,
		FetchMinBytes:     c.FetchMinBytes,
		FetchMaxBytes:     c.FetchMaxBytes,
		FetchMaxWait:      time.Duration(c.FetchMaxWait),
		SessionTimeout:    time.Duration(c.SessionTimeout),
		HeartbeatInterval: time.Duration(c.HeartbeatInterval),
		RebalanceTimeout:  time.Duration(c.RebalanceTimeout),
		GroupBalancers:    c.GroupBalancers,
		TLS:               h.TLS.bridge(),
		SASL:              h.SASL.bridge(),
	}
}

func (h *Handler) bridgeConfig() bridge.Config {
	p, c := h.Producer, h.Consumer
	offset := map[string]int64{"earliest": bridge.FirstOffset, "latest": bridge.LastOffset}
	return bridge.Config{
		TopicLabels:    h.TopicMetrics,
		Limits:         h.Limits.bridge(),
		AllowDelete:    h.Topics.AllowDelete,
		RequestTimeout: time.Duration(h.RequestTimeout),
		WriteTimeout:   time.Duration(h.WriteTimeout),
		CloseTimeout:   time.Duration(h.CloseTimeout),
		Producer: bridge.ProducerConfig{
			MQLimit:         p.MQLimit,
			MQInterval:      time.Duration(*p.MQInterval),
			MaxMessageBytes: p.MaxMessageBytes,
			Receipts:        p.Receipts,
			MaxBufferBytes:  queueBytes(h.Limits.MaxBufferBytes),
			TopicLabels:     h.TopicMetrics,
		},
		Consumer: bridge.ConsumerConfig{
			GroupID:          c.GroupID,
			StartOffset:      offset[c.FromOffset],
			OutOfRangeOffset: offset[c.OutOfRange],
			MQLimit:          c.MQLimit,
			MQInterval:       time.Duration(*c.MQInterval),
			CommitInterval:   time.Duration(*c.CommitInterval),
			MaxUnacked:       c.MaxUnacked,
		},
	}
}

// ServeHTTP upgrades WebSocket requests and serves the connection until it closes; other requests go on to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !websocket.IsWebSocketUpgrade(r) {
		return next.ServeHTTP(w, r)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	client := bridge.Client{Identity: repl.ReplaceAll(h.Identity, ""), Addr: clientIP(r)}
	if h.Permissions != nil {
		client.Access = h.Permissions.access(repl)
	}
	if why := h.connectionTerms(repl, time.Now(), &client); why != nil {
		return h.refuseTerms(w, r, why)
	}
	release, err := h.hub.Admit(client)
	if err != nil {
		status, reason := http.StatusServiceUnavailable, "too_many_connections"
		switch {
		case errors.Is(err, bridge.ErrTooManyForClient):
			status, reason = http.StatusTooManyRequests, "too_many_for_client"
		case errors.Is(err, bridge.ErrShuttingDown):
			reason = "shutting_down"
		}
		bridge.CountRefused(reason)
		h.logger.Info("connection refused", zap.String("remote", r.RemoteAddr), zap.String("identity", client.Identity), zap.Error(err))
		if slices.Contains(websocket.Subprotocols(r), subprotocol) {
			return h.refuseInBand(w, r, websocket.CloseTryAgainLater, reason)
		}
		return caddyhttp.Error(status, err)
	}
	// The upgrader answers a failed upgrade itself (403 for a foreign origin, 400 for a bad handshake).
	conn, err := h.upgrader.Upgrade(hijacker{w, http.NewResponseController(innermost(w))}, r, nil)
	if err != nil {
		release()
		h.logger.Debug("websocket upgrade failed", zap.String("remote", r.RemoteAddr), zap.Error(err))
		return nil
	}
	// The connection is the hub's now and this request is over: the session runs on goroutines of its own rather
	// than at the bottom of Caddy's handler chain, whose deep stack would stay allocated as long as the socket is
	// open (about 20 KiB of the 44 KiB an idle socket cost). The hub tracks it, and Cleanup ends it.
	h.hub.Go(conn, client, release)
	return nil
}

// subprotocol is the WebSocket subprotocol (RFC 6455 §1.9) a client offers to say it speaks wskafka's extensions.
// Such a client is told why a connection is refused in a close frame: a browser reports every refused upgrade as
// close code 1006, so it could not tell "retry later" from "the server is down".
const subprotocol = "wskafka"

// refuseInBand upgrades a connection only to close it at once with the close code (1013 try again later, or
// 4001 credential expired) and the reason's code.
func (h *Handler) refuseInBand(w http.ResponseWriter, r *http.Request, code int, reason string) error {
	conn, err := h.upgrader.Upgrade(hijacker{w, http.NewResponseController(innermost(w))}, r, nil)
	if err != nil {
		return nil // the upgrader has answered
	}
	msg := websocket.FormatCloseMessage(code, reason)
	_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Duration(h.WriteTimeout)))
	_ = conn.Close()
	return nil
}

// innermost returns net/http's own ResponseWriter under Caddy's wrappers. Hijacking through it keeps Caddy's
// response recorders (access log, metrics) from wrapping the connection: they count its bytes as they pass, and
// read the count when the request ends, which with a session outliving ServeHTTP would be a data race. The
// access log records the upgrade; the session's own "connection closed" line records the rest.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// hijacker makes the connection reachable to gorilla/websocket, which type-asserts http.Hijacker on the writer
// it is given. Since Caddy 2.11.5 the writer Caddy passes exposes Hijack only through Unwrap (caddy PR #7913).
type hijacker struct {
	http.ResponseWriter
	rc *http.ResponseController
}

// Hijack hands over the connection read in chunks (chunkedConn), with a frameReadBuffer-byte reader in place of
// net/http's 4 KiB one: gorilla keeps the reader it is given for as long as the socket is open, and through a
// chunkedConn a fill costs a copy rather than a system call. A reader already holding bytes is kept, for gorilla
// to refuse the upgrade (the client sent data before the handshake completed).
func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := h.rc.Hijack()
	if err != nil {
		return conn, brw, err
	}
	chunked := newChunkedConn(conn)
	if c, ok := chunked.(*chunkedConn); ok && brw.Reader.Buffered() == 0 {
		// gorilla reads frames through the reader it is handed (the upgrader sets no ReadBufferSize, and this one
		// is over its 256-byte floor), so the session may read small frames from it too.
		brw.Reader = bufio.NewReaderSize(chunked, frameReadBuffer)
		c.frames = brw.Reader
	}
	return chunked, brw, nil
}

// frameReadBuffer is the size of each socket's frame reader: more than gorilla's 256-byte floor for reusing it,
// room for any frame header and control frame (at most 14 and 125 bytes, RFC 6455 §5.2, §5.5), and the largest
// frame the session reads without gorilla (a publish of a few hundred bytes).
const frameReadBuffer = 1024

// Cleanup closes every connection and then releases the pooled Kafka clients. On exit it closes them at once (1001
// going away) and returns when they have closed; after a reload it spreads their closing (1012 service restart)
// over close_delay and returns at once, releasing the clients when the last has closed. Each connection first
// answers what it read, flushes its publishes and leaves its group. Cleanup is safe after a failed Provision and
// when called twice.
func (h *Handler) Cleanup() error {
	if h.cleanedUp {
		return nil
	}
	// The hub stays: a request still being served refuses its upgrade through it (503, shutting down).
	h.cleanedUp = true
	hub, keys := h.hub, h.poolKeys
	h.poolKeys = nil
	if h.cluster != nil {
		serving.remove(h.cluster)
	}
	if caddy.Exiting() {
		lingering.closeAll()
	}
	if hub == nil {
		return release(keys)
	}
	if caddy.Exiting() || h.CloseDelay == nil || *h.CloseDelay <= 0 {
		code := websocket.CloseServiceRestart
		if caddy.Exiting() {
			code = websocket.CloseGoingAway
		}
		hub.Close(code, 0)
		hub.Wait()
		return release(keys)
	}
	hub.Close(websocket.CloseServiceRestart, time.Duration(*h.CloseDelay))
	if hub.Sessions() == 0 {
		hub.Wait()
		return release(keys)
	}
	lingering.add(hub, keys, h.logger)
	return nil
}

// writeBuffers are gorilla's write buffers, shared by every socket of every handler.
var writeBuffers sync.Pool

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// durationOr0 is the duration a pointer field holds, 0 when unset.
func durationOr0(d *caddy.Duration) caddy.Duration {
	if d == nil {
		return 0
	}
	return *d
}

func durationPtr(d time.Duration) *caddy.Duration {
	cd := caddy.Duration(d)
	return &cd
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ http.Hijacker               = hijacker{}
	_ bridge.FrameReaderConn      = (*chunkedConn)(nil)
)
