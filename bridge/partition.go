package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"
)

// fetchQueueRecords bounds the records fetched but not yet batched, per subscription or stream, as the limits'
// max_queue_bytes bounds their bytes. When the socket is slow the queue fills and the partition readers stop
// fetching.
const fetchQueueRecords = 256

// readRetryPause is how long a partition reader that retries waits after a failed read.
const readRetryPause = time.Second

// partitionReader feeds the records of a group subscription's generation or of a broadcast stream, each
// partition's in order, to its batching loop: the one reader loop of both. One reader reads every partition of its
// generation or stream, through one PartitionsReader (one fetch per broker), so a record passes from the Kafka
// client's connection to this goroutine and then to the batching loop, whatever the number of partitions.
type partitionReader struct {
	kafka   Kafka
	records chan<- Record
	// budget, when set, is taken from for each record's bytes before it is queued; the receiver gives them back.
	budget *byteBudget
	// lag makes the gauge of one partition's share of consumer_lag.
	lag func(topic string) *lagGauge
	// outOfRange is where reading resumes when an offset no longer exists: FirstOffset or LastOffset.
	outOfRange int64
	// retry keeps reading after a failure, after readRetryPause (a broadcast stream has no one to hand its
	// partitions to); without it a failure ends run (a group's generation then ends, and the member rejoins
	// from the committed offsets).
	retry  bool
	logger *zap.Logger
}

// run reads from offsets (topic → partition → offset) until ctx ends (or, without retry, a read fails).
func (r *partitionReader) run(ctx context.Context, offsets map[string]map[int]int64) {
	next := make(map[string]map[int]int64, len(offsets))
	lags := make(map[string]map[int]*lagGauge, len(offsets))
	for topic, parts := range offsets {
		next[topic] = maps.Clone(parts)
		lags[topic] = make(map[int]*lagGauge, len(parts))
		for p := range parts {
			lags[topic][p] = r.lag(topic)
		}
	}
	defer func() {
		for _, parts := range lags {
			for _, g := range parts {
				g.set(0)
			}
		}
	}()
	for ctx.Err() == nil {
		reader := r.kafka.ReadPartitions(next)
		err := r.feed(ctx, reader, next, lags)
		reader.Close()
		if ctx.Err() != nil {
			return
		}
		if !r.retry {
			r.logger.Warn("reading partitions", zap.Error(err))
			return
		}
		r.logger.Warn("reading partitions failed, retrying", zap.Error(err))
		select {
		case <-time.After(readRetryPause):
		case <-ctx.Done():
		}
	}
}

// feed passes what reader fetches to records until ctx ends or the reader fails, keeping next at each
// partition's next offset and the lag gauges at what each partition is behind.
func (r *partitionReader) feed(ctx context.Context, reader PartitionsReader, next map[string]map[int]int64, lags map[string]map[int]*lagGauge) error {
	for {
		recs, err := reader.Fetch(ctx)
		if gone, ok := errors.AsType[*OffsetsOutOfRangeError](err); ok {
			if err := r.reset(ctx, reader, gone, next); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		// A fetch's records come partition by partition: the gauge and the next offsets are looked up once per
		// partition's run, not per record.
		for len(recs) > 0 {
			n := 1
			for n < len(recs) && recs[n].Partition == recs[0].Partition && recs[n].Topic == recs[0].Topic {
				n++
			}
			run := recs[:n]
			recs = recs[n:]
			if err := r.queue(ctx, run, next[run[0].Topic], lags[run[0].Topic][run[0].Partition]); err != nil {
				return err
			}
		}
	}
}

// queue passes run, records of one partition in order, to records, keeping next (the partition's topic's next
// offsets) and the partition's lag up to date as they go.
func (r *partitionReader) queue(ctx context.Context, run []Record, next map[int]int64, lag *lagGauge) error {
	for i := range run {
		rec := &run[i]
		lag.set(rec.HighWatermark - rec.Offset - 1)
		if r.budget != nil && !r.budget.take(ctx, nil, rec.Size()) {
			return ctx.Err()
		}
		// Without waiting first: a select of one case and a default costs less than one of two.
		select {
		case r.records <- *rec:
		default:
			select {
			case r.records <- *rec:
			case <-ctx.Done():
				if r.budget != nil {
					r.budget.give(rec.Size())
				}
				return ctx.Err()
			}
		}
		next[rec.Partition] = rec.Offset + 1
	}
	return nil
}

// reset moves the partitions whose offset no longer exists to outOfRange's end of what they hold.
func (r *partitionReader) reset(ctx context.Context, reader PartitionsReader, gone *OffsetsOutOfRangeError, next map[string]map[int]int64) error {
	for topic, parts := range gone.Offsets {
		marks, err := r.kafka.Watermarks(ctx, topic, slices.Collect(maps.Keys(parts)))
		if err != nil {
			return fmt.Errorf("resolving an out-of-range offset: %w", err)
		}
		for p, offset := range parts {
			to := pick(r.outOfRange, marks[p])
			r.logger.Warn("offset out of range, resetting", zap.String("topic", topic), zap.Int("partition", p),
				zap.Int64("offset", offset), zap.Int64("reset_to", to))
			next[topic][p] = to
			reader.Seek(topic, p, to)
		}
	}
	return nil
}

// pick is the offset of mark that which (FirstOffset or LastOffset) names.
func pick(which int64, mark Watermark) int64 {
	if which == FirstOffset {
		return mark.Low
	}
	return mark.High
}
