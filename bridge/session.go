package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// requestRef is what a reply needs of the request it answers; it outlives the request when a reply is sent
// later (a failed flush, a subscription that became ready).
type requestRef struct {
	id     json.RawMessage
	typ    string
	action string
}

func refOf(req *protocol.Request) requestRef {
	return requestRef{id: req.ID, typ: req.Type, action: req.Action}
}

func (r requestRef) request() *protocol.Request {
	return &protocol.Request{ID: r.id, Type: r.typ, Action: r.action}
}

// outFrame is one text frame for the writer; written, when set, runs once the frame is on the socket.
type outFrame struct {
	data    []byte
	written func()
}

// outQueueFrames bounds the frames waiting for a socket's writer. A full queue blocks whoever sends: the reader
// (replies) stops reading, a subscription stops fetching.
const outQueueFrames = 64

// Session is one WebSocket connection: the goroutine that called Hub.Serve reads and handles requests, one writer
// goroutine owns every write, a Publisher batches publishes, and at most one Subscription delivers notifications.
type Session struct {
	hub    *Hub
	conn   *websocket.Conn
	num    uint64
	logger *zap.Logger

	ctx    context.Context // ends when the session starts closing
	cancel context.CancelFunc

	frameIDs  atomic.Uint64
	out       chan outFrame
	writerEnd chan struct{} // closed by stopWriter: drain, send the close frame, return
	writerOut chan struct{} // closed when the writer has returned
	closeCode atomic.Int32  // the close frame's code (RFC 6455 §7.4.1); 1000 unless the hub sets one
	peerGone  atomic.Bool   // the peer sent a close frame or the socket failed: send no close frame

	publisher *Publisher

	subMu sync.Mutex
	sub   *Subscription
}

func newSession(h *Hub, conn *websocket.Conn, num uint64) *Session {
	s := &Session{
		hub:       h,
		conn:      conn,
		num:       num,
		logger:    h.logger.With(zap.Uint64("ws", num), zap.String("remote", conn.RemoteAddr().String())),
		out:       make(chan outFrame, outQueueFrames),
		writerEnd: make(chan struct{}),
		writerOut: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(h.ctx)
	s.closeCode.Store(websocket.CloseNormalClosure)
	s.publisher = newPublisher(h.kafka, h.cfg.Producer, h.cfg.RequestTimeout, s.publishFailed)
	return s
}

// run serves the session until the socket closes or the hub closes it; every part has ended when it returns.
func (s *Session) run() {
	start := time.Now()
	s.logger.Info("connection opened")
	go s.writeLoop()

	// A hub shutting down ends the session by waking the blocked read.
	stopWaking := context.AfterFunc(s.ctx, func() { s.conn.SetReadDeadline(time.Now()) })
	requests := s.readLoop()
	stopWaking()
	s.cancel()

	// Flush what the client published before it left: its publishes must reach Kafka.
	s.publisher.Close(s.hub.cfg.CloseTimeout)
	s.stopSubscription()
	s.stopWriter()
	s.conn.Close()
	s.logger.Info("connection closed", zap.Duration("duration", time.Since(start)), zap.Uint64("requests", requests))
}

func (s *Session) readLoop() (requests uint64) {
	for {
		// Binary frames are read like text: the original parsed whatever arrived as JSON.
		_, frame, err := s.conn.ReadMessage()
		if err != nil {
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				s.peerGone.Store(true)
			} else if s.ctx.Err() == nil {
				s.peerGone.Store(true)
				s.logger.Debug("socket read failed", zap.Error(err))
			}
			return requests
		}
		requests++
		s.handle(frame)
	}
}

func (s *Session) handle(frame []byte) {
	req, perr := protocol.Decode(frame)
	if perr != nil {
		s.replyError(&req, perr)
		return
	}
	switch req.Op {
	case protocol.OpPublish:
		s.publish(&req)
	case protocol.OpCreateTopics:
		s.createTopics(&req)
	case protocol.OpListTopics:
		s.listTopics(&req)
	case protocol.OpSubscribe:
		s.subscribe(&req)
	case protocol.OpUnsubscribe:
		s.stopSubscription()
		s.reply(&req, nil)
	case protocol.OpHealth:
		s.reply(&req, s.hub.health())
	}
}

func (s *Session) publish(req *protocol.Request) {
	rec := Record{Topic: req.Publish.Topic, Partition: -1, Value: req.Publish.Value}
	if err := s.publisher.Add(s.ctx, rec, refOf(req)); err != nil {
		if errors.Is(err, context.Canceled) {
			err = ErrShuttingDown
		}
		s.replyError(req, replyError("publishing to "+rec.Topic, err))
	}
}

func (s *Session) publishFailed(ref requestRef, topic string, err error) {
	s.logger.Debug("publish failed", zap.String("topic", topic), zap.Error(err))
	s.replyError(ref.request(), replyError("publishing to "+topic, err))
}

