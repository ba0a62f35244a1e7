package bridge

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// handle answers one frame: a request, or a JSON array of requests handled in order, each as if sent alone.
func (s *Session) handle(frame []byte) {
	s.decoder.DecodeFrame(frame, s.dispatch)
}

func (s *Session) do(req *protocol.Request) {
	if max := s.hub.cfg.Limits.MaxTopics; max > 0 && len(req.Topics) > max {
		s.replyError(req, &protocol.Error{
			Code:    protocol.CodeInvalidPayload,
			Message: fmt.Sprintf("the request names %d topics; this route allows at most %d per request", len(req.Topics), max),
		})
		return
	}
	switch req.Op {
	case protocol.OpPublish:
		s.publish(req)
	case protocol.OpCreateTopics:
		s.createTopics(req)
	case protocol.OpListTopics:
		s.listTopics(req)
	case protocol.OpDescribeTopics:
		s.describeTopics(req)
	case protocol.OpDeleteTopics:
		s.deleteTopics(req)
	case protocol.OpSubscribe:
		s.subscribe(req)
	case protocol.OpUnsubscribe:
		s.unsubscribe(req)
	case protocol.OpAck:
		s.ack(req)
	case protocol.OpPing:
		s.reply(req, nil)
	case protocol.OpHealth:
		health := s.hub.health(s)
		if req.Kafka {
			ctx, cancel := s.kafkaCtx()
			health.Kafka = &protocol.KafkaHealth{Reachable: true}
			if err := s.hub.kafka.Ping(ctx); err != nil {
				health.Kafka = &protocol.KafkaHealth{Error: replyError("asking Kafka for metadata", err).Message}
			}
			cancel()
		}
		s.reply(req, health)
	}
}

// forbid answers a request naming topics (or groups) the client's access does not allow, and reports whether
// it did; nothing reaches Kafka then.
func (s *Session) forbid(req *protocol.Request, what string, patterns func(*Access) []string, names ...string) bool {
	denied := s.client.Access.denied(patterns, s.visibleNames(names))
	if len(denied) == 0 {
		return false
	}
	s.replyError(req, &protocol.Error{
		Code:    protocol.CodeForbidden,
		Message: fmt.Sprintf("not allowed to %s %s", what, strings.Join(denied, ", ")),
	})
	return true
}

// forbidGroup is forbid for the consumer group a request names. The route's default group is the operator's
// choice, allowed to every client of the route.
func (s *Session) forbidGroup(req *protocol.Request, what string) bool {
	if req.Group == "" || s.visible(req.Group) == s.hub.cfg.Consumer.GroupID {
		return false
	}
	return s.forbid(req, what, groupPatterns, req.Group)
}

func (s *Session) publish(req *protocol.Request) {
	p := &req.Publish
	topicLabels := s.hub.cfg.TopicLabels
	if s.forbid(req, "publish to", publishPatterns, p.Topic) {
		countPublish(topicLabels, p.Topic, "forbidden")
		return
	}
	if l := s.hub.cfg.Limits; l.PublishRate > 0 || l.PublishBytesRate > 0 {
		if s.limiter == nil {
			s.limiter = newPublishLimiter(l, s.hub.cfg.Producer.MaxMessageBytes)
		}
		if !s.limiter.allow(time.Now(), len(p.Key)+len(p.Value)) {
			countPublish(topicLabels, p.Topic, "rate_limited")
			s.replyError(req, &protocol.Error{
				Code:    protocol.CodeRateLimited,
				Message: fmt.Sprintf("publishing faster than this route allows (%g messages, %d bytes per second); the message was not sent", l.PublishRate, l.PublishBytesRate),
			})
			return
		}
	}
	rec := Record{Topic: p.Topic, Partition: int(p.Partition), Key: p.Key, Value: p.Value}
	if p.Time >= 0 {
		rec.Time = time.UnixMilli(p.Time)
	}
	for _, h := range p.Headers {
		rec.Headers = append(rec.Headers, Header{Key: h.Key, Value: h.Value})
	}
	receipt := req.Ack || s.hub.cfg.Producer.Receipts
	// Not the session's context: a publish read from the socket is published even when the session is closing.
	// Add waits only for a flush to make room (each bounded by request_timeout), or for the Publisher's close.
	if err := s.publisher.Add(context.Background(), rec, refOf(req), receipt); err != nil {
		countPublish(topicLabels, p.Topic, "failed")
		s.publishFailed(refOf(req), rec.Topic, err)
		return
	}
	// The count without a topic is the Publisher's, once per flush: a shared counter touched per publish costs
	// every core a cache miss.
	if topicLabels {
		metrics.topicPublishes.WithLabelValues(p.Topic, "accepted").Inc()
	}
}

