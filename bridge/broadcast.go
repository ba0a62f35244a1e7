package bridge

import (
	"context"
	"errors"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// Broadcaster serves broadcast subscriptions: every subscribed socket receives every record of a topic. One
// stream per topic (and batching settings) reads the topic once for the whole process, whatever the number of
// sockets, encodes each batch once, and hands it to every subscribed socket without waiting: a socket whose queue
// is full is closed as too slow (close code 1013, try again later), so that it never delays the others. One
// Broadcaster exists per Kafka cluster, shared by every handler using it.
type Broadcaster struct {
	kafka  Kafka
	logger *zap.Logger

	mu      sync.Mutex
	streams map[streamKey]*stream
	closed  bool

	// readersStarted counts partitions whose reading ever started, so tests can tell the topic is read once.
	readersStarted atomic.Int64
}

// streamKey identifies a shared stream: sockets with the same topic and the same delivery settings share it.
type streamKey struct {
	topic    string
	limit    int
	interval time.Duration
	meta     bool
	// namespace is the one whose prefix meta frames take off topic names: sockets of different namespaces
	// reading one topic with meta do not share its frames.
	namespace protocol.Namespace
}

// NewBroadcaster returns a Broadcaster reading through kafka.
func NewBroadcaster(kafka Kafka, logger *zap.Logger) *Broadcaster {
	return &Broadcaster{kafka: kafka, logger: logger, streams: make(map[streamKey]*stream)}
}

// ReadersStarted reports how many partitions the broadcaster has started reading since it was created.
func (b *Broadcaster) ReadersStarted() int64 { return b.readersStarted.Load() }

// Close stops every stream and waits for their readers.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	b.closed = true
	streams := make([]*stream, 0, len(b.streams))
	for _, st := range b.streams {
		streams = append(streams, st)
	}
	b.streams = make(map[streamKey]*stream)
	b.mu.Unlock()
	for _, st := range streams {
		st.stop()
	}
}

// join adds a socket to the shared stream of key, starting the stream if it is the first. It returns once the
// stream's start offsets are fixed, so a record written after it returns is delivered to the socket, with the
// offset of the next record the socket gets from each partition. A member added behind gets nothing from the
// stream until it has caught up (see catchUp), but keeps the stream running.
func (b *Broadcaster) join(ctx context.Context, key streamKey, s *Session, behind bool) (*stream, *member, map[int]int64, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, nil, ErrShuttingDown
	}
	st, ok := b.streams[key]
	if !ok {
		st = newStream(b, key, LastOffset, time.Time{})
		b.streams[key] = st
	}
	m := st.add(s, behind)
	b.mu.Unlock()
	if !ok {
		go st.run()
	}
	if err := st.waitStarted(ctx); err != nil {
		b.leave(st, s)
		return nil, nil, nil, err
	}
	return st, m, st.position(), nil
}

// joinPrivate starts a stream for one socket that reads from a past position (from earliest, or from a time): a
// shared stream reads from "now" and cannot serve it.
func (b *Broadcaster) joinPrivate(ctx context.Context, key streamKey, start int64, at time.Time, s *Session) (*stream, *member, error) {
	st := newStream(b, key, start, at)
	st.private = true
	m := st.add(s, false)
	go st.run()
	if err := st.waitStarted(ctx); err != nil {
		st.stop()
		return nil, nil, err
	}
	return st, m, nil
}

// leave removes a socket from a stream and stops the stream when it was the last.
func (b *Broadcaster) leave(st *stream, s *Session) {
	b.mu.Lock()
	last := st.remove(s)
	if last && !st.private && b.streams[st.key] == st {
		delete(b.streams, st.key)
	}
	b.mu.Unlock()
	if last {
		st.stop()
	}
}

// stream reads one topic and fans its batches out to the subscribed sockets.
type stream struct {
	b       *Broadcaster
	key     streamKey
	start   int64     // FirstOffset, LastOffset, or 0 with at set
	at      time.Time // read from the first record at or after this time, when set
	private bool

	ctx      context.Context
	cancel   context.CancelFunc
	started  chan struct{} // closed once the readers are positioned, or startErr is set
	startErr error
	done     chan struct{}

	mu          sync.Mutex
	subscribers map[*Session]*member
	// next is, per partition, the offset of the next record the stream hands its members: where a member that
	// catches up joins.
	next map[int]int64
}