func (s *Session) createTopics(req *protocol.Request) {
	ctx, cancel := context.WithTimeout(s.ctx, s.hub.cfg.RequestTimeout)
	defer cancel()
	specs := make([]TopicSpec, len(req.Topics))
	for i, name := range req.Topics {
		specs[i] = TopicSpec{Name: name}
	}
	failed, err := s.hub.kafka.CreateTopics(ctx, specs)
	if err != nil {
		s.replyError(req, replyError("creating topics", err))
		return
	}
	if len(failed) > 0 {
		names := make([]string, 0, len(failed))
		var first error
		for _, name := range req.Topics {
			if err, ok := failed[name]; ok {
				names = append(names, name)
				if first == nil {
					first = err
				}
			}
		}
		s.replyError(req, replyError("creating topics "+strings.Join(names, ", "), first))
		return
	}
	s.reply(req, req.Topics)
}

func (s *Session) listTopics(req *protocol.Request) {
	ctx, cancel := context.WithTimeout(s.ctx, s.hub.cfg.RequestTimeout)
	defer cancel()
	topics, err := s.hub.kafka.Topics(ctx, nil)
	if err != nil {
		s.replyError(req, replyError("listing topics", err))
		return
	}
	names := make([]string, 0, len(topics))
	for name := range topics {
		names = append(names, name)
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

// subscribe replaces the session's subscription. Topics are checked first: with kafka-go, one missing topic
// empties the member's whole assignment (segmentio/kafka-go#1314). The reply is sent by the subscription once it
// has joined the group and fixed its start offsets.
func (s *Session) subscribe(req *protocol.Request) {
	s.stopSubscription()
	ctx, cancel := context.WithTimeout(s.ctx, s.hub.cfg.RequestTimeout)
	defer cancel()
	existing, err := s.hub.kafka.Topics(ctx, req.Topics)
	if err != nil {
		s.replyError(req, replyError("subscribing", err))
		return
	}
	var missing []string
	for _, t := range req.Topics {
		if _, ok := existing[t]; !ok {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		s.replyError(req, &protocol.Error{
			Code:    protocol.CodeUnknownTopic,
			Message: "cannot subscribe: no such topic: " + strings.Join(missing, ", "),
		})
		return
	}
	group := req.Group
	if group == "" {
		group = s.hub.cfg.Consumer.GroupID
	}
	sub := newSubscription(s, group, req.Topics, refOf(req))
	s.subMu.Lock()
	s.sub = sub
	s.subMu.Unlock()
	sub.start()
}

// stopSubscription ends the current subscription, if any, and waits (bounded) until it has left its group.
func (s *Session) stopSubscription() {
	s.subMu.Lock()
	sub := s.sub
	s.sub = nil
	s.subMu.Unlock()
	if sub != nil {
		sub.stop(s.hub.cfg.CloseTimeout)
	}
}

// topics lists what the session is subscribed to, for health.
func (s *Session) topics() []string {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.sub == nil {
		return []string{}
	}
	return slices.Clone(s.sub.topics)
}

func (s *Session) nextFrameID() uint64 { return s.frameIDs.Add(1) }

func (s *Session) reply(req *protocol.Request, payload any) {
	s.send(outFrame{data: protocol.Reply(s.nextFrameID(), req, payload)})
}

func (s *Session) replyError(req *protocol.Request, perr *protocol.Error) {
	s.send(outFrame{data: protocol.ErrorReply(s.nextFrameID(), req, perr)})
}

// send queues a frame for the writer, waiting while the queue is full. It reports false when the writer has
// ended and the frame was dropped.
func (s *Session) send(f outFrame) bool {
	select {
	case s.out <- f:
		return true
	case <-s.writerOut:
		return false
	}
}

// sendCtx is send for senders that must also give up when ctx ends (a subscription whose generation ended).
func (s *Session) sendCtx(ctx context.Context, f outFrame) bool {
	select {
	case s.out <- f:
		return true
	case <-s.writerOut:
		return false
	case <-ctx.Done():
		return false
	}
}

// writeLoop is the only goroutine that writes data frames. After a failed write it keeps draining the queue, so
// that senders never block on a dead socket, until stopWriter.
func (s *Session) writeLoop() {
	defer close(s.writerOut)
	broken := false
	write := func(f outFrame) {
		if broken {
			return
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
		if err := s.conn.WriteMessage(websocket.TextMessage, f.data); err != nil {
			broken = true
			s.peerGone.Store(true)
			s.logger.Debug("socket write failed", zap.Error(err))
			s.cancel()
			return
		}
		if f.written != nil {
			f.written()
		}
	}
	for {
		select {
		case f := <-s.out:
			write(f)
		case <-s.writerEnd:
			for {
				select {
				case f := <-s.out:
					write(f)
				default:
					if !broken && !s.peerGone.Load() {
						code := int(s.closeCode.Load())
						msg := websocket.FormatCloseMessage(code, closeReasons[code])
						s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(s.hub.cfg.CloseTimeout))
					}
					return
				}
			}
		}
	}
}

// stopWriter lets the writer send what is queued and the close frame, and waits for it.
func (s *Session) stopWriter() {
	close(s.writerEnd)
	<-s.writerOut
}

// closeReasons are the close frames' reason texts.
var closeReasons = map[int]string{
	websocket.CloseNormalClosure:  "",
	websocket.CloseGoingAway:      "server shutting down",
	websocket.CloseServiceRestart: "server configuration reloaded, reconnect",
}

// shutdown asks the session to end with the given close code; run does the rest.
func (s *Session) shutdown(code int) {
	s.closeCode.Store(int32(code))
	s.cancel()
}
