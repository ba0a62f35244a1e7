package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

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
// until the next rebalance) runs one reader of every assigned partition and one deliverer, which batches records into
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
		logger:  s.logger().With(zap.String("group", opts.group), zap.Strings("topics", opts.topics)),
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

// runGeneration starts the generation's reader (of every partition assigned) and its deliverer; they run until
// the generation ends. A reader that fails ends the generation: the member then rejoins and the next generation starts afresh from the
// committed offsets.
func (sub *Subscription) runGeneration(gen Generation, offsets map[string]map[int]int64) {
	hub := sub.session.hub
	records := make(chan Record, fetchQueueRecords)
	fetched := &byteBudget{max: hub.cfg.Limits.MaxQueueBytes}
	r := &partitionReader{
		kafka: hub.kafka, records: records, budget: fetched, lag: hub.lagGauge,
		outOfRange: hub.cfg.Consumer.OutOfRangeOffset, logger: sub.logger,
	}
	gen.Start(func(ctx context.Context) { r.run(ctx, offsets) })
	d := newDeliverer(sub.deliverySettings(), gen, records, fetched, sub.session, sub.logger)
	sub.current.Store(d)
	gen.Start(d.run)
}

// deliverySettings are the subscription's and the route's settings its deliverers work by.
func (sub *Subscription) deliverySettings() deliverySettings {
	cfg := sub.session.hub.cfg
	return deliverySettings{
		limit: sub.opts.limit, interval: sub.opts.interval, meta: sub.opts.meta,
		clientCommit: sub.opts.clientCommit, maxUnacked: cfg.Consumer.MaxUnacked,
		commitInterval: cfg.Consumer.CommitInterval, closeTimeout: cfg.CloseTimeout, topicLabels: cfg.TopicLabels,
		namespace: sub.session.namespace(),
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
