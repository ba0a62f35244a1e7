package kafkago

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/wskafka/wskafka/bridge"
)

// fetcher reads one partition with kafka-go's Fetch API. kafka-go's Reader would do, but it decodes an empty
// value and a null one alike as nil, and the protocol tells them apart ("p":"" and "p":null); the Fetch API's
// records keep the difference. Each fetcher has its own transport, so its long polls never queue behind another
// partition's on a shared connection.
type fetcher struct {
	client    *kafka.Client
	transport *kafka.Transport
	topic     string
	partition int
	offset    int64 // of the next record to return
	minBytes  int64
	maxBytes  int64
	maxWait   time.Duration
	pending   []bridge.Record
	// highWatermark is the partition's next offset as of the last fetch.
	highWatermark int64
}

// fetchBackoffMax caps the pause between failed fetches (a partition moving to another leader, a broker
// restarting); kafka-go's Reader pauses alike.
const fetchBackoffMax = time.Second

// Fetch returns the next record, fetching when none is buffered. Transient failures are retried, with a growing
// pause, until ctx ends; a vanished offset is reported as ErrOffsetOutOfRange.
func (f *fetcher) Fetch(ctx context.Context) (bridge.Record, error) {
	pause := backoff{first: 50 * time.Millisecond, most: fetchBackoffMax}
	for len(f.pending) == 0 {
		err := f.fetch(ctx)
		switch {
		case err == nil:
			pause.reset()
			continue
		case ctx.Err() != nil:
			return bridge.Record{}, ctx.Err()
		case errors.Is(err, bridge.ErrOffsetOutOfRange):
			return bridge.Record{}, portErr(err)
		}
		if !pause.wait(ctx) {
			return bridge.Record{}, ctx.Err()
		}
	}
	rec := f.pending[0]
	f.pending = f.pending[1:]
	return rec, nil
}

func (f *fetcher) fetch(ctx context.Context) error {
	res, err := f.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: f.topic, Partition: f.partition, Offset: f.offset,
		MinBytes: f.minBytes, MaxBytes: f.maxBytes, MaxWait: f.maxWait,
	})
	if err != nil {
		return err
	}
	if res.Error != nil {
		if errors.Is(res.Error, kafka.OffsetOutOfRange) {
			return fmt.Errorf("%w: %s/%d at %d: %w", bridge.ErrOffsetOutOfRange, f.topic, f.partition, f.offset, res.Error)
		}
		return res.Error
	}
	f.highWatermark = res.HighWatermark
	batches := []protocol.RecordReader{res.Records}
	if stream, ok := res.Records.(*protocol.RecordStream); ok {
		batches = stream.Records
	}
	for _, batch := range batches {
		// Transaction markers are not records a client published.
		_, control := batch.(*protocol.ControlBatch)
		for {
			r, err := batch.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			rec, err := f.record(r)
			if err != nil {
				return err
			}
			// A compressed batch starts where it starts, possibly before the offset asked for.
			if r.Offset < f.offset {
				continue
			}
			f.offset = r.Offset + 1
			if !control {
				f.pending = append(f.pending, rec)
			}
		}
	}
	return nil
}

// record copies a fetched record, keeping a null key or value nil and an empty one non-nil.
func (f *fetcher) record(r *kafka.Record) (bridge.Record, error) {
	rec := bridge.Record{Topic: f.topic, Partition: f.partition, Offset: r.Offset, Time: r.Time, HighWatermark: f.highWatermark}
	var err error
	if rec.Key, err = readBytes(r.Key); err != nil {
		return rec, err
	}
	if rec.Value, err = readBytes(r.Value); err != nil {
		return rec, err
	}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, bridge.Header{Key: h.Key, Value: h.Value})
	}
	return rec, nil
}

func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer func() { _ = b.Close() }() // a buffer of the fetched batch: closing only returns it to its pool
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}

func (f *fetcher) Close() {
	f.transport.CloseIdleConnections()
}
