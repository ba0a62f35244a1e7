package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// fetchQueueRecords bounds the records fetched but not yet batched, per subscription, as the limits'
// max_queue_bytes bounds their bytes. When the socket is slow the queue fills and the partition readers stop
// fetching.
const fetchQueueRecords = 256

// subscribeOptions are a subscription's settings: the route's, with what the subscribe request chose.
type subscribeOptions struct {
	topics       []string
	group        string
	broadcast    bool
	meta         bool
	assignments  bool // send the partitions read and their start offsets after the reply and each rebalance
	clientCommit bool
	startOffset  int64     // FirstOffset or LastOffset, for partitions the group has no offset for
	startTime    time.Time // when set, such partitions start at the first record at or after it instead
	seek         map[string]map[int32]int64
	limit        int
	interval     time.Duration
}

// Subscription is one consumer-group member feeding one session. Each generation (one assignment of partitions,
// until the next rebalance) runs a reader per assigned partition and one deliverer, which batches records into
// notification frames, hands them to the session's writer, and commits the offsets of the frames written (or,
// with client commits, of the notifications the client acknowledged).
type Subscription struct {
	session *Session
	opts    subscribeOptions
	req     requestRef
	payload []string // the success reply's p
	logger  *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	current atomic.Pointer[deliverer] // the running generation's deliverer, for acks
}

