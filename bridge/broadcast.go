package bridge

import (
	"context"
	"errors"
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

	// readersStarted counts partition readers ever started, so tests can tell the topic is read once.
	readersStarted atomic.Int64
}

// streamKey identifies a shared stream: sockets with the same topic and the same delivery settings share it.
type streamKey struct {
	topic    string
	limit    int
	interval time.Duration
	meta     bool
}

// NewBroadcaster returns a Broadcaster reading through kafka.
func NewBroadcaster(kafka Kafka, logger *zap.Logger) *Broadcaster {
	return &Broadcaster{kafka: kafka, logger: logger, streams: make(map[streamKey]*stream)}
}

// ReadersStarted reports how many partition readers the broadcaster has started since it was created.
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
// stream's start offsets are fixed, so a record written after it returns is delivered to the socket.
func (b *Broadcaster) join(ctx context.Context, key streamKey, s *Session) (*stream, *member, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, nil, ErrShuttingDown
	}
	st, ok := b.streams[key]
	if !ok {
		st = newStream(b, key, LastOffset, time.Time{})
		b.streams[key] = st
	}
	m := st.add(s)
	b.mu.Unlock()
	if !ok {
		go st.run()
	}
	if err := st.waitStarted(ctx); err != nil {
		b.leave(st, s)
		return nil, nil, err
	}
	return st, m, nil
}

// joinPrivate starts a stream for one socket that reads from a past position (from earliest, or from a time): a
// shared stream reads from "now" and cannot serve it.
func (b *Broadcaster) joinPrivate(ctx context.Context, key streamKey, start int64, at time.Time, s *Session) (*stream, *member, error) {
	st := newStream(b, key, start, at)
	st.private = true
	m := st.add(s)
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
}

// member is one socket's place in a stream. Until released, the stream's frames are held back, so that the
// socket gets its subscribe reply before the first notification.
type member struct {
	s *Session

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
	m.s.logger.Warn("closing a socket too slow for its broadcast subscription", zap.String("topic", topic))
	metrics.slowCloses.WithLabelValues("broadcast_queue_full").Inc()
	m.s.shutdown(closeTooSlow)
}

// release queues what was held back, in order, and lets later frames through.
func (m *member) release(topic string) {
	m.mu.Lock()
	held := m.held
	m.held, m.ready = nil, true
	m.mu.Unlock()
	for _, f := range held {
		m.deliver(f, topic)
	}
}

func newStream(b *Broadcaster, key streamKey, start int64, at time.Time) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	return &stream{
		b: b, key: key, start: start, at: at, ctx: ctx, cancel: cancel,
		started: make(chan struct{}), done: make(chan struct{}),
		subscribers: make(map[*Session]*member),
	}
}

func (st *stream) add(s *Session) *member {
	m := &member{s: s}
	st.mu.Lock()
	st.subscribers[s] = m
	st.mu.Unlock()
	return m
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
	records := make(chan Record, fetchQueueRecords)
	var readers sync.WaitGroup
	for partition, offset := range offsets {
		st.b.readersStarted.Add(1)
		metrics.broadcastReaders.Inc()
		readers.Go(func() {
			defer metrics.broadcastReaders.Dec()
			st.read(partition, offset, records, logger)
		})
	}
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

// read feeds one partition to the batcher. Errors other than the stream's end are retried after a pause; an
// offset that vanished resumes at the partition's end, since a broadcast delivers what is new.
func (st *stream) read(partition int, offset int64, records chan<- Record, logger *zap.Logger) {
	lag := &lagGauge{topic: st.key.topic}
	for st.ctx.Err() == nil {
		reader := st.b.kafka.ReadPartition(st.key.topic, partition, offset)
		// The stream's lag counts once, however many sockets it feeds.
		err := feed(st.ctx, reader, records, nil, &offset, lag)
		reader.Close()
		if st.ctx.Err() != nil {
			return
		}
		logger.Warn("broadcast reader failed, retrying", zap.Int("partition", partition), zap.Error(err))
		if errors.Is(err, ErrOffsetOutOfRange) {
			if marks, err := st.b.kafka.Watermarks(st.ctx, st.key.topic, []int{partition}); err == nil {
				offset = marks[partition].High
			}
		}
		select {
		case <-time.After(time.Second):
		case <-st.ctx.Done():
		}
	}
}

// batch collects records into frames of up to limit records, sent interval after the first (at once when
// interval is 0), until the stream ends.
func (st *stream) batch(records <-chan Record) {
	var batch []Record
	var timer *time.Timer
	var timerC <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case rec := <-records:
			batch = append(batch, rec)
			if st.key.interval == 0 {
				batch = drainReady(records, batch, st.key.limit)
			}
			switch {
			case st.key.interval == 0 || len(batch) >= st.key.limit:
				st.publish(batch)
				batch = batch[:0]
			case len(batch) == 1:
				if timer == nil {
					timer = time.NewTimer(st.key.interval)
				} else {
					timer.Reset(st.key.interval)
				}
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			st.publish(batch)
			batch = batch[:0]
		case <-st.ctx.Done():
			return
		}
	}
}

