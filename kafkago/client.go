package kafkago

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/bridge"
)

// Config is the settings of the Kafka clients shared by every handler that names the same cluster. It holds
// only plain values: the Caddy module pools clients under its canonical JSON encoding.
type Config struct {
	Brokers           []string      `json:"brokers"`
	ClientID          string        `json:"client_id"`
	ConnectTimeout    time.Duration `json:"connect_timeout"`
	RequestTimeout    time.Duration `json:"request_timeout"`
	RequiredAcks      int           `json:"required_acks"` // 0 none, 1 leader, -1 all in-sync replicas
	AckTimeout        time.Duration `json:"ack_timeout"`
	Partitioner       string        `json:"partitioner"`
	Compression       string        `json:"compression"`
	MaxAttempts       int           `json:"max_attempts"`
	MaxMessageBytes   int           `json:"max_message_bytes"`
	TopicPartitions   int           `json:"topic_partitions"`  // -1: the broker's num.partitions
	TopicReplication  int           `json:"topic_replication"` // -1: the broker's default.replication.factor
	FetchMinBytes     int           `json:"fetch_min_bytes"`
	FetchMaxBytes     int           `json:"fetch_max_bytes"`
	FetchMaxWait      time.Duration `json:"fetch_max_wait"`
	SessionTimeout    time.Duration `json:"session_timeout"`
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
	RebalanceTimeout  time.Duration `json:"rebalance_timeout"`
	GroupBalancers    []string      `json:"group_balancers"`
	TLS               *TLSConfig    `json:"tls,omitempty"`  // nil: plaintext
	SASL              *SASLConfig   `json:"sasl,omitempty"` // nil: no authentication
}

// Names accepted for the enumerated settings, in the order the docs list them.
var (
	Partitioners   = []string{"murmur2", "crc32", "fnv1a", "round_robin", "least_bytes"}
	Compressions   = []string{"none", "gzip", "snappy", "lz4", "zstd"}
	GroupBalancers = []string{"round_robin", "range"}
)

// Client implements the bridge's Producer, Admin and Consumers with kafka-go. One value serves every session of
// every handler configured with the same Config.
type Client struct {
	cfg       Config
	logger    *zap.Logger
	transport *transport
	// groups carries every group member's requests. kafka-go's Transport keeps a pool per address, each refreshing
	// the cluster's metadata every few seconds, so members share pools rather than each holding its own; a
	// JoinGroup waiting out a rebalance holds one connection, and other requests take or dial another.
	groups   *transport
	producer *producer
	security *security
}

// New builds the clients. It does not dial: connections open on first use, so a config loads without a
// reachable broker.
func New(cfg Config, logger *zap.Logger) (*Client, error) {
	partitioner, err := newBalancer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	var compression kafka.Compression
	if cfg.Compression != "none" && cfg.Compression != "" {
		if err := compression.UnmarshalText([]byte(cfg.Compression)); err != nil {
			return nil, fmt.Errorf("compression %q: %w", cfg.Compression, err)
		}
	}
	sec, err := newSecurity(cfg, logger)
	if err != nil {
		return nil, err
	}
	k := &Client{cfg: cfg, logger: logger, security: sec}
	k.transport, k.groups = k.newTransport(), k.newTransport()
	addr := kafka.TCP(cfg.Brokers...)
	k.producer = &producer{
		client:      &kafka.Client{Addr: addr, Transport: k.transport, Timeout: cfg.AckTimeout},
		transport:   k.transport,
		addr:        addr,
		partitioner: partitioner,
		acks:        kafka.RequiredAcks(cfg.RequiredAcks),
		compression: compression,
		maxAttempts: max(cfg.MaxAttempts, 1),
		maxBytes:    cfg.MaxMessageBytes,
		ackTimeout:  cfg.AckTimeout,
	}
	return k, nil
}

// Destruct closes the clients; it is called when the last handler using them is cleaned up.
func (k *Client) Destruct() error {
	k.transport.CloseIdleConnections()
	k.groups.CloseIdleConnections()
	return nil
}

// Produce implements Producer.
func (k *Client) Produce(ctx context.Context, records []bridge.Record) []error {
	results := k.producer.produce(ctx, records)
	for i, err := range results {
		results[i] = portErr(err)
	}
	return results
}