// published answers one flushed publish: an error reply when Kafka did not take it, a receipt when one was asked.
func (s *Session) published(ref requestRef, rec *Record, receipt bool, err error) {
	if err != nil {
		s.publishFailed(ref, rec.Topic, err)
		return
	}
	if receipt {
		s.reply(ref.request(), protocol.Receipt{
			Topic: rec.Topic, Partition: int32(rec.Partition), Offset: rec.Offset, Time: rec.Time.UnixMilli(),
		})
	}
}

// publishFailed answers a publish that did not reach Kafka, or logs it when the socket can take no answer (the
// close frame is out): a lost publish is never silent.
func (s *Session) publishFailed(ref requestRef, topic string, err error) {
	if s.send(dataFrame(protocol.ErrorReply(s.nextFrameID(), ref.request(), s.visibleError(replyError("publishing to "+topic, err))))) {
		s.debug("publish failed", zap.String("topic", topic), zap.Error(err))
		return
	}
	s.logger().Warn("publish failed after the socket closed; the client was not told", zap.String("topic", topic), zap.Error(err))
}

// kafkaCtx bounds one request's work against Kafka.
func (s *Session) kafkaCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.hub.cfg.RequestTimeout)
}

func (s *Session) createTopics(req *protocol.Request) {
	if s.forbid(req, "create", createPatterns, req.Topics...) {
		return
	}
	ctx, cancel := s.kafkaCtx()
	defer cancel()
	specs := make([]TopicSpec, len(req.Create))
	for i, c := range req.Create {
		specs[i] = TopicSpec{Name: c.Name, Partitions: c.Partitions, Replication: c.Replication, Configs: c.Configs}
	}
	failed, err := s.hub.kafka.CreateTopics(ctx, specs)
	if err != nil {
		s.replyError(req, replyError("creating topics", err))
		return
	}
	s.replyPerTopic(req, "creating", req.Topics, failed, req.Detailed)
}

// replyPerTopic answers a request on several topics. The seed's form lists the names on success and fails as a
// whole; the detailed form (asked for by a create with topic objects) lists each topic's outcome.
func (s *Session) replyPerTopic(req *protocol.Request, verb string, names []string, failed map[string]error, detailed bool) {
	if !detailed {
		if len(failed) == 0 {
			s.reply(req, names)
			return
		}
		var bad []string
		var first error
		for _, name := range names {
			if err, ok := failed[name]; ok {
				bad = append(bad, name)
				first = cmp.Or(first, err)
			}
		}
		s.replyError(req, replyError(verb+" topics "+strings.Join(bad, ", "), first))
		return
	}
	results := make([]protocol.TopicResult, len(names))
	var first *protocol.Error
	for i, name := range names {
		results[i] = protocol.TopicResult{Name: name}
		if err, ok := failed[name]; ok {
			perr := replyError(verb+" topic "+name, err)
			results[i].S = 1
			results[i].Error = &protocol.ErrorPayload{Code: perr.Code, Message: perr.Message}
			if first == nil {
				first = perr
			}
		}
	}
	if first == nil {
		s.reply(req, results)
		return
	}
	s.send(dataFrame(protocol.ErrorReplyWith(s.nextFrameID(), req, s.visibleError(first), map[string]any{"topics": s.visiblePayload(results)})))
}

func (s *Session) deleteTopics(req *protocol.Request) {
	if !s.hub.cfg.AllowDelete {
		s.replyError(req, &protocol.Error{
			Code:    protocol.CodeForbidden,
			Message: "topic/delete is disabled on this route (enable it with topics { allow_delete })",
		})
		return
	}
	if s.forbid(req, "delete", deletePatterns, req.Topics...) {
		return
	}
	ctx, cancel := s.kafkaCtx()
	defer cancel()
	failed, err := s.hub.kafka.DeleteTopics(ctx, req.Topics)
	if err != nil {
		s.replyError(req, replyError("deleting topics", err))
		return
	}
	s.replyPerTopic(req, "deleting", req.Topics, failed, false)
}