func newSubscription(s *Session, opts subscribeOptions, req requestRef, payload []string) *Subscription {
	ctx, cancel := context.WithCancel(s.ctx)
	return &Subscription{
		session: s,
		opts:    opts,
		req:     req,
		payload: payload,
		logger:  s.logger.With(zap.String("group", opts.group), zap.Strings("topics", opts.topics)),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
}

func (sub *Subscription) topics() []string { return sub.opts.topics }

func (sub *Subscription) start() { go sub.run() }

// stop ends the subscription and waits for it to leave its group, at most for timeout (the generation's last
// commit and the LeaveGroup each wait up to request_timeout for a coordinator that does not answer).
func (sub *Subscription) stop(timeout time.Duration) {
	sub.cancel()
	select {
	case <-sub.done:
	case <-time.After(timeout):
		sub.logger.Warn("consumer did not leave its group in time", zap.Duration("timeout", timeout))
	}
}

func (sub *Subscription) run() {
	defer close(sub.done)
	hub := sub.session.hub
	member := hub.kafka.JoinGroup(sub.opts.group, sub.opts.topics)
	defer func() {
		if err := member.Close(); err != nil {
			sub.logger.Debug("leaving consumer group", zap.Error(err))
		}
		sub.logger.Info("consumer stopped")
	}()

	// The subscribe request is answered once the first generation is running, or with an error if that takes
	// longer than request_timeout.
	joinCtx, joined := context.WithTimeout(sub.ctx, hub.cfg.RequestTimeout)
	defer joined()
	replied := false
	var lastErr error
	for {
		ctx := sub.ctx
		if !replied {
			ctx = joinCtx
		}
		gen, err := member.Next(ctx)
		if err != nil {
			if sub.ctx.Err() != nil {
				if !replied {
					sub.replyStopped()
				}
				return
			}
			if !replied && joinCtx.Err() != nil {
				if lastErr == nil {
					lastErr = err
				}
				sub.session.replyError(sub.req.request(), replyError("joining consumer group "+sub.opts.group, lastErr))
				return
			}
			lastErr = err
			sub.logger.Warn("consumer group error", zap.Error(err))
			continue
		}
		metrics.rebalances.Inc()
		offsets, err := sub.startOffsets(ctx, gen, !replied)
		if err != nil {
			// Leaving the generation makes the member rejoin; the next generation tries again.
			sub.logger.Warn("resolving start offsets", zap.Error(err))
			lastErr = err
			gen.Start(func(context.Context) {})
			continue
		}
		// The reply goes first, so that it reaches the client before any notification.
		if !replied {
			replied = true
			joined()
			sub.logger.Info("consumer ready")
			sub.session.reply(sub.req.request(), sub.payload)
		}
		if sub.opts.assignments {
			sub.session.sendAssigned(offsets)
		}
		sub.runGeneration(gen, offsets)
	}
}

// replyStopped answers a subscribe that was stopped before its group was joined.
func (sub *Subscription) replyStopped() {
	if sub.session.subscriptionsClosed() {
		sub.session.replyError(sub.req.request(), replyError("subscribing", ErrShuttingDown))
		return
	}
	sub.session.replyError(sub.req.request(), &protocol.Error{
		Code:    protocol.CodeCancelled,
		Message: "subscribe cancelled by a later subscribe or unsubscribe before the group was joined",
	})
}

// startOffsets turns the generation's committed offsets into absolute offsets: a partition the group has no offset
// for starts at the subscription's from (the consumer's from_offset by default), one whose offset no longer
// exists at out_of_range, and in the first generation a partition named in seek at the offset given. kafka-go
// would resolve "latest" lazily, when its reader first fetches (segmentio/kafka-go#1319), so a record written
// right after the subscribe reply could be skipped. Offsets resolved here are committed at once, so that a
// rebalance before the first delivery does not resolve "latest" again and skip what arrived in between.
func (sub *Subscription) startOffsets(ctx context.Context, gen Generation, first bool) (map[string]map[int]int64, error) {
	hub := sub.session.hub
	ctx, cancel := context.WithTimeout(ctx, hub.cfg.RequestTimeout)
	defer cancel()
	resolved := make(map[string]map[int]int64)
	toCommit := make(map[string]map[int]int64)
	for topic, parts := range gen.Assignments() {
		if len(parts) == 0 {
			continue
		}
		ids := make([]int, 0, len(parts))
		for p := range parts {
			ids = append(ids, p)
		}
		marks, err := hub.kafka.Watermarks(ctx, topic, ids)
		if err != nil {
			return nil, err
		}
		var atTime map[int]int64
		if !sub.opts.startTime.IsZero() {
			if atTime, err = hub.kafka.OffsetsAt(ctx, topic, ids, sub.opts.startTime); err != nil {
				return nil, err
			}
		}
		resolved[topic] = make(map[int]int64, len(parts))
		for p, committed := range parts {
			mark := marks[p]
			offset := committed
			seek, sought := sub.opts.seek[topic][int32(p)]
			switch {
			case first && sought:
				offset = min(max(seek, mark.Low), mark.High)
			case committed < 0 && atTime != nil:
				offset = atTime[p]
			case committed < 0:
				offset = pick(sub.opts.startOffset, mark)
			case committed < mark.Low || committed > mark.High:
				offset = pick(hub.cfg.Consumer.OutOfRangeOffset, mark)
			}
			resolved[topic][p] = offset
			if offset != committed {
				if toCommit[topic] == nil {
					toCommit[topic] = make(map[int]int64)
				}
				toCommit[topic][p] = offset
			}
		}
	}
	if err := gen.Commit(toCommit); err != nil {
		return nil, fmt.Errorf("committing start offsets: %w", err)
	}
	return resolved, nil
}

func pick(which int64, mark Watermark) int64 {
	if which == FirstOffset {
		return mark.Low
	}
	return mark.High
}

// runGeneration starts the generation's readers and its deliverer; they run until the generation ends.
func (sub *Subscription) runGeneration(gen Generation, offsets map[string]map[int]int64) {
	records := make(chan Record, fetchQueueRecords)
	fetched := &byteBudget{max: sub.session.hub.cfg.Limits.MaxQueueBytes}
	for topic, parts := range offsets {
		for partition, offset := range parts {
			gen.Start(func(ctx context.Context) { sub.readPartition(ctx, topic, partition, offset, records, fetched) })
		}
	}
	d := &deliverer{sub: sub, gen: gen, records: records, fetched: fetched, written: make(chan struct{}, 1)}
	sub.current.Store(d)
	gen.Start(d.run)
}

// readPartition feeds one partition's records to the deliverer until the generation ends. A reader error ends
// this function, and with it the generation: the member then rejoins and the next generation starts afresh from
// the committed offsets.
func (sub *Subscription) readPartition(ctx context.Context, topic string, partition int, offset int64, records chan<- Record, fetched *byteBudget) {
	hub := sub.session.hub
	for ctx.Err() == nil {
		reader := hub.kafka.ReadPartition(topic, partition, offset)
		err := feed(ctx, reader, records, fetched, &offset, hub.lagGauge(topic))
		reader.Close()
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, ErrOffsetOutOfRange) {
			sub.logger.Warn("reading partition", zap.String("topic", topic), zap.Int("partition", partition), zap.Error(err))
			return
		}
		marks, err := hub.kafka.Watermarks(ctx, topic, []int{partition})
		if err != nil {
			sub.logger.Warn("resolving out-of-range offset", zap.String("topic", topic), zap.Int("partition", partition), zap.Error(err))
			return
		}
		next := pick(hub.cfg.Consumer.OutOfRangeOffset, marks[partition])
		sub.logger.Warn("offset out of range, resetting", zap.String("topic", topic), zap.Int("partition", partition),
			zap.Int64("offset", offset), zap.Int64("reset_to", next))
		offset = next
	}
}

