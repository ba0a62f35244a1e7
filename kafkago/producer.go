package kafkago

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"

	"github.com/wskafka/wskafka/bridge"
)

// producer writes records with kafka-go's RawProduce API (its Produce API when compressing), one request per
// partition. kafka-go's Writer would do the batching the Publisher already does, and looks up the topic's
// partitions for every message it is given (a tenth of the bridge's CPU when publishing small messages); here the
// look-up happens once per topic per flush, and the offsets of the written records come straight from the response.
type producer struct {
	client      *kafka.Client
	transport   kafka.RoundTripper
	addr        net.Addr
	partitioner kafka.Balancer
	acks        kafka.RequiredAcks
	compression kafka.Compression
	maxAttempts int
	maxBytes    int
	ackTimeout  time.Duration
}

// produce implements Producer.Produce.
func (p *producer) produce(ctx context.Context, records []bridge.Record) []error {
	results := make([]error, len(records))
	now := time.Now()
	byTopic := make(map[string][]int, 1)
	for i := range records {
		if records[i].Time.IsZero() {
			records[i].Time = now
		}
		byTopic[records[i].Topic] = append(byTopic[records[i].Topic], i)
	}
	var wg sync.WaitGroup
	for topic, indexes := range byTopic {
		count, err := p.partitions(ctx, topic)
		if err != nil {
			for _, i := range indexes {
				results[i] = err
			}
			continue
		}
		ids := make([]int, count)
		for i := range ids {
			ids[i] = i
		}
		byPartition := make(map[int][]int, count)
		for _, i := range indexes {
			r := &records[i]
			switch {
			case r.Partition >= count:
				results[i] = fmt.Errorf("%w: %s has no partition %d (it has %d)", bridge.ErrUnknownPartition, topic, r.Partition, count)
				continue
			case r.Partition < 0:
				r.Partition = p.partitioner.Balance(kafka.Message{Key: r.Key, Value: r.Value}, ids...)
			}
			byPartition[r.Partition] = append(byPartition[r.Partition], i)
		}
		// One goroutine per partition, sending its requests in order, so that a partition's records keep the
		// order they were published in.
		for partition, indexes := range byPartition {
			wg.Go(func() {
				for _, chunk := range p.chunks(records, indexes) {
					p.send(ctx, topic, partition, records, chunk, results)
				}
			})
		}
	}
	wg.Wait()
	return results
}