// client returns an admin client whose metadata is fresh. kafka-go's Transport answers Metadata requests from a
// cache refreshed every few seconds, which would hide topics created a moment ago by another client; a new
// Transport fetches metadata on first use. Admin requests are rare (create, list, subscribe), so the extra
// connection is cheap.
func (k *Client) client() (*kafka.Client, func()) {
	t := k.newTransport()
	return &kafka.Client{Addr: kafka.TCP(k.cfg.Brokers...), Transport: t, Timeout: k.cfg.RequestTimeout}, t.CloseIdleConnections
}

// CreateTopics implements Admin.
func (k *Client) CreateTopics(ctx context.Context, topics []bridge.TopicSpec) (map[string]error, error) {
	client, done := k.client()
	defer done()
	req := &kafka.CreateTopicsRequest{Topics: make([]kafka.TopicConfig, len(topics))}
	for i, t := range topics {
		cfg := kafka.TopicConfig{
			Topic:             t.Name,
			NumPartitions:     cmp.Or(t.Partitions, k.cfg.TopicPartitions),
			ReplicationFactor: cmp.Or(t.Replication, k.cfg.TopicReplication),
		}
		for name, value := range t.Configs {
			cfg.ConfigEntries = append(cfg.ConfigEntries, kafka.ConfigEntry{ConfigName: name, ConfigValue: value})
		}
		req.Topics[i] = cfg
	}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return nil, portErr(err)
	}
	failed := make(map[string]error)
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			failed[name] = portErr(err)
		}
	}
	return failed, nil
}

// DeleteTopics implements Admin.
func (k *Client) DeleteTopics(ctx context.Context, topics []string) (map[string]error, error) {
	client, done := k.client()
	defer done()
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return nil, portErr(err)
	}
	failed := make(map[string]error)
	for name, err := range res.Errors {
		if err != nil {
			failed[name] = portErr(err)
		}
	}
	return failed, nil
}

// Ping implements Admin.
func (k *Client) Ping(ctx context.Context) error {
	client, done := k.client()
	defer done()
	_, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	return portErr(err)
}

// Brokers returns the bootstrap brokers the clients use.
func (k *Client) Brokers() []string { return slices.Clone(k.cfg.Brokers) }

// Topics implements Admin.
func (k *Client) Topics(ctx context.Context, topics []string) (map[string][]bridge.PartitionInfo, error) {
	return retried(ctx, func() (map[string][]bridge.PartitionInfo, error) { return k.topics(ctx, topics) })
}

func (k *Client) topics(ctx context.Context, topics []string) (map[string][]bridge.PartitionInfo, error) {
	client, done := k.client()
	defer done()
	res, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]bridge.PartitionInfo, len(res.Topics))
	for _, t := range res.Topics {
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		if len(topics) == 0 && (t.Internal || strings.HasPrefix(t.Name, "__")) {
			continue
		}
		parts := make([]bridge.PartitionInfo, len(t.Partitions))
		for i, p := range t.Partitions {
			parts[i] = bridge.PartitionInfo{ID: p.ID, Leader: p.Leader.ID}
			if p.Leader.Host == "" {
				parts[i].Leader = -1
			}
		}
		slices.SortFunc(parts, func(a, b bridge.PartitionInfo) int { return cmp.Compare(a.ID, b.ID) })
		out[t.Name] = parts
	}
	return out, nil
}

// Watermarks implements Admin.
func (k *Client) Watermarks(ctx context.Context, topic string, partitions []int) (map[int]bridge.Watermark, error) {
	return retried(ctx, func() (map[int]bridge.Watermark, error) { return k.watermarks(ctx, topic, partitions) })
}

func (k *Client) watermarks(ctx context.Context, topic string, partitions []int) (map[int]bridge.Watermark, error) {
	client, done := k.client()
	defer done()
	reqs := make([]kafka.OffsetRequest, 0, 2*len(partitions))
	for _, p := range partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := make(map[int]bridge.Watermark, len(partitions))
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = bridge.Watermark{Low: p.FirstOffset, High: p.LastOffset}
	}
	for _, p := range partitions {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("offsets of %s/%d: missing from the broker's answer", topic, p)
		}
	}
	return out, nil
}

