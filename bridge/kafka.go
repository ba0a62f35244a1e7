package bridge

import (
	"context"
	"fmt"
	"time"
)

// The bridge talks to Kafka only through the interfaces in this file, so the protocol logic does not depend on
// one client library; KafkaGo is the implementation the module uses.

// Record is one Kafka record as the bridge handles it.
type Record struct {
	Topic string
	// Partition is where the record is (fetched) or goes (produced); a record to produce with Partition -1 is
	// placed by the partitioner, and Produce sets the partition it chose.
	Partition int
	Offset    int64 // set by Produce once written
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time // a record to produce with a zero Time gets the current time
	// HighWatermark is, for a fetched record, the partition's next offset when it was fetched: what a reader
	// at this record lags behind.
	HighWatermark int64
}

// Size is what a record weighs against every bound that counts bytes (max_message_bytes, the buffers of
// publishes and of fetched records): its key, value and headers.
func (r *Record) Size() int64 {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// RecordOverhead is a generous bound on what Kafka's record framing adds to a record's Size: a publish is refused
// early when it would not fit in max_message_bytes with it, and a producer cuts requests by it.
const RecordOverhead = 64

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Producer writes records; one is shared by every session of every handler using the same cluster settings.
type Producer interface {
	// Produce writes records and returns one result per record, in order: nil once Kafka acknowledged it (as
	// configured by required acks), or why it was not written. It sets the Partition, Offset and Time of each
	// record written.
	Produce(ctx context.Context, records []Record) []error
}

// Admin answers questions about topics and groups.
type Admin interface {
	// Ping asks the cluster for its metadata: nil when a broker answered.
	Ping(ctx context.Context) error
	// CreateTopics creates topics; a topic that already exists is not an error. It returns the error of each
	// topic that could not be created.
	CreateTopics(ctx context.Context, topics []TopicSpec) (map[string]error, error)
	// DeleteTopics deletes topics and returns the error of each topic that could not be deleted.
	DeleteTopics(ctx context.Context, topics []string) (map[string]error, error)
	// Topics returns the partitions of each named topic, or of every non-internal topic when topics is empty,
	// sorted by ID. A named topic that does not exist is absent from the result.
	Topics(ctx context.Context, topics []string) (map[string][]PartitionInfo, error)
	// Watermarks returns, for each partition of topic, its first offset and the offset the next record will get.
	Watermarks(ctx context.Context, topic string, partitions []int) (map[int]Watermark, error)
	// OffsetsAt returns, for each partition of topic, the first offset whose record time is at or after t (the
	// high watermark when there is none).
	OffsetsAt(ctx context.Context, topic string, partitions []int, t time.Time) (map[int]int64, error)
	// GroupOffsets returns the offsets group has committed for the partitions of topic; a partition without one
	// is absent.
	GroupOffsets(ctx context.Context, group, topic string, partitions []int) (map[int]int64, error)
}

// TopicSpec is a topic to create; zero Partitions or Replication take the configured defaults.
type TopicSpec struct {
	Name        string
	Partitions  int
	Replication int
	Configs     map[string]string
}

// PartitionInfo describes one partition of a topic.
type PartitionInfo struct {
	ID     int
	Leader int // the leader broker's ID; -1 when there is none
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
	// ReadPartitions reads the partitions of offsets (topic → partition → the offset of the first record to
	// read), asking each broker for every partition it leads of them in one fetch.
	ReadPartitions(offsets map[string]map[int]int64) PartitionsReader
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

// PartitionsReader reads records of many partitions, each partition's in order. It is used by one goroutine at a
// time.
type PartitionsReader interface {
	// Fetch waits for the records of the next fetch answered, of one or more partitions; transient failures
	// (a leader moving, a broker restarting) are retried until ctx ends. Partitions whose next offset no longer
	// exists are reported as an *OffsetsOutOfRangeError, and are not read again until Seek moves them.
	Fetch(ctx context.Context) ([]Record, error)
	// Seek makes reading of one partition resume at offset.
	Seek(topic string, partition int, offset int64)
	// Close stops the reader's requests and releases its connections; a reader is done with when closed, so
	// there is nothing to report.
	Close()
}

// OffsetsOutOfRangeError names the partitions a PartitionsReader found reading at an offset they no longer
// hold (errors.Is ErrOffsetOutOfRange).
type OffsetsOutOfRangeError struct {
	Offsets map[string]map[int]int64 // topic → partition → the offset that is gone
}

func (e *OffsetsOutOfRangeError) Error() string {
	return fmt.Sprintf("%v: %v", ErrOffsetOutOfRange, e.Offsets)
}

func (e *OffsetsOutOfRangeError) Unwrap() error { return ErrOffsetOutOfRange }
