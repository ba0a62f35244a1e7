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
	// CloseTimeout bounds each step of closing a session: the last flush, leaving the group, the close frame.
	CloseTimeout time.Duration
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
