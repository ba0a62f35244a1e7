package bridge

import "time"

// Config is everything a Hub needs to know, in plain Go values. The Caddy module fills it from its JSON config
// after applying defaults and validating; the bridge trusts it.
type Config struct {
	Producer ProducerConfig
	Consumer ConsumerConfig
	// RequestTimeout bounds every operation a client request starts against Kafka (a flush, a topic create or
	// list, joining a group), so that a request is answered even when Kafka is unreachable.
	RequestTimeout time.Duration
	// WriteTimeout is how long one frame may take to reach a client before its socket is closed as dead.
	WriteTimeout time.Duration
	// AllowDelete enables topic/delete.
	AllowDelete bool
	// TopicLabels also counts publishes, deliveries and lag by topic (unbounded label values: off by default).
	TopicLabels bool
	// CloseTimeout bounds each step of closing a session: the last flush, leaving the group, the close frame.
	CloseTimeout time.Duration
	Limits       Limits
}

// Limits bound what one client can make the server hold or do.
type Limits struct {
	// MaxFrameBytes is the largest frame read from a client; a larger one closes the socket with 1009.
	MaxFrameBytes int64
	// MaxConnections bounds the open sockets of the route; MaxConnectionsPerClient those of one identity (or of
	// one IP address for connections without an identity). 0 means no bound.
	MaxConnections          int
	MaxConnectionsPerClient int
	// PublishRate and PublishBytesRate bound one socket's publishes per second, with bursts of PublishBurst
	// messages and PublishBytesRate bytes. 0 means no bound.
	PublishRate      float64
	PublishBurst     int
	PublishBytesRate int
	// MaxTopics bounds the topics one request names.
	MaxTopics int
	// MaxQueueBytes bounds the frames waiting for one socket's writer; a subscription stops fetching while it is
	// full.
	MaxQueueBytes int64
	// PingInterval is how often an idle socket is pinged; one that has sent nothing, not even a pong, for
	// PingInterval plus PongTimeout is closed as dead. 0 disables keepalive.
	PingInterval time.Duration
	PongTimeout  time.Duration
}

// ProducerConfig controls how a session batches its publishes.
type ProducerConfig struct {
	// MQLimit flushes the buffer when this many publishes are waiting; it is also the buffer's bound.
	MQLimit int
	// MQInterval flushes the buffer this long after its first publish arrived; 0 sends each publish at once.
	MQInterval time.Duration
	// MaxMessageBytes is the largest record (key, value and headers) accepted for publishing.
	MaxMessageBytes int
	// Receipts answers every publish with a receipt, as if each asked with "ack": true.
	Receipts bool
	// MaxBufferBytes bounds the bytes of publishes buffered per session, as MQLimit bounds their number.
	MaxBufferBytes int64
	// TopicLabels: see Config.TopicLabels.
	TopicLabels bool
}

// ConsumerConfig controls subscriptions.
type ConsumerConfig struct {
	// GroupID is the consumer group of a subscribe that names none.
	GroupID string
	// StartOffset is where a group with no committed offset starts: FirstOffset or LastOffset.
	StartOffset int64
	// OutOfRangeOffset is where a committed offset that no longer exists resumes: FirstOffset or LastOffset.
	OutOfRangeOffset int64
	// MQLimit delivers buffered notifications when this many are waiting.
	MQLimit int
	// MQInterval delivers buffered notifications this long after the first arrived; 0 delivers each at once.
	MQInterval time.Duration
	// CommitInterval is how often offsets of delivered (or, with client commits, acknowledged) notifications are
	// committed; 0 commits at once.
	CommitInterval time.Duration
	// MaxUnacked bounds the notifications of a client-commit subscription delivered but not acknowledged; at the
	// bound it stops fetching until the client acknowledges.
	MaxUnacked int
}

// Kafka's sentinels for "the first offset" and "the next offset to be written", as kafka-go spells them.
const (
	FirstOffset int64 = -2
	LastOffset  int64 = -1
)