func (s *Session) listTopics(req *protocol.Request) {
	ctx, cancel := s.kafkaCtx()
	defer cancel()
	topics, err := s.hub.kafka.Topics(ctx, nil)
	if err != nil {
		s.replyError(req, replyError("listing topics", err))
		return
	}
	names := make([]string, 0, len(topics))
	for name := range topics {
		// list shows only what the client may see.
		if a := s.client.Access; s.inNamespace(name) && (a == nil || allows(a.List, s.visible(name))) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	list := make([]protocol.TopicPartition, 0, len(names))
	for _, name := range names {
		for _, p := range topics[name] {
			list = append(list, protocol.TopicPartition{Topic: name, Partition: p.ID})
		}
	}
	s.reply(req, list)
}

// describeTopics answers partitions with their leader and watermarks, and for a named group its committed
// offsets and lag.
func (s *Session) describeTopics(req *protocol.Request) {
	if s.forbid(req, "describe", describePatterns, req.Topics...) {
		return
	}
	if s.forbidGroup(req, "read the offsets of group") {
		return
	}
	ctx, cancel := s.kafkaCtx()
	defer cancel()
	topics, err := s.hub.kafka.Topics(ctx, req.Topics)
	if err != nil {
		s.replyError(req, replyError("describing topics", err))
		return
	}
	if missing := absent(req.Topics, topics); len(missing) > 0 {
		s.replyError(req, &protocol.Error{Code: protocol.CodeUnknownTopic, Message: "no such topic: " + strings.Join(missing, ", ")})
		return
	}
	out := make([]protocol.TopicDescription, 0, len(req.Topics))
	for _, name := range req.Topics {
		parts := topics[name]
		ids := make([]int, len(parts))
		for i, p := range parts {
			ids[i] = p.ID
		}
		marks, err := s.hub.kafka.Watermarks(ctx, name, ids)
		if err != nil {
			s.replyError(req, replyError("describing "+name, err))
			return
		}
		var committed map[int]int64
		if req.Group != "" {
			if committed, err = s.hub.kafka.GroupOffsets(ctx, req.Group, name, ids); err != nil {
				s.replyError(req, replyError("reading offsets of group "+req.Group, err))
				return
			}
		}
		desc := protocol.TopicDescription{Topic: name, Partitions: make([]protocol.PartitionDescription, len(parts))}
		for i, p := range parts {
			d := protocol.PartitionDescription{
				Partition: int32(p.ID), Leader: int32(p.Leader), Low: marks[p.ID].Low, High: marks[p.ID].High,
			}
			if off, ok := committed[p.ID]; ok {
				lag := max(marks[p.ID].High-off, 0)
				d.Committed, d.Lag = &off, &lag
			}
			desc.Partitions[i] = d
		}
		out = append(out, desc)
	}
	s.reply(req, out)
}

// absent lists the names not in found, in order.
func absent[V any](names []string, found map[string]V) []string {
	var missing []string
	for _, n := range names {
		if _, ok := found[n]; !ok {
			missing = append(missing, n)
		}
	}
	return missing
}

// subscribe replaces the session's subscription. Topics are checked first: with kafka-go, one missing topic
// empties the member's whole assignment (segmentio/kafka-go#1314). A group subscription answers once it has
// joined its group and fixed its start offsets; a broadcast one once its streams are positioned.
func (s *Session) subscribe(req *protocol.Request) {
	if s.forbid(req, "subscribe to", subscribePatterns, req.Topics...) {
		return
	}
	if s.forbidGroup(req, "join consumer group") {
		return
	}
	if s.subscriptionsClosed() {
		s.replyError(req, replyError("subscribing", ErrShuttingDown))
		return
	}
	s.stopSubscription()
	ctx, cancel := s.kafkaCtx()
	defer cancel()
	missing, err := s.hub.topics.missing(ctx, req.Topics)
	if err != nil {
		s.replyError(req, replyError("subscribing", err))
		return
	}
	if len(missing) > 0 {
		s.replyError(req, &protocol.Error{
			Code:    protocol.CodeUnknownTopic,
			Message: "cannot subscribe: no such topic: " + strings.Join(missing, ", "),
		})
		return
	}
	opts := s.subscribeOptions(req)
	if opts.broadcast {
		s.subscribeBroadcast(ctx, req, opts)
		return
	}
	s.startGroup(opts, refOf(req), req.Topics)
}

// subscribeOptions turns a subscribe request into the options of a subscription, capping the client's batching
// by the route's.
func (s *Session) subscribeOptions(req *protocol.Request) subscribeOptions {
	cfg := s.hub.cfg.Consumer
	sub := &req.Subscribe
	opts := subscribeOptions{
		topics:       req.Topics,
		group:        cmp.Or(req.Group, s.defaultGroup()),
		broadcast:    sub.Broadcast,
		meta:         sub.Meta,
		assignments:  sub.Assignments,
		clientCommit: sub.ClientCommit,
		seek:         sub.Seek,
		startOffset:  cfg.StartOffset,
		limit:        cfg.MQLimit,
		interval:     cfg.MQInterval,
	}
	if opts.broadcast {
		// A broadcast delivers from now unless the client says otherwise; from_offset is about groups.
		opts.startOffset = LastOffset
	}
	switch sub.From.Kind {
	case protocol.FromEarliest:
		opts.startOffset = FirstOffset
	case protocol.FromLatest:
		opts.startOffset = LastOffset
	case protocol.FromTime:
		opts.startTime = time.UnixMilli(sub.From.Time)
	}
	if sub.MQLimit > 0 {
		opts.limit = min(sub.MQLimit, cfg.MQLimit)
	}
	if sub.MQInterval >= 0 {
		opts.interval = min(time.Duration(sub.MQInterval)*time.Millisecond, cfg.MQInterval)
	}
	return opts
}

// startGroup starts a group subscription; it answers ref with payload once joined.
func (s *Session) startGroup(opts subscribeOptions, ref requestRef, payload []string) {
	sub := newSubscription(s, opts, ref, payload)
	if !s.setSubscription(sub) {
		s.replyError(ref.request(), replyError("subscribing", ErrShuttingDown))
		return
	}
	sub.start()
}

func (s *Session) subscribeBroadcast(ctx context.Context, req *protocol.Request, opts subscribeOptions) {
	sub, err := newBroadcastSubscription(ctx, s, opts)
	if err != nil {
		s.replyError(req, replyError("subscribing", err))
		return
	}
	if !s.setSubscription(sub) {
		sub.stop(0)
		s.replyError(req, replyError("subscribing", ErrShuttingDown))
		return
	}
	s.reply(req, req.Topics)
	sub.release()
}

// setSubscription makes sub the session's subscription, unless the session is closing.
func (s *Session) setSubscription(sub subscription) bool {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subClosed {
		return false
	}
	s.sub = sub
	return true
}

// subscriptionsClosed reports whether the session takes no more subscriptions: it is closing.
func (s *Session) subscriptionsClosed() bool {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	return s.subClosed || s.ctx.Err() != nil
}

// unsubscribe ends the subscription, or with p.t only its subscription to those topics: a group member then
// rejoins with the remaining topics and answers once joined; a broadcast leaves those topics' streams.
func (s *Session) unsubscribe(req *protocol.Request) {
	if len(req.Topics) == 0 {
		s.stopSubscription()
		s.reply(req, nil)
		return
	}
	s.subMu.Lock()
	current := s.sub
	s.subMu.Unlock()
	if current == nil {
		s.reply(req, []string{})
		return
	}
	remaining := slices.DeleteFunc(slices.Clone(current.topics()), func(t string) bool { return slices.Contains(req.Topics, t) })
	switch sub := current.(type) {
	case *broadcastSubscription:
		sub.leaveTopics(req.Topics)
		if len(remaining) == 0 {
			s.stopSubscription()
		}
		s.reply(req, remaining)
	case *Subscription:
		s.stopSubscription()
		if len(remaining) == 0 {
			s.reply(req, remaining)
			return
		}
		opts := sub.opts
		opts.topics = remaining
		s.startGroup(opts, refOf(req), remaining)
	}
}

// stopSubscription ends the current subscription, if any, and waits (bounded) until it has let go of Kafka.
func (s *Session) stopSubscription() {
	s.subMu.Lock()
	sub := s.sub
	s.sub = nil
	s.subMu.Unlock()
	if sub != nil {
		sub.stop(s.hub.cfg.CloseTimeout)
	}
}

// group returns the consumer group the session is a member of, if any.
func (s *Session) group() (string, bool) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if sub, ok := s.sub.(*Subscription); ok {
		return sub.opts.group, true
	}
	return "", false
}

// subscribedTopics lists what the session is subscribed to, for health.
func (s *Session) subscribedTopics() []string {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.sub == nil {
		return []string{}
	}
	return slices.Clone(s.sub.topics())
}

// ack acknowledges notifications of a subscription with commit "client". Like a publish, it is answered only
// when it fails; acknowledging what was acknowledged already, or nothing, is not a failure.
func (s *Session) ack(req *protocol.Request) {
	s.subMu.Lock()
	sub, ok := s.sub.(*Subscription)
	s.subMu.Unlock()
	if !ok || !sub.opts.clientCommit {
		s.replyError(req, &protocol.Error{
			Code:    protocol.CodeInvalidPayload,
			Message: `nothing to acknowledge: no subscription with "commit": "client" on this socket`,
		})
		return
	}
	if t := req.AckOf; !t.ByID && !slices.Contains(sub.topics(), t.Topic) {
		s.replyError(req, &protocol.Error{
			Code:    protocol.CodeInvalidPayload,
			Message: fmt.Sprintf("p.t: %q is not a topic of this socket's subscription", t.Topic),
		})
		return
	}
	sub.ack(req.AckOf)
}
