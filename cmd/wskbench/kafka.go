package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaCluster is the broker of a run: KAFKA_BROKERS, or an in-process kfake cluster the Caddy processes share.
type kafkaCluster struct {
	brokers    []string
	embedded   bool
	version    string
	partitions int
	client     *kafka.Client
	fake       *kfake.Cluster
}

func openKafka(brokers []string, partitions int) (*kafkaCluster, error) {
	k := &kafkaCluster{brokers: brokers, partitions: partitions, version: os.Getenv("KAFKA_VERSION")}
	if len(brokers) == 0 {
		fake, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, fmt.Errorf("starting kfake: %w", err)
		}
		k.fake, k.brokers, k.embedded = fake, fake.ListenAddrs(), true
		k.version = "kfake " + moduleVersion("github.com/twmb/franz-go/pkg/kfake")
	} else if k.version == "" {
		k.version = "unknown (set KAFKA_VERSION)"
	}
	k.client = &kafka.Client{Addr: kafka.TCP(k.brokers...), Timeout: 30 * time.Second}
	return k, nil
}

func (k *kafkaCluster) close() {
	if k.fake != nil {
		k.fake.Close()
	}
}

// createTopic makes a fresh topic with the run's partition count and waits (bounded) until every partition has a
// leader that answers ListOffsets.
func (k *kafkaCluster) createTopic(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := k.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: k.partitions, ReplicationFactor: 1,
	}}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	for {
		if _, err := k.highWatermark(ctx, topic); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("topic %s not ready: %w", topic, err)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// deleteTopic drops a topic the tool is done with, so that the records of earlier rounds do not weigh on later
// ones (the embedded broker keeps them in the tool's heap).
func (k *kafkaCluster) deleteTopic(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := k.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		return fmt.Errorf("deleting topic %s: %w", topic, err)
	}
	return nil
}

// highWatermark is the sum of the high watermarks of the topic's partitions: the records it holds.
func (k *kafkaCluster) highWatermark(ctx context.Context, topic string) (int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: nil}}
	for p := range k.partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	resp, err := k.client.ListOffsets(ctx, req)
	if err != nil {
		return 0, err
	}
	parts := resp.Topics[topic]
	if len(parts) != k.partitions {
		return 0, fmt.Errorf("topic %s: offsets of %d partitions, want %d", topic, len(parts), k.partitions)
	}
	var sum int64
	for _, p := range parts {
		if p.Error != nil {
			return 0, fmt.Errorf("topic %s partition %d: %w", topic, p.Partition, p.Error)
		}
		sum += p.LastOffset
	}
	return sum, nil
}

// waitWatermark polls until the topic holds want records; it returns when they were seen.
func (k *kafkaCluster) waitWatermark(ctx context.Context, topic string, want int64, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var got int64
	for {
		n, err := k.highWatermark(ctx, topic)
		if err == nil {
			got = n
			if n >= want {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("topic %s holds %d records after %v, want %d", topic, got, timeout, want)
		case <-time.After(5 * time.Millisecond): // poll interval: the clock's resolution
		}
	}
}

// writer is the raw baseline: kafka-go's Writer with the acknowledgements the bridge asks for by default
// (producer.required_acks one) and round-robin over partitions, as the bridge does with keyless publishes.
func (k *kafkaCluster) writer(topic string, batchSize int, batchTimeout time.Duration, completion func([]kafka.Message, error)) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(k.brokers...),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireOne,
		BatchSize:    batchSize,
		BatchBytes:   1 << 20,
		BatchTimeout: batchTimeout,
		Async:        true,
		Completion:   completion,
		Transport:    &kafka.Transport{Dial: (&net.Dialer{Timeout: 5 * time.Second}).DialContext},
	}
}

// latencyProducer is the latency scenarios' producer (see produceAtRate): acknowledged by the leader and
// round-robin over partitions, as the bridge publishes by default, uncompressed, with no linger.
func (k *kafkaCluster) latencyProducer(topic string) (*kgo.Client, error) {
	return kgo.NewClient(
		kgo.SeedBrokers(k.brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(), // required with leader acks
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
	)
}

// rawConsumer is the consume scenario's baseline: franz-go reading every partition of a fresh topic from offset 0,
// with the bridge's default fetch settings (fetch_min_bytes 1, fetch_max_wait 100ms).
func (k *kafkaCluster) rawConsumer(topic string) (*kgo.Client, error) {
	from := make(map[int32]kgo.Offset, k.partitions)
	for p := range k.partitions {
		from[int32(p)] = kgo.NewOffset().At(0)
	}
	return kgo.NewClient(
		kgo.SeedBrokers(k.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchMinBytes(1),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
}

func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	for _, m := range info.Deps {
		if m.Path == path {
			return m.Version
		}
	}
	return "(unknown)"
}
