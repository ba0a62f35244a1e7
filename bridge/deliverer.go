package bridge

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// deliverySettings are what a deliverer works by: the subscription's batching and commit mode, and the route's
// commit interval, acknowledgement bound and close timeout.
type deliverySettings struct {
	limit          int           // mq_limit: the most notifications in one frame
	interval       time.Duration // mq_interval: how long a frame waits for more after its first notification
	meta           bool          // delivery metadata in each notification
	clientCommit   bool          // commit what the client acknowledged, not what was written
	maxUnacked     int           // with client commits, the most notifications written and not acknowledged
	commitInterval time.Duration // how often offsets are committed; 0 at once
	closeTimeout   time.Duration // how long the last commit waits for frames the writer still holds
	topicLabels    bool          // count deliveries by topic too

	namespace protocol.Namespace // the socket's: metadata names its topics without the prefix
}

// frameSink is where a deliverer's frames go: the session's writer queue.
type frameSink interface {
	// sendCtx queues f, waiting for room until ctx ends or the socket takes no more data; it reports whether f
	// was queued. Once queued, f.written runs on the writer when f is on the socket.
	sendCtx(ctx context.Context, f outFrame) bool
	// dataEnded is closed once the socket takes no more data frames.
	dataEnded() <-chan struct{}
}

// deliverer batches one generation's records into notification frames and commits what the socket took (or,
// with client commits, what the client acknowledged).
type deliverer struct {
	settings deliverySettings
	gen      Generation
	records  <-chan Record
	fetched  *byteBudget // bytes of records fetched and not yet encoded
	sink     frameSink
	logger   *zap.Logger

	batch batcher

	inflight atomic.Int64 // frames handed to the writer and not yet written
	// outstanding counts, with client commits, the notifications handed to the writer and not yet acknowledged.
	outstanding atomic.Int64

	mu        sync.Mutex
	committed map[string]map[int]int64 // next offsets to commit: written, or acknowledged
	unacked   []delivered              // client commits: handed to the writer, not yet acknowledged, in order
	written   chan struct{}            // signalled (never blocking) when a frame is written or an ack arrives
}

// delivered is one notification sent to the client and awaiting its acknowledgement.
type delivered struct {
	id        uint64
	topic     string
	partition int
	offset    int64
}

func newDeliverer(settings deliverySettings, gen Generation, records <-chan Record, fetched *byteBudget, sink frameSink, logger *zap.Logger) *deliverer {
	return &deliverer{
		settings: settings, gen: gen, records: records, fetched: fetched, sink: sink, logger: logger,
		// A frame is cut at half the queue's bytes, so that it fits the socket's queue beside others.
		batch:   batcher{limit: settings.limit, interval: settings.interval, maxBytes: fetched.max / 2},
		written: make(chan struct{}, 1),
	}
}

// run delivers until the generation ends (ctx), or the socket takes no more; it then commits what was written
// or acknowledged.
func (d *deliverer) run(ctx context.Context) {
	var commitTimer *time.Timer
	var commitC <-chan time.Time
	defer func() {
		d.batch.stop()
		if commitTimer != nil {
			commitTimer.Stop()
		}
		// The generation is ending but is not over until this returns: a last commit is still valid. Frames the
		// writer holds may already be on their way to the client (which may have seen them and unsubscribed), so
		// the commit waits for them.
		d.awaitInflight()
		d.commit()
	}()
	for {
		// A client-commit subscription takes no more records than max_unacked leaves room for, and none at the
		// bound, until acknowledgements arrive.
		records, limit := d.records, d.settings.limit
		if d.settings.clientCommit {
			room := d.settings.maxUnacked - int(d.outstanding.Load()) - d.batch.len()
			limit = min(limit, d.batch.len()+max(room, 0))
			if room <= 0 {
				records = nil
			}
		}
		select {
		case rec := <-records:
			if d.batch.add(rec, d.records, limit) && !d.deliver(ctx) {
				return
			}
		case <-d.batch.due:
			if !d.deliver(ctx) {
				return
			}
		case <-d.written:
			if d.settings.commitInterval == 0 {
				d.commit()
			} else if commitC == nil {
				if commitTimer == nil {
					commitTimer = time.NewTimer(d.settings.commitInterval)
				} else {
					commitTimer.Reset(d.settings.commitInterval)
				}
				commitC = commitTimer.C
			}
		case <-commitC:
			commitC = nil
			d.commit()
		case <-ctx.Done():
			return
		}
	}
}