// partitions returns how many partitions topic has. The shared transport answers from its metadata cache; for a
// topic the cache does not know it asks the broker, which creates the topic if its auto.create.topics.enable
// says so, as it did for the original connector.
func (p *producer) partitions(ctx context.Context, topic string) (int, error) {
	res, err := p.transport.RoundTrip(ctx, p.addr, &metadataAPI.Request{TopicNames: []string{topic}, AllowAutoTopicCreation: true})
	if err != nil {
		return 0, err
	}
	for _, t := range res.(*metadataAPI.Response).Topics {
		if t.Name == topic {
			if t.ErrorCode != 0 {
				return 0, kafka.Error(t.ErrorCode)
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("%w: %s", bridge.ErrUnknownTopic, topic)
}

// chunks cuts a partition's records into requests of at most maxBytes: a larger record batch is refused by the
// broker (message.max.bytes).
func (p *producer) chunks(records []bridge.Record, indexes []int) [][]int {
	var out [][]int
	start, size := 0, 0
	for j, i := range indexes {
		n := bridge.RecordOverhead + int(records[i].Size())
		if j > start && size+n > p.maxBytes {
			out = append(out, indexes[start:j])
			start, size = j, 0
		}
		size += n
	}
	return append(out, indexes[start:])
}

// send writes one request's records, retrying what Kafka calls retriable (a leader moving, a broker
// restarting) up to maxAttempts, and stores each record's outcome.
func (p *producer) send(ctx context.Context, topic string, partition int, records []bridge.Record, indexes []int, results []error) {
	var produce func(context.Context) (*kafka.ProduceResponse, error)
	if p.compression == 0 {
		set := recordSets.Get().(*[]byte)
		*set = appendRecordSet((*set)[:0], records, indexes)
		// An attempt that failed may have left its request to kafka-go's connection goroutine, still writing the
		// set: only a set every attempt of which was answered is free for another request.
		answered := true
		defer func() {
			if answered && cap(*set) <= keptRecordSet {
				recordSets.Put(set)
			}
		}()
		uncompressed := p.uncompressed(topic, partition, *set)
		produce = func(ctx context.Context) (*kafka.ProduceResponse, error) {
			res, err := uncompressed(ctx)
			answered = answered && err == nil
			return res, err
		}
	} else {
		produce = p.compressed(topic, partition, records, indexes)
	}
	pause := backoff{first: 100 * time.Millisecond, most: time.Second}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.ackTimeout)
		res, err := produce(actx)
		cancel()
		if err == nil && res != nil && res.Error != nil {
			err = res.Error
		}
		if err == nil {
			for j, i := range indexes {
				r := &records[i]
				if res == nil { // required_acks none: Kafka says nothing, not even the offset
					r.Offset = -1
					continue
				}
				r.Offset = res.BaseOffset + int64(j)
				if !res.LogAppendTime.IsZero() {
					r.Time = res.LogAppendTime // the topic stamps records itself
				}
				results[i] = res.RecordErrors[j]
			}
			return
		}
		if attempt >= p.maxAttempts || !retriable(err) || ctx.Err() != nil {
			for _, i := range indexes {
				results[i] = err
			}
			return
		}
		pause.wait(ctx) // the next attempt ends at once if ctx has ended
	}
}

// recordSets lends send the buffers record sets are encoded into, from the encoding until Kafka has answered. A
// set copies every value published: encoding each into new memory was 38% of the bytes Caddy allocated in the
// produce benchmark, more than the decoded values themselves, and the collector ran that much more often.
var recordSets = sync.Pool{New: func() any { return new([]byte) }}

// keptRecordSet is the largest set buffer given back to recordSets. A request holds at most max_message_bytes (1 MiB
// by default) of records: a set encoded under a larger setting is left to the collector.
const keptRecordSet = 2 << 20

// uncompressed returns what sends set, a record set appendRecordSet encoded once, as a RawProduce request, sent as
// it is by every attempt.
func (p *producer) uncompressed(topic string, partition int, set []byte) func(context.Context) (*kafka.ProduceResponse, error) {
	return func(ctx context.Context) (*kafka.ProduceResponse, error) {
		return p.client.RawProduce(ctx, &kafka.RawProduceRequest{
			Topic: topic, Partition: partition, RequiredAcks: p.acks,
			RawRecords: protocol.RawRecordSet{Reader: bytes.NewReader(set)},
		})
	}
}

// compressed returns what sends the records at indexes through kafka-go's Produce, which compresses them with
// p.compression.
func (p *producer) compressed(topic string, partition int, records []bridge.Record, indexes []int) func(context.Context) (*kafka.ProduceResponse, error) {
	batch := make([]kafka.Record, len(indexes))
	// The readers of the keys and values, made in one piece: one each (kafka.NewBytes) was an allocation per
	// record, and two for a keyed one.
	readers := make([]recordBytes, 2*len(indexes))
	for j, i := range indexes {
		r := &records[i]
		batch[j].Time = r.Time
		for _, h := range r.Headers {
			batch[j].Headers = append(batch[j].Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	return func(ctx context.Context) (*kafka.ProduceResponse, error) {
		for j, i := range indexes { // each request consumes the readers
			r := &records[i]
			batch[j].Key, batch[j].Value = readers[2*j].of(r.Key), readers[2*j+1].of(r.Value)
		}
		return p.client.Produce(ctx, &kafka.ProduceRequest{
			Topic: topic, Partition: partition, RequiredAcks: p.acks, Compression: p.compression,
			Records: kafka.NewRecordReader(batch...),
		})
	}
}

// recordBytes is a key or value as kafka-go reads it (kafka.Bytes): what kafka.NewBytes makes, in memory the
// caller provides.
type recordBytes struct{ bytes.Reader }

func (*recordBytes) Close() error { return nil }

// of points r at b and returns it, keeping a nil key or value null and an empty one empty.
func (r *recordBytes) of(b []byte) kafka.Bytes {
	if b == nil {
		return nil
	}
	r.Reset(b)
	return r
}

// retriable tells whether a failed produce may succeed if sent again.
func retriable(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary()
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
