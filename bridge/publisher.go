package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// pending is what the reply to one buffered publish needs.
type pending struct {
	req     requestRef
	receipt bool
}

// keptBatchRecords is the largest batch whose slices a Publisher keeps for itself; larger ones go to
// largeBatches.
const keptBatchRecords = 1024

// largeBatches holds batches grown past keptBatchRecords, for the next flush of any session. A socket publishing
// at full speed fills batches of thousands of records; growing each anew by appending was a sixth of Caddy's CPU
// in the produce benchmark. The pool lets the collector free them once the bursts stop, so a quiet socket holds
// none.
var largeBatches sync.Pool // of *batch

// batch is a Publisher's buffer: the records, and beside each what its reply needs.
type batch struct {
	records []Record
	pending []pending
}

func (b *batch) len() int { return len(b.records) }

// reset empties the batch for reuse, dropping what it referred to so the collector can free it.
func (b *batch) reset() {
	clear(b.records)
	clear(b.pending)
	b.records, b.pending = b.records[:0], b.pending[:0]
}

// Publisher buffers one session's publishes and writes them to Kafka in batches: when mq_limit are waiting, when
// mq_interval has passed since the first of them arrived, at once when mq_interval is 0, and when the session
// closes. At most one flush runs at a time, so a session's records keep their order; records that arrive during
// a flush go into the next one. The buffer never holds more than mq_limit records nor more than max_buffer_bytes:
// Add blocks until a flush makes room, which stops the session reading its socket (TCP backpressure to the
// client).
type Publisher struct {
	producer Producer
	cfg      ProducerConfig
	timeout  time.Duration
	// done is called from the flushing goroutine for each publish Kafka did not take, and for each written one
	// that asked for a receipt.
	done func(req requestRef, rec *Record, receipt bool, err error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	buf      batch
	spare    batch // the previous batch's slices, once written, for the next: a flush allocates nothing
	lastLen  int   // records in the last flush: the room a batch made anew starts with
	bufBytes int64
	due      bool          // the buffer should be flushed as soon as possible
	hurry    bool          // the session is closing: every publish is flushed at once
	flushing bool          // a flush goroutine is running
	writing  int           // publishes taken by the running flush and not yet answered
	timer    *time.Timer   // created on the first publish with mq_interval > 0
	room     chan struct{} // closed when a flush empties the buffer; made by an Add that found it full
}

func newPublisher(producer Producer, cfg ProducerConfig, timeout time.Duration, done func(requestRef, *Record, bool, error)) *Publisher {
	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{producer: producer, cfg: cfg, timeout: timeout, done: done, ctx: ctx, cancel: cancel}
}

// Add buffers one publish. It blocks while the buffer is full, until a flush takes it, ctx ends or the Publisher
// is closed.
func (p *Publisher) Add(ctx context.Context, rec Record, req requestRef, receipt bool) error {
	size := int(rec.Size()) + RecordOverhead
	if size > p.cfg.MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes, more than max_message_bytes %d", ErrMessageTooLarge, size-RecordOverhead, p.cfg.MaxMessageBytes)
	}
	p.mu.Lock()
	for p.buf.len() >= p.cfg.MQLimit || p.buf.len() > 0 && p.bufBytes+int64(size) > p.cfg.MaxBufferBytes {
		if p.room == nil {
			p.room = make(chan struct{})
		}
		room := p.room
		p.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.ctx.Done():
			return ErrShuttingDown
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if cap(p.buf.records) == 0 {
		p.buf = p.newBatch()
	}
	p.buf.records = append(p.buf.records, rec)
	p.buf.pending = append(p.buf.pending, pending{req: req, receipt: receipt})
	p.bufBytes += int64(size)
	switch n := p.buf.len(); {
	case p.hurry || p.cfg.MQInterval == 0 || n >= p.cfg.MQLimit || p.bufBytes >= p.cfg.MaxBufferBytes:
		p.due = true
		p.startFlushLocked()
	case n == 1 && p.timer == nil:
		p.timer = time.AfterFunc(p.cfg.MQInterval, p.intervalElapsed)
	case n == 1:
		p.timer.Reset(p.cfg.MQInterval)
	}
	return nil
}

// Hurry flushes what is buffered at once, and from now on every publish as it comes: the session is closing and
// waits for the answers.
func (p *Publisher) Hurry() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hurry, p.due = true, true
	p.startFlushLocked()
}

