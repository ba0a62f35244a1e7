package bridge

import (
	"context"
	"time"
)

// The bridge talks to Kafka only through the interfaces in this file, so the protocol logic does not depend on
// one client library; KafkaGo is the implementation the module uses.

// Record is one Kafka record as the bridge handles it.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
}

// Producer writes records; one is shared by every session of every handler using the same cluster settings.
type Producer interface {
	// Produce writes records and returns one result per record, in order: nil once Kafka acknowledged it (as
	// configured by required acks), or why it was not written.
	Produce(ctx context.Context, records []Record) []error
}

// Admin answers questions about topics.
type Admin interface {
	// CreateTopics creates the named topics with the configured partitions and replication; a topic that already
	// exists is not an error. It returns the error of each topic that could not be created.
	CreateTopics(ctx context.Context, topics []string) (map[string]error, error)
	// Partitions returns the partition IDs of each named topic, or of every non-internal topic when topics is
	// empty. A named topic that does not exist is absent from the result.
	Partitions(ctx context.Context, topics []string) (map[string][]int, error)
	// Watermarks returns, for each partition of topic, its first offset and the offset the next record will get.
	Watermarks(ctx context.Context, topic string, partitions []int) (map[int]Watermark, error)
}

// Watermark is the range of offsets a partition holds: [Low, High).
type Watermark struct {
	Low, High int64
}

// Consumers creates consumer-group members and partition readers.
type Consumers interface {
	// JoinGroup creates a member of groupID subscribed to topics. It joins in the background; the first
	// generation is returned by Next.
	JoinGroup(groupID string, topics []string) GroupMember
	// ReadPartition reads one partition from offset on.
	ReadPartition(topic string, partition int, offset int64) PartitionReader
}

// GroupMember is one member of a consumer group.
type GroupMember interface {
	// Next waits for the member's next generation: the group joined and partitions assigned.
	Next(ctx context.Context) (Generation, error)
	// Close leaves the group and waits for the current generation's functions to end.
	Close() error
}

// Generation is one assignment of partitions to a group member, valid until the next rebalance.
type Generation interface {
	// Assignments maps topic → partition → the group's committed offset, or a negative value when the group has
	// none for that partition.
	Assignments() map[string]map[int]int64
	// Start runs fn for the lifetime of the generation; fn's context ends with the generation, and the member does
	// not rejoin until fn has returned.
	Start(fn func(ctx context.Context))
	// Commit commits, per topic and partition, the offset of the next record to read.
	Commit(offsets map[string]map[int]int64) error
}

// PartitionReader reads records of one partition in order.
type PartitionReader interface {
	Fetch(ctx context.Context) (Record, error)
	Close() error
}