// OffsetsAt implements Admin.
func (k *Client) OffsetsAt(ctx context.Context, topic string, partitions []int, t time.Time) (map[int]int64, error) {
	return retried(ctx, func() (map[int]int64, error) { return k.offsetsAt(ctx, topic, partitions, t) })
}

func (k *Client) offsetsAt(ctx context.Context, topic string, partitions []int, t time.Time) (map[int]int64, error) {
	client, done := k.client()
	defer done()
	reqs := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		reqs[i] = kafka.TimeOffsetOf(p, t)
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(partitions))
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d at %v: %w", topic, p.Partition, t, p.Error)
		}
		// kafka-go reports the offset found for the time as a key of Offsets.
		for off := range p.Offsets {
			out[p.Partition] = off
		}
	}
	missing := make([]int, 0)
	for _, p := range partitions {
		if _, ok := out[p]; !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		// No record at or after t: start at the end.
		marks, err := k.Watermarks(ctx, topic, missing)
		if err != nil {
			return nil, err
		}
		for p, m := range marks {
			out[p] = m.High
		}
	}
	return out, nil
}

// GroupOffsets implements Admin.
func (k *Client) GroupOffsets(ctx context.Context, group, topic string, partitions []int) (map[int]int64, error) {
	return retried(ctx, func() (map[int]int64, error) { return k.groupOffsets(ctx, group, topic, partitions) })
}

func (k *Client) groupOffsets(ctx context.Context, group, topic string, partitions []int) (map[int]int64, error) {
	client, done := k.client()
	defer done()
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, err
	}
	if errors.Is(res.Error, kafka.GroupIdNotFound) {
		return map[int]int64{}, nil // a group that never committed has no offsets
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := make(map[int]int64, len(partitions))
	for _, p := range res.Topics[topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// retried runs a read-only admin request (topics, watermarks, offsets) again while Kafka answers with an error it
// calls retriable (a partition whose leader is still being elected right after the topic was created, a coordinator
// loading), until ctx ends.
func retried[T any](ctx context.Context, request func() (T, error)) (T, error) {
	pause := backoff{first: 20 * time.Millisecond, most: 500 * time.Millisecond}
	for {
		v, err := request()
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || !pause.wait(ctx) {
			return v, portErr(err)
		}
	}
}

// JoinGroup implements Consumers.
func (k *Client) JoinGroup(groupID string, topics []string) bridge.GroupMember {
	balancers := make([]kafka.GroupBalancer, 0, len(k.cfg.GroupBalancers))
	for _, name := range k.cfg.GroupBalancers {
		switch name {
		case "range":
			balancers = append(balancers, kafka.RangeGroupBalancer{})
		default:
			balancers = append(balancers, kafka.RoundRobinGroupBalancer{})
		}
	}
	return newGroupMember(k, groupID, topics, balancers)
}

// newBalancer maps a partitioner name to a kafka-go Balancer. Keyed partitioners spread records without a key
// round-robin, as the original connector did (kafka-node's cyclic partitioner).
func newBalancer(name string) (kafka.Balancer, error) {
	switch name {
	case "murmur2", "":
		return &keyedBalancer{keyed: kafka.Murmur2Balancer{}}, nil
	case "crc32":
		return &keyedBalancer{keyed: kafka.CRC32Balancer{}}, nil
	case "fnv1a":
		return &keyedBalancer{keyed: &kafka.Hash{}}, nil
	case "round_robin":
		return &kafka.RoundRobin{}, nil
	case "least_bytes":
		return &kafka.LeastBytes{}, nil
	}
	return nil, fmt.Errorf("unknown partitioner %q (want one of %s)", name, strings.Join(Partitioners, ", "))
}

// keyedBalancer partitions records by key hash, and records without a key round-robin.
type keyedBalancer struct {
	roundRobin kafka.RoundRobin
	keyed      kafka.Balancer
}

func (b *keyedBalancer) Balance(msg kafka.Message, partitions ...int) int {
	if msg.Key == nil {
		return b.roundRobin.Balance(msg, partitions...)
	}
	return b.keyed.Balance(msg, partitions...)
}

// Interface guards
var (
	_ bridge.Producer  = (*Client)(nil)
	_ bridge.Admin     = (*Client)(nil)
	_ bridge.Consumers = (*Client)(nil)
)