// Unsettled counts the publishes buffered or being written whose outcome is not yet known (and answered).
func (p *Publisher) Unsettled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.len() + p.writing
}

func (p *Publisher) intervalElapsed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.due = true
	p.startFlushLocked()
}

func (p *Publisher) startFlushLocked() {
	if p.flushing || p.buf.len() == 0 {
		return
	}
	p.flushing = true
	p.wg.Add(1)
	go p.flushLoop()
}

// flushLoop writes batches until nothing is due, then ends; the next trigger starts a new one.
func (p *Publisher) flushLoop() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if !p.due || p.buf.len() == 0 {
			p.flushing = false
			p.mu.Unlock()
			return
		}
		taken := p.buf
		p.buf, p.spare = p.spare, batch{}
		p.lastLen = taken.len()
		publishResults["accepted"].Add(float64(taken.len()))
		p.bufBytes = 0
		p.writing = taken.len()
		p.due = false
		if p.timer != nil {
			p.timer.Stop()
		}
		if p.room != nil {
			close(p.room)
			p.room = nil
		}
		p.mu.Unlock()

		p.write(&taken)
		taken.reset()
		p.mu.Lock()
		p.writing = 0
		if cap(taken.records) > keptBatchRecords {
			p.mu.Unlock()
			largeBatches.Put(&taken)
			continue
		}
		p.spare = taken
		p.mu.Unlock()
	}
}

// newBatch returns an empty batch for a buffer that has none: a large one from largeBatches, or else one with
// room for as many records as the last flush took when that was more than a Publisher keeps. Growing it by
// appending would copy its records over and over while the reader waits. It is made when a publish comes, not
// when a flush ends, so that a socket gone quiet after a burst holds no large batch.
func (p *Publisher) newBatch() batch {
	if large, ok := largeBatches.Get().(*batch); ok {
		return *large
	}
	if p.lastLen > keptBatchRecords {
		return batch{records: make([]Record, 0, p.lastLen), pending: make([]pending, 0, p.lastLen)}
	}
	return batch{}
}

func (p *Publisher) write(b *batch) {
	records := b.records
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	start := time.Now()
	results := p.producer.Produce(ctx, records)
	cancel()
	metrics.flushRecords.Observe(float64(len(records)))
	metrics.produceSeconds.Observe(time.Since(start).Seconds())
	failed := 0
	for i, err := range results {
		if err != nil {
			failed++
		}
		if p.cfg.TopicLabels {
			metrics.topicPublishes.WithLabelValues(records[i].Topic, publishResult(err)).Inc()
		}
		if err != nil || b.pending[i].receipt {
			p.done(b.pending[i].req, &records[i], b.pending[i].receipt, err)
		}
	}
	// Counted once per flush: a shared counter touched per record costs every core a cache miss.
	publishResults["acknowledged"].Add(float64(len(results) - failed))
	publishResults["failed"].Add(float64(failed))
}

func publishResult(err error) string {
	if err != nil {
		return "failed"
	}
	return "acknowledged"
}

// Close flushes what is buffered and waits for it, at most until deadline; past it the flush is abandoned and its
// publishes are reported as failed. The Publisher must not be used afterwards.
func (p *Publisher) Close(deadline time.Duration) {
	p.mu.Lock()
	p.due = true
	p.startFlushLocked()
	p.mu.Unlock()

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(deadline):
		p.cancel()
		<-done
	}
	p.cancel()
	p.mu.Lock()
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
}