// deliver hands the batch to the session's writer as one frame; it reports false when the generation or the
// session ended first (the batch is then dropped uncommitted, to be delivered again by the partitions' next owner).
func (d *deliverer) deliver(ctx context.Context) bool {
	batch, bytes := d.batch.take()
	if len(batch) == 0 {
		return true
	}
	frame, first := encodeNotifications(batch, d.settings.meta, d.settings.namespace)
	var sent []delivered
	var next []partitionOffset // commits auto: each partition's next offset once the frame is written
	if d.settings.clientCommit {
		sent = make([]delivered, len(batch))
		for i := range batch {
			rec := &batch[i]
			sent[i] = delivered{id: first + uint64(i), topic: rec.Topic, partition: rec.Partition, offset: rec.Offset}
		}
	} else {
		// One entry per run of a partition's records, not a map per frame: a partition whose runs interleave
		// with another's gets an entry per run, and the merge keeps the highest.
		for i := range batch {
			rec := &batch[i]
			if n := len(next); n > 0 && next[n-1].topic == rec.Topic && next[n-1].partition == rec.Partition {
				next[n-1].offset = rec.Offset + 1
			} else {
				next = append(next, partitionOffset{topic: rec.Topic, partition: rec.Partition, offset: rec.Offset + 1})
			}
		}
	}
	count := countDelivered(batch, d.settings.topicLabels)
	d.fetched.give(bytes)
	written := func() { d.markWritten(next); count() }
	if sent != nil {
		// Awaiting acknowledgement from now, not from when the writer is done: the client may acknowledge the
		// moment it reads the frame, before whoever wrote it has moved on.
		d.mu.Lock()
		d.unacked = append(d.unacked, sent...)
		d.mu.Unlock()
		d.outstanding.Add(int64(len(sent)))
		written = func() { d.frameWritten(); count() }
	}
	d.inflight.Add(1)
	if !d.sink.sendCtx(ctx, outFrame{data: frame, size: int64(len(frame)), written: written}) {
		d.inflight.Add(-1)
		if sent != nil {
			// Never written, so never acknowledged: they go back to the partitions' next owner.
			d.mu.Lock()
			d.unacked = slices.DeleteFunc(d.unacked, func(n delivered) bool { return n.id >= sent[0].id })
			d.mu.Unlock()
			d.outstanding.Add(-int64(len(sent)))
		}
		return false
	}
	return true
}

// awaitInflight waits until the writer has written every frame handed to it, or cannot write any more, at most
// for close_timeout.
func (d *deliverer) awaitInflight() {
	deadline := time.NewTimer(d.settings.closeTimeout)
	defer deadline.Stop()
	for d.inflight.Load() > 0 {
		select {
		case <-d.written:
		case <-d.sink.dataEnded():
			return
		case <-deadline.C:
			return
		}
	}
}

// partitionOffset is the next offset of a partition to commit.
type partitionOffset struct {
	topic     string
	partition int
	offset    int64
}

// markWritten runs once a frame is on the socket, on whichever goroutine wrote it (the session's writer, or this
// deliverer inside sendCtx when the socket was idle: see writeThrough); it must not block.
func (d *deliverer) markWritten(next []partitionOffset) {
	d.mu.Lock()
	for _, n := range next {
		d.committableLocked(n.topic, n.partition, n.offset)
	}
	d.mu.Unlock()
	d.inflight.Add(-1)
	d.signal()
}

// frameWritten runs once a client-commit frame is on the socket, on whichever goroutine wrote it (as markWritten).
func (d *deliverer) frameWritten() {
	d.inflight.Add(-1)
	d.signal()
}

// committableLocked makes offset the next to commit of a partition, unless a higher one already is.
func (d *deliverer) committableLocked(topic string, partition int, offset int64) {
	if d.committed == nil {
		d.committed = make(map[string]map[int]int64, 1)
	}
	parts := d.committed[topic]
	if parts == nil {
		parts = make(map[int]int64, 1)
		d.committed[topic] = parts
	}
	parts[partition] = max(parts[partition], offset)
}

func (d *deliverer) signal() {
	select {
	case d.written <- struct{}{}:
	default:
	}
}

// ack acknowledges delivered notifications: every one up to and including the notification id, or every one of
// a partition up to and including an offset. Offsets in a partition are delivered in order, so what remains
// unacknowledged of a partition always starts after what was acknowledged, and committing the next offset after
// the last acknowledged one never skips a notification.
func (d *deliverer) ack(target protocol.AckTarget) {
	d.mu.Lock()
	acked := func(n delivered) bool {
		var hit bool
		if target.ByID {
			hit = n.id <= target.ID
		} else {
			hit = n.topic == target.Topic && n.partition == int(target.Partition) && n.offset <= target.Offset
		}
		if hit {
			d.committableLocked(n.topic, n.partition, n.offset+1)
		}
		return hit
	}
	before := len(d.unacked)
	d.unacked = slices.DeleteFunc(d.unacked, acked)
	count := before - len(d.unacked)
	d.mu.Unlock()
	if count > 0 {
		d.outstanding.Add(-int64(count))
		d.signal()
	}
}

func (d *deliverer) commit() {
	d.mu.Lock()
	offsets := d.committed
	d.committed = nil
	d.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	if err := d.gen.Commit(offsets); err != nil {
		// Not fatal: the records stay uncommitted and the partitions' next owner delivers them again.
		d.logger.Warn("committing offsets", zap.Error(err))
	}
}