// feed passes what reader fetches to records until ctx ends or the reader fails, keeping offset at the next one
// and lag at what the reader is behind. With a budget, each record's bytes are taken from it first; the receiver
// gives them back.
func feed(ctx context.Context, reader PartitionReader, records chan<- Record, budget *byteBudget, offset *int64, lag *lagGauge) error {
	defer lag.set(0)
	for {
		rec, err := reader.Fetch(ctx)
		if err != nil {
			return err
		}
		lag.set(rec.HighWatermark - rec.Offset - 1)
		if budget != nil && !budget.take(ctx, nil, rec.Size()) {
			return ctx.Err()
		}
		select {
		case records <- rec:
			*offset = rec.Offset + 1
		case <-ctx.Done():
			if budget != nil {
				budget.give(rec.Size())
			}
			return ctx.Err()
		}
	}
}

// deliverer batches one generation's records into notification frames and commits what the socket took (or,
// with client commits, what the client acknowledged).
type deliverer struct {
	sub     *Subscription
	gen     Generation
	records <-chan Record
	fetched *byteBudget // bytes of records fetched and not yet encoded

	batch      []Record
	batchBytes int64

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

func (d *deliverer) run(ctx context.Context) {
	opts := d.sub.opts
	commitInterval := d.sub.session.hub.cfg.Consumer.CommitInterval
	var flushTimer, commitTimer *time.Timer
	var flushC, commitC <-chan time.Time
	defer func() {
		if flushTimer != nil {
			flushTimer.Stop()
		}
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
		records, limit := d.records, opts.limit
		if opts.clientCommit {
			room := d.sub.session.hub.cfg.Consumer.MaxUnacked - int(d.outstanding.Load()) - len(d.batch)
			limit = min(limit, len(d.batch)+max(room, 0))
			if room <= 0 {
				records = nil
			}
		}
		select {
		case rec := <-records:
			before := len(d.batch)
			d.batch = append(d.batch, rec)
			if opts.interval == 0 {
				d.batch = drainReady(d.records, d.batch, limit)
			}
			for i := before; i < len(d.batch); i++ {
				d.batchBytes += d.batch[i].Size()
			}
			switch {
			// A frame is cut at half the queue's bytes, so that it fits the socket's queue beside others.
			case opts.interval == 0 || len(d.batch) >= limit || d.batchBytes >= d.fetched.max/2:
				if !d.deliver(ctx) {
					return
				}
			case before == 0:
				if flushTimer == nil {
					flushTimer = time.NewTimer(opts.interval)
				} else {
					flushTimer.Reset(opts.interval)
				}
				flushC = flushTimer.C
			}
		case <-flushC:
			flushC = nil
			if !d.deliver(ctx) {
				return
			}
		case <-d.written:
			if commitInterval == 0 {
				d.commit()
			} else if commitC == nil {
				if commitTimer == nil {
					commitTimer = time.NewTimer(commitInterval)
				} else {
					commitTimer.Reset(commitInterval)
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

// drainReady adds to batch the records already waiting, without waiting for more: with mq_interval 0 each record
// goes out at once, and those that arrived together share a frame.
func drainReady(records <-chan Record, batch []Record, limit int) []Record {
	for len(batch) < limit {
		select {
		case rec := <-records:
			batch = append(batch, rec)
		default:
			return batch
		}
	}
	return batch
}

// deliver hands the batch to the session's writer as one frame; it reports false when the generation or the
// session ended first (the batch is then dropped uncommitted, to be delivered again by the partitions' next owner).
func (d *deliverer) deliver(ctx context.Context) bool {
	if len(d.batch) == 0 {
		return true
	}
	first := reserveFrameIDs(len(d.batch))
	notes := make([]protocol.Notification, len(d.batch))
	var sent []delivered
	if d.sub.opts.clientCommit {
		sent = make([]delivered, len(d.batch))
	}
	next := make(map[string]map[int]int64, 1)
	for i := range d.batch {
		rec := &d.batch[i]
		notes[i] = notification(first+uint64(i), rec, d.sub.opts.meta)
		if sent != nil {
			sent[i] = delivered{id: first + uint64(i), topic: rec.Topic, partition: rec.Partition, offset: rec.Offset}
		}
		if next[rec.Topic] == nil {
			next[rec.Topic] = make(map[int]int64)
		}
		next[rec.Topic][rec.Partition] = rec.Offset + 1
	}
	frame := protocol.AppendNotifications(nil, notes)
	count := d.sub.session.hub.countDelivered(d.batch)
	d.batch = d.batch[:0]
	d.fetched.give(d.batchBytes)
	d.batchBytes = 0
	written := func() { d.markWritten(next); count() }
	if sent != nil {
		// Awaiting acknowledgement from now, not from when the writer is done: the client may acknowledge the
		// moment it reads the frame, before the writer goroutine has moved on.
		d.mu.Lock()
		d.unacked = append(d.unacked, sent...)
		d.mu.Unlock()
		d.outstanding.Add(int64(len(sent)))
		written = func() { d.frameWritten(); count() }
	}
	d.inflight.Add(1)
	if !d.sub.session.sendCtx(ctx, outFrame{data: frame, size: int64(len(frame)), written: written}) {
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
	s := d.sub.session
	deadline := time.NewTimer(s.hub.cfg.CloseTimeout)
	defer deadline.Stop()
	for d.inflight.Load() > 0 {
		select {
		case <-d.written:
		case <-s.dataEnd:
			return
		case <-deadline.C:
			return
		}
	}
}

// markWritten runs on the writer goroutine once a frame is on the socket; it must not block.
func (d *deliverer) markWritten(next map[string]map[int]int64) {
	d.mu.Lock()
	d.mergeLocked(next)
	d.mu.Unlock()
	d.inflight.Add(-1)
	d.signal()
}

// frameWritten runs on the writer goroutine once a client-commit frame is on the socket.
func (d *deliverer) frameWritten() {
	d.inflight.Add(-1)
	d.signal()
}

func (d *deliverer) mergeLocked(next map[string]map[int]int64) {
	if d.committed == nil {
		d.committed = make(map[string]map[int]int64, len(next))
	}
	for topic, parts := range next {
		if d.committed[topic] == nil {
			d.committed[topic] = make(map[int]int64, len(parts))
		}
		for p, off := range parts {
			d.committed[topic][p] = max(d.committed[topic][p], off)
		}
	}
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
	next := make(map[string]map[int]int64)
	acked := func(n delivered) bool {
		var hit bool
		if target.ByID {
			hit = n.id <= target.ID
		} else {
			hit = n.topic == target.Topic && n.partition == int(target.Partition) && n.offset <= target.Offset
		}
		if hit {
			if next[n.topic] == nil {
				next[n.topic] = make(map[int]int64)
			}
			next[n.topic][n.partition] = max(next[n.topic][n.partition], n.offset+1)
		}
		return hit
	}
	before := len(d.unacked)
	d.unacked = slices.DeleteFunc(d.unacked, acked)
	count := before - len(d.unacked)
	d.mergeLocked(next)
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
		d.sub.logger.Warn("committing offsets", zap.Error(err))
	}
}

// ack passes a client's acknowledgement to the running generation. Notifications of an earlier generation can no
// longer be committed by this member (their partitions' owner delivers them again), so acknowledging them does
// nothing.
func (sub *Subscription) ack(target protocol.AckTarget) {
	if d := sub.current.Load(); d != nil {
		d.ack(target)
	}
}
