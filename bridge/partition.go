package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// fetchQueueRecords bounds the records fetched but not yet batched, per subscription or stream, as the limits'
// max_queue_bytes bounds their bytes. When the socket is slow the queue fills and the partition readers stop
// fetching.
const fetchQueueRecords = 256

// readRetryPause is how long a partition reader that retries waits after a failed read.
const readRetryPause = time.Second

// partitionReader feeds one partition's records, in order, to the batching loop of a group subscription's
// generation or of a broadcast stream: the one reader loop of both.
type partitionReader struct {
	kafka     Kafka
	topic     string
	partition int
	records   chan<- Record
	// budget, when set, is taken from for each record's bytes before it is queued; the receiver gives them back.
	budget *byteBudget
	lag    *lagGauge
	// outOfRange is where reading resumes when the offset no longer exists: FirstOffset or LastOffset.
	outOfRange int64
	// retry keeps reading after a failure, after readRetryPause (a broadcast stream has no one to hand its
	// partitions to); without it a failure ends run (a group's generation then ends, and the member rejoins
	// from the committed offsets).
	retry  bool
	logger *zap.Logger
}

// run reads from offset until ctx ends (or, without retry, a read fails).
func (r *partitionReader) run(ctx context.Context, offset int64) {
	logger := r.logger.With(zap.String("topic", r.topic), zap.Int("partition", r.partition))
	defer r.lag.set(0)
	for ctx.Err() == nil {
		reader := r.kafka.ReadPartition(r.topic, r.partition, offset)
		err := r.feed(ctx, reader, &offset)
		reader.Close()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrOffsetOutOfRange) {
			marks, merr := r.kafka.Watermarks(ctx, r.topic, []int{r.partition})
			if merr == nil {
				next := pick(r.outOfRange, marks[r.partition])
				logger.Warn("offset out of range, resetting", zap.Int64("offset", offset), zap.Int64("reset_to", next))
				offset = next
				continue
			}
			err = fmt.Errorf("resolving an out-of-range offset: %w", merr)
		}
		if !r.retry {
			logger.Warn("reading partition", zap.Error(err))
			return
		}
		logger.Warn("reading partition failed, retrying", zap.Error(err))
		select {
		case <-time.After(readRetryPause):
		case <-ctx.Done():
		}
	}
}

// feed passes what reader fetches to records until ctx ends or the reader fails, keeping offset at the next one
// and the lag gauge at what the reader is behind.
func (r *partitionReader) feed(ctx context.Context, reader PartitionReader, offset *int64) error {
	for {
		rec, err := reader.Fetch(ctx)
		if err != nil {
			return err
		}
		r.lag.set(rec.HighWatermark - rec.Offset - 1)
		if r.budget != nil && !r.budget.take(ctx, nil, rec.Size()) {
			return ctx.Err()
		}
		select {
		case r.records <- rec:
			*offset = rec.Offset + 1
		case <-ctx.Done():
			if r.budget != nil {
				r.budget.give(rec.Size())
			}
			return ctx.Err()
		}
	}
}

// pick is the offset of mark that which (FirstOffset or LastOffset) names.
func pick(which int64, mark Watermark) int64 {
	if which == FirstOffset {
		return mark.Low
	}
	return mark.High
}