// member is one socket's place in a stream. Until released, the stream's frames are held back, so that the
// socket gets its subscribe reply before the first notification.
type member struct {
	s *Session
	// joined (under the stream's mu) says the member gets the stream's frames; one added behind is not, until it
	// has caught up.
	joined bool

	mu    sync.Mutex
	ready bool
	held  []outFrame
}

// maxHeldFrames bounds the frames a member holds before its release: a socket whose subscribe reply cannot be
// queued meanwhile is too slow for the stream.
const maxHeldFrames = outQueueFrames

// deliver queues a frame for the member's socket, or holds it until release; a socket that cannot take it is
// closed as too slow.
func (m *member) deliver(f outFrame, topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ready {
		if len(m.held) < maxHeldFrames {
			m.held = append(m.held, f)
			return
		}
	} else if m.s.offer(f) {
		return
	}
	m.tooSlow(topic)
}

// release queues what was held back, in order, and lets later frames through. It queues under the member's lock:
// the stream delivers its next batch meanwhile, and that batch waits rather than going ahead of the held ones.
func (m *member) release(topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	held := m.held
	m.held, m.ready = nil, true
	for _, f := range held {
		if !m.s.offer(f) {
			m.tooSlow(topic)
			return
		}
	}
}

// tooSlow closes the member's socket, which could not take a frame of the stream.
func (m *member) tooSlow(topic string) {
	m.s.logger().Warn("closing a socket too slow for its broadcast subscription", zap.String("topic", topic))
	metrics.slowCloses.WithLabelValues("broadcast_queue_full").Inc()
	m.s.shutdown(closeTooSlow)
}

func newStream(b *Broadcaster, key streamKey, start int64, at time.Time) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	return &stream{
		b: b, key: key, start: start, at: at, ctx: ctx, cancel: cancel,
		started: make(chan struct{}), done: make(chan struct{}),
		subscribers: make(map[*Session]*member),
	}
}

func (st *stream) add(s *Session, behind bool) *member {
	m := &member{s: s, joined: !behind}
	st.mu.Lock()
	st.subscribers[s] = m
	st.mu.Unlock()
	return m
}

// position returns, per partition, the offset of the next record the stream hands its members.
func (st *stream) position() map[int]int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return maps.Clone(st.next)
}

// remove reports whether s was the last subscriber.
func (st *stream) remove(s *Session) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.subscribers, s)
	return len(st.subscribers) == 0
}