// publish encodes the batch once and queues it on every subscribed socket.
func (st *stream) publish(batch []Record) {
	if len(batch) == 0 {
		return
	}
	frame := encodeNotifications(batch, st.key.meta)
	st.mu.Lock()
	members := make([]*member, 0, len(st.subscribers))
	for _, m := range st.subscribers {
		members = append(members, m)
	}
	st.mu.Unlock()
	n := float64(len(batch))
	f := outFrame{data: frame, size: int64(len(frame)), written: func() { metrics.delivered.Add(n) }}
	for _, m := range members {
		m.deliver(f, st.key.topic)
	}
}

// encodeNotifications encodes records as one notification frame, taking their ids from the process-wide
// counter so that they are unique within every connection the frame goes to.
func encodeNotifications(batch []Record, meta bool) []byte {
	first := reserveFrameIDs(len(batch))
	notes := make([]protocol.Notification, len(batch))
	for i := range batch {
		notes[i] = notification(first+uint64(i), &batch[i], meta)
	}
	return protocol.AppendNotifications(nil, notes)
}

func notification(id uint64, rec *Record, meta bool) protocol.Notification {
	n := protocol.Notification{ID: id, Value: rec.Value}
	if meta {
		n.Meta = true
		n.Topic = rec.Topic
		n.Partition = int32(rec.Partition)
		n.Offset = rec.Offset
		n.Key = rec.Key
		n.Time = rec.Time.UnixMilli()
		for _, h := range rec.Headers {
			n.Headers = append(n.Headers, protocol.Header{Key: h.Key, Value: h.Value})
		}
	}
	return n
}

// broadcastSubscription is a session's membership in one stream per subscribed topic.
type broadcastSubscription struct {
	session *Session
	opts    subscribeOptions

	mu      sync.Mutex
	streams map[string]*stream
	members map[string]*member
}

// newBroadcastSubscription joins a stream for every topic: the shared one when reading from now, a private one
// when reading from a past position. It returns once every stream is positioned.
func newBroadcastSubscription(ctx context.Context, s *Session, opts subscribeOptions) (*broadcastSubscription, error) {
	b := s.hub.broadcaster
	sub := &broadcastSubscription{
		session: s, opts: opts,
		streams: make(map[string]*stream, len(opts.topics)), members: make(map[string]*member, len(opts.topics)),
	}
	for _, topic := range opts.topics {
		key := streamKey{topic: topic, limit: opts.limit, interval: opts.interval, meta: opts.meta}
		var st *stream
		var m *member
		var err error
		if opts.startOffset == LastOffset && opts.startTime.IsZero() {
			st, m, err = b.join(ctx, key, s)
		} else {
			st, m, err = b.joinPrivate(ctx, key, opts.startOffset, opts.startTime, s)
		}
		if err != nil {
			sub.stop(0)
			return nil, err
		}
		sub.streams[topic], sub.members[topic] = st, m
	}
	return sub, nil
}

// release lets the streams' notifications through, once the subscribe reply is queued.
func (sub *broadcastSubscription) release() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for topic, m := range sub.members {
		m.release(topic)
	}
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

// stop leaves every stream; a stream without subscribers stops its readers, which never takes long, so timeout
// has nothing to bound.
func (sub *broadcastSubscription) stop(time.Duration) {
	sub.leaveTopics(sub.opts.topics)
}

func (sub *broadcastSubscription) leaveTopics(topics []string) {
	sub.mu.Lock()
	var leaving []*stream
	for _, t := range topics {
		if st, ok := sub.streams[t]; ok {
			leaving = append(leaving, st)
			delete(sub.streams, t)
			delete(sub.members, t)
		}
	}
	sub.mu.Unlock()
	for _, st := range leaving {
		sub.session.hub.broadcaster.leave(st, sub.session)
	}
}

// Cluster is what handlers with the same Kafka settings share, also across config reloads: the Kafka clients
// and the broadcast streams.
type Cluster struct {
	*KafkaGo
	Broadcaster *Broadcaster
}

// NewCluster builds the clients; it does not dial.
func NewCluster(cfg KafkaConfig, logger *zap.Logger) (*Cluster, error) {
	k, err := NewKafkaGo(cfg, logger)
	if err != nil {
		return nil, err
	}
	return &Cluster{KafkaGo: k, Broadcaster: NewBroadcaster(k, logger)}, nil
}

// Destruct stops the streams, then closes the clients.
func (c *Cluster) Destruct() error {
	c.Broadcaster.Close()
	return c.KafkaGo.Destruct()
}
