package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// recordOverhead is a generous bound on what Kafka's record framing adds to a record's key and value; a publish
// is refused early when it would not fit in max_message_bytes with it.
const recordOverhead = 64

// pending is one publish waiting in a Publisher's buffer, with what its reply needs.
type pending struct {
	record  Record
	req     requestRef
	receipt bool
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
	buf      []pending
	bufBytes int64
	due      bool          // the buffer should be flushed as soon as possible
	flushing bool          // a flush goroutine is running
	timer    *time.Timer   // created on the first publish with mq_interval > 0
	room     chan struct{} // closed when a flush empties the buffer; made by an Add that found it full
}

func newPublisher(producer Producer, cfg ProducerConfig, timeout time.Duration, done func(requestRef, *Record, bool, error)) *Publisher {
	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{producer: producer, cfg: cfg, timeout: timeout, done: done, ctx: ctx, cancel: cancel}
}

// Add buffers one publish. It blocks while the buffer is full, until a flush takes it or ctx ends.
func (p *Publisher) Add(ctx context.Context, rec Record, req requestRef, receipt bool) error {
	size := len(rec.Key) + len(rec.Value) + recordOverhead
	for _, h := range rec.Headers {
		size += len(h.Key) + len(h.Value)
	}
	if size > p.cfg.MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes, more than max_message_bytes %d", ErrMessageTooLarge, size-recordOverhead, p.cfg.MaxMessageBytes)
	}
	p.mu.Lock()
	for len(p.buf) >= p.cfg.MQLimit || len(p.buf) > 0 && p.bufBytes+int64(size) > p.cfg.MaxBufferBytes {
		if p.room == nil {
			p.room = make(chan struct{})
		}
		room := p.room
		p.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	p.buf = append(p.buf, pending{record: rec, req: req, receipt: receipt})
	p.bufBytes += int64(size)
	switch {
	case p.cfg.MQInterval == 0 || len(p.buf) >= p.cfg.MQLimit || p.bufBytes >= p.cfg.MaxBufferBytes:
		p.due = true
		p.startFlushLocked()
	case len(p.buf) == 1 && p.timer == nil:
		p.timer = time.AfterFunc(p.cfg.MQInterval, p.intervalElapsed)
	case len(p.buf) == 1:
		p.timer.Reset(p.cfg.MQInterval)
	}
	return nil
}

func (p *Publisher) intervalElapsed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.due = true
	p.startFlushLocked()
}

func (p *Publisher) startFlushLocked() {
	if p.flushing || len(p.buf) == 0 {
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
		if !p.due || len(p.buf) == 0 {
			p.flushing = false
			p.mu.Unlock()
			return
		}
		batch := p.buf
		p.buf = make([]pending, 0, min(len(batch), p.cfg.MQLimit))
		p.bufBytes = 0
		p.due = false
		if p.timer != nil {
			p.timer.Stop()
		}
		if p.room != nil {
			close(p.room)
			p.room = nil
		}
		p.mu.Unlock()

		p.write(batch)
	}
}

func (p *Publisher) write(batch []pending) {
	records := make([]Record, len(batch))
	for i := range batch {
		records[i] = batch[i].record
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	start := time.Now()
	results := p.producer.Produce(ctx, records)
	cancel()
	metrics.flushRecords.Observe(float64(len(records)))
	metrics.produceSeconds.Observe(time.Since(start).Seconds())
	for i, err := range results {
		result := "acknowledged"
		if err != nil {
			result = "failed"
		}
		countPublish(p.cfg.TopicLabels, records[i].Topic, result)
		if err != nil || batch[i].receipt {
			p.done(batch[i].req, &records[i], batch[i].receipt, err)
		}
	}
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