func (st *stream) waitStarted(ctx context.Context) error {
	select {
	case <-st.started:
		return st.startErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (st *stream) stop() {
	st.cancel()
	<-st.done
}

// run positions a reader on every partition, then batches what they read until the stream is stopped.
func (st *stream) run() {
	defer close(st.done)
	logger := st.b.logger.With(zap.String("topic", st.key.topic))
	offsets, err := st.startOffsets()
	if err != nil {
		st.startErr = err
		close(st.started)
		return
	}
	st.mu.Lock()
	st.next = maps.Clone(offsets)
	st.mu.Unlock()
	records := make(chan Record, fetchQueueRecords)
	var readers sync.WaitGroup
	st.b.readersStarted.Add(int64(len(offsets)))
	metrics.broadcastReaders.Add(float64(len(offsets)))
	// A broadcast delivers what is new: an offset that vanished resumes at the partition's end, and a failed read
	// is retried, since there is no one to hand the partition to. The stream's lag counts once, however many
	// sockets it feeds; each partition keeps its own part of it.
	r := &partitionReader{
		kafka: st.b.kafka, records: records, lag: func(topic string) *lagGauge { return &lagGauge{topic: topic} },
		outOfRange: LastOffset, retry: true, logger: logger,
	}
	readers.Go(func() {
		defer metrics.broadcastReaders.Sub(float64(len(offsets)))
		r.run(st.ctx, map[string]map[int]int64{st.key.topic: offsets})
	})
	close(st.started)
	logger.Info("broadcast stream started", zap.Int("partitions", len(offsets)), zap.Bool("private", st.private))
	st.batch(records)
	readers.Wait()
	logger.Info("broadcast stream stopped")
}

func (st *stream) startOffsets() (map[int]int64, error) {
	ctx, cancel := context.WithTimeout(st.ctx, time.Minute)
	defer cancel()
	topics, err := st.b.kafka.Topics(ctx, []string{st.key.topic})
	if err != nil {
		return nil, err
	}
	parts, ok := topics[st.key.topic]
	if !ok {
		return nil, ErrUnknownTopic
	}
	ids := make([]int, len(parts))
	for i, p := range parts {
		ids[i] = p.ID
	}
	if !st.at.IsZero() {
		return st.b.kafka.OffsetsAt(ctx, st.key.topic, ids, st.at)
	}
	marks, err := st.b.kafka.Watermarks(ctx, st.key.topic, ids)
	if err != nil {
		return nil, err
	}
	offsets := make(map[int]int64, len(marks))
	for p, m := range marks {
		offsets[p] = pick(st.start, m)
	}
	return offsets, nil
}

// batch collects records into frames by the stream's mq_limit and mq_interval until the stream ends.
func (st *stream) batch(records <-chan Record) {
	b := batcher{limit: st.key.limit, interval: st.key.interval}
	defer b.stop()
	for {
		select {
		case rec := <-records:
			if !b.add(rec, records, st.key.limit) {
				continue
			}
		case <-b.due:
		case <-st.ctx.Done():
			return
		}
		batch, _ := b.take()
		st.publish(batch)
	}
}

// publish encodes the batch once and queues it on every subscribed socket.
func (st *stream) publish(batch []Record) {
	if len(batch) == 0 {
		return
	}
	frame, _ := encodeNotifications(batch, st.key.meta, st.key.namespace)
	// Which members get the batch and where the stream stands after it change together, so that a member
	// catching up joins between two batches, at the offsets the next one starts from.
	st.mu.Lock()
	members := make([]*member, 0, len(st.subscribers))
	for _, m := range st.subscribers {
		if m.joined {
			members = append(members, m)
		}
	}
	for i := range batch {
		st.next[batch[i].Partition] = batch[i].Offset + 1
	}
	st.mu.Unlock()
	n := float64(len(batch))
	f := outFrame{data: frame, size: int64(len(frame)), written: func() { metrics.delivered.Add(n) }}
	fanOut(members, func(m *member) { m.deliver(f, st.key.topic) })
}

// fanOutChunk is the fewest members a goroutine of a fan-out delivers to: below it, starting one costs more than
// it saves.
const fanOutChunk = 2048

// fanOut calls deliver for every member, spread over as many goroutines as there are CPUs and chunks of
// fanOutChunk members, and returns once every call has. A delivery is mostly the socket's write(2), so one
// goroutine writing a record to 19,000 sockets took a core for a third of a second while the other core idled:
// the last socket got the record that much later than the first. Returning only when all are done keeps each
// socket's frames in the stream's order (a member is in one chunk per batch, and the next batch starts after).
func fanOut(members []*member, deliver func(*member)) {
	chunks := min(runtime.GOMAXPROCS(0), len(members)/fanOutChunk)
	if chunks < 2 {
		for _, m := range members {
			deliver(m)
		}
		return
	}
	size := (len(members) + chunks - 1) / chunks
	var wg sync.WaitGroup
	for rest := members[size:]; len(rest) > 0; rest = rest[min(size, len(rest)):] {
		chunk := rest[:min(size, len(rest))]
		wg.Go(func() {
			for _, m := range chunk {
				deliver(m)
			}
		})
	}
	for _, m := range members[:size] {
		deliver(m)
	}
	wg.Wait()
}

// broadcastSubscription is a session's membership in one stream per subscribed topic.
type broadcastSubscription struct {
	session *Session
	opts    subscribeOptions

	// starts is, per topic and partition, the offset of the first record the socket gets.
	starts map[string]map[int]int64
	// behind are the topics whose members start behind their shared stream (p.seek) and catch up on their own.
	behind map[string]bool

	// Catching up ends with ctx, or with the topic's own cancel when the topic is left; catchers are the
	// goroutines doing it.
	ctx      context.Context
	cancel   context.CancelFunc
	catchers sync.WaitGroup

	mu       sync.Mutex
	streams  map[string]*stream
	members  map[string]*member
	catching map[string]catcher
}

// catcher is one topic's catching up.
type catcher struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// newBroadcastSubscription joins a stream for every topic: the shared one when reading from now or from offsets
// (p.seek: the socket catches up on its own, then joins the shared stream where it stands), a private one when
// reading from a past position (p.from). It returns once every stream is positioned.
func newBroadcastSubscription(ctx context.Context, s *Session, opts subscribeOptions) (*broadcastSubscription, error) {
	b := s.hub.broadcaster
	sub := &broadcastSubscription{
		session: s, opts: opts,
		starts: make(map[string]map[int]int64, len(opts.topics)), behind: make(map[string]bool),
		streams: make(map[string]*stream, len(opts.topics)), members: make(map[string]*member, len(opts.topics)),
		catching: make(map[string]catcher),
	}
	sub.ctx, sub.cancel = context.WithCancel(s.ctx)
	for _, topic := range opts.topics {
		key := streamKey{topic: topic, limit: opts.limit, interval: opts.interval, meta: opts.meta}
		if opts.meta {
			key.namespace = s.namespace()
		}
		var st *stream
		var m *member
		var err error
		switch seek := opts.seek[topic]; {
		case len(seek) > 0:
			sub.behind[topic] = true
			if st, m, sub.starts[topic], err = b.join(ctx, key, s, true); err == nil {
				err = sub.seekStarts(ctx, topic, seek)
			}
		case opts.startOffset == LastOffset && opts.startTime.IsZero():
			st, m, sub.starts[topic], err = b.join(ctx, key, s, false)
		default:
			if st, m, err = b.joinPrivate(ctx, key, opts.startOffset, opts.startTime, s); err == nil {
				sub.starts[topic] = st.position()
			}
		}
		if st != nil {
			sub.streams[topic], sub.members[topic] = st, m
		}
		if err != nil {
			sub.stop(0)
			return nil, err
		}
	}
	return sub, nil
}

// seekStarts sets where each partition of topic starts for a subscription with p.seek: a partition it names at
// the offset asked for, within what the partition holds (an offset below its first is gone, so the client can
// tell the gap from the assigned frame); the others where p.from says, or where the shared stream stands.
func (sub *broadcastSubscription) seekStarts(ctx context.Context, topic string, seek map[int32]int64) error {
	kafka, starts := sub.session.hub.kafka, sub.starts[topic]
	ids := slices.Sorted(maps.Keys(starts))
	marks, err := kafka.Watermarks(ctx, topic, ids)
	if err != nil {
		return err
	}
	var atTime map[int]int64
	if !sub.opts.startTime.IsZero() {
		if atTime, err = kafka.OffsetsAt(ctx, topic, ids, sub.opts.startTime); err != nil {
			return err
		}
	}
	for _, p := range ids {
		offset, sought := seek[int32(p)]
		switch {
		case sought:
			starts[p] = min(max(offset, marks[p].Low), marks[p].High)
		case atTime != nil:
			starts[p] = atTime[p]
		case sub.opts.startOffset == FirstOffset:
			starts[p] = marks[p].Low
		}
	}
	return nil
}

// release lets the streams' notifications through, once the subscribe reply is queued, after the assigned frame
// when asked for; members behind start catching up.
func (sub *broadcastSubscription) release() {
	if sub.opts.assignments {
		sub.session.sendAssigned(sub.starts)
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for topic, m := range sub.members {
		if sub.behind[topic] {
			st, from := sub.streams[topic], maps.Clone(sub.starts[topic])
			ctx, cancel := context.WithCancel(sub.ctx)
			c := catcher{cancel: cancel, done: make(chan struct{})}
			sub.catching[topic] = c
			sub.catchers.Go(func() { defer close(c.done); sub.catchUp(ctx, st, m, from) })
			continue
		}
		m.release(topic)
	}
}

// catchUpIdle is how long a catch-up read waits for a record below the stream's position before it takes the
// rest as holding none (transaction markers, compacted records): the stream has read past them, so real records
// there would come at once.
const catchUpIdle = 2 * time.Second

// catchUpWait is how long a member waits, before it looks again, for the shared stream to reach a partition it
// starts ahead of (it has seen more of it than the stream has delivered, say on another Caddy instance).
const catchUpWait = 20 * time.Millisecond

// catchUp delivers a member's partitions from its own offsets up to where the shared stream stands, and joins the
// stream between two of its batches once every partition is exactly there: no record is missed or delivered
// twice, and the socket's own reads end. A failed read closes the socket with 1013 (try again later), so the
// client resumes rather than silently skipping.
func (sub *broadcastSubscription) catchUp(ctx context.Context, st *stream, m *member, caught map[int]int64) {
	s := sub.session
	for ctx.Err() == nil {
		st.mu.Lock()
		behind, ahead := make(map[int]int64), false
		for p, next := range st.next {
			switch {
			case caught[p] < next:
				behind[p] = next
			case caught[p] > next:
				ahead = true
			}
		}
		if len(behind) == 0 && !ahead {
			m.joined = true
			st.mu.Unlock()
			m.release(st.key.topic)
			return
		}
		st.mu.Unlock()
		for p, target := range behind {
			if err := sub.readUpTo(ctx, st, p, caught[p], target); err != nil {
				if ctx.Err() == nil {
					s.logger().Warn("catching up a broadcast subscription", zap.String("topic", st.key.topic), zap.Int("partition", p), zap.Error(err))
					s.shutdown(closeTooSlow)
				}
				return
			}
			caught[p] = target
		}
		if len(behind) == 0 {
			select {
			case <-time.After(catchUpWait):
			case <-ctx.Done():
			}
		}
	}
}

// readUpTo delivers the records of one partition from offset up to (not including) target, in frames batched as
// the stream's.
func (sub *broadcastSubscription) readUpTo(ctx context.Context, st *stream, partition int, offset, target int64) error {
	s := sub.session
	reader := s.hub.kafka.ReadPartitions(map[string]map[int]int64{st.key.topic: {partition: offset}})
	defer reader.Close()
	// Frames as the stream's (mq_limit), but without waiting: what is read is there already.
	b := batcher{limit: st.key.limit, maxBytes: s.queued.max / 2}
	flush := func() bool {
		batch, _ := b.take()
		if len(batch) == 0 {
			return true
		}
		frame, _ := encodeNotifications(batch, st.key.meta, st.key.namespace)
		return s.sendCtx(ctx, outFrame{data: frame, size: int64(len(frame)), written: s.hub.countDelivered(batch)})
	}
	for offset < target {
		fetchCtx, cancel := context.WithTimeout(ctx, catchUpIdle)
		recs, err := reader.Fetch(fetchCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			offset = target // nothing left below the stream's position
			continue
		case err != nil:
			return err
		}
		for _, rec := range recs {
			if rec.Offset >= target {
				offset = target // the shared stream delivers it
				break
			}
			offset = rec.Offset + 1
			if b.append(rec); b.full(st.key.limit) && !flush() {
				return ctx.Err()
			}
		}
	}
	if !flush() {
		return ctx.Err()
	}
	return nil
}

func (sub *broadcastSubscription) topics() []string {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	out := make([]string, 0, len(sub.streams))
	for _, t := range sub.opts.topics {
		if _, ok := sub.streams[t]; ok {
			out = append(out, t)
		}
	}
	return out
}

// stop ends catching up and leaves every stream; a stream without subscribers stops its readers, which never
// takes long, so timeout has nothing to bound.
func (sub *broadcastSubscription) stop(time.Duration) {
	sub.cancel()
	sub.catchers.Wait()
	sub.leaveTopics(sub.opts.topics)
}

func (sub *broadcastSubscription) leaveTopics(topics []string) {
	sub.mu.Lock()
	var leaving []*stream
	var catching []catcher
	for _, t := range topics {
		if st, ok := sub.streams[t]; ok {
			leaving = append(leaving, st)
			delete(sub.streams, t)
			delete(sub.members, t)
		}
		if c, ok := sub.catching[t]; ok {
			catching = append(catching, c)
			delete(sub.catching, t)
		}
	}
	sub.mu.Unlock()
	// No frame of a topic left may follow the reply.
	for _, c := range catching {
		c.cancel()
		<-c.done
	}
	for _, st := range leaving {
		sub.session.hub.broadcaster.leave(st, sub.session)
	}
}
