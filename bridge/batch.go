package bridge

import "time"

// batcher collects records into the batches one notification frame carries, by the consumer's mq_limit and
// mq_interval: a batch goes out when it holds limit records (or maxBytes), or interval after its first record;
// with interval 0 at once, together with whatever records are already waiting. Group subscriptions and broadcast
// streams batch with it alike; the loop that owns it selects on due.
type batcher struct {
	limit    int
	interval time.Duration
	maxBytes int64 // a batch this heavy goes out at once; 0 is no bound

	records []Record
	bytes   int64
	timer   *time.Timer
	// due receives when interval has passed since the batch's first record; nil while no batch is waiting on it.
	due <-chan time.Time
}

// add appends rec to the batch and, with interval 0, the records already waiting on more; limit is the batch's
// bound in records this time (at most the batcher's own: a client-commit subscription takes no more than its
// unacknowledged room). It reports whether the batch is to go out now.
func (b *batcher) add(rec Record, more <-chan Record, limit int) bool {
	limit = min(limit, b.limit)
	before := len(b.records)
	b.append(rec)
	if b.interval == 0 {
		b.drain(more, limit)
	}
	if b.interval == 0 || b.full(limit) {
		return true
	}
	if before == 0 {
		if b.timer == nil {
			b.timer = time.NewTimer(b.interval)
		} else {
			b.timer.Reset(b.interval)
		}
		b.due = b.timer.C
	}
	return false
}

// drain appends the records already waiting on more, without waiting for any, up to limit.
func (b *batcher) drain(more <-chan Record, limit int) {
	for len(b.records) < limit {
		select {
		case rec := <-more:
			b.append(rec)
		default:
			return
		}
	}
}

// append adds rec to the batch without any rule: for a loop that decides itself when the batch goes out.
func (b *batcher) append(rec Record) {
	b.records = append(b.records, rec)
	b.bytes += rec.Size()
}

// full reports whether the batch holds limit records or maxBytes.
func (b *batcher) full(limit int) bool {
	return len(b.records) >= min(limit, b.limit) || b.maxBytes > 0 && b.bytes >= b.maxBytes
}

func (b *batcher) len() int { return len(b.records) }

// take returns the batch and its bytes, and starts the next one. The records are valid until the next add.
func (b *batcher) take() ([]Record, int64) {
	records, bytes := b.records, b.bytes
	b.records, b.bytes = b.records[:0], 0
	if b.timer != nil {
		b.timer.Stop()
	}
	b.due = nil
	return records, bytes
}

// stop releases the timer.
func (b *batcher) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}
