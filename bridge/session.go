package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
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

// outFrame is one text frame for the writer: its payload, which the writer only reads (a broadcast frame goes to
// many sockets), of size bytes. written, when set, runs on the writer goroutine once the frame is on the socket;
// it must not block.
type outFrame struct {
	data    []byte
	size    int64
	written func()
}

func dataFrame(data []byte) outFrame { return outFrame{data: data, size: int64(len(data))} }

// outQueueFrames bounds the frames waiting for a socket's writer, as max_queue_bytes bounds their bytes. A full
// queue blocks whoever sends: the reader (replies) stops reading, a subscription stops fetching. The channel is
// allocated with the socket, so it is kept short.
const outQueueFrames = 16

// Session is one WebSocket connection: one goroutine reads and handles requests, one writer goroutine owns every
// write, a Publisher batches publishes, and at most one Subscription delivers notifications.
type Session struct {
	hub    *Hub
	conn   *websocket.Conn
	num    uint64
	client Client
	logger *zap.Logger

	ctx    context.Context // ends when the session starts closing
	cancel context.CancelFunc

	out       chan outFrame
	queued    byteBudget    // bytes of the frames in out and being written
	writerEnd chan struct{} // closed by stopWriter: drain, send the close frame, return
	writerOut chan struct{} // closed when the writer has returned
	// writerBroken is closed when a write failed: frames still queued are dropped, never written.
	writerBroken chan struct{}
	closeCode    atomic.Int32 // the close frame's code (RFC 6455 §7.4.1); 1000 unless the hub sets one
	peerGone     atomic.Bool  // the peer sent a close frame or the socket failed: send no close frame
	// writeMu is held while data frames are written, and while the answer to the peer's close frame is: no data
	// frame may follow it (RFC 6455 §5.5.1), and the writer writes to the connection itself, past gorilla's lock.
	writeMu sync.Mutex
	// closeSent is set, under writeMu, once the close frame answering the peer's is written.
	closeSent bool
	// framesSent counts the frames written; the writer's own, read once it has ended.
	framesSent uint64

	decoder   protocol.Decoder // the read loop's
	publisher *Publisher
	// active says the client sent something, pongs included, since the hub's last keepalive tick. Setting a flag
	// costs the read loop less than reading the clock for every frame (4% of Caddy's CPU when publishing).
	active atomic.Bool
	// lastActive is the keepalive tick that last found the session active (or its start); only the hub's
	// keepalive goroutine uses it.
	lastActive time.Time
	// limiter bounds publishes; made on the first publish, so idle sockets carry none.
	limiter *publishLimiter

	subMu sync.Mutex
	sub   subscription // nil when not subscribed
}

// subscription is what a session holds while subscribed: a consumer-group member or broadcast memberships.
type subscription interface {
	// topics lists the subscribed topics, in the order the client gave them.
	topics() []string
	// stop ends the subscription, waiting at most timeout for it to let go of Kafka.
	stop(timeout time.Duration)
}

func newSession(h *Hub, conn *websocket.Conn, num uint64, client Client) *Session {
	fields := []zap.Field{zap.Uint64("ws", num), zap.String("remote", conn.RemoteAddr().String())}
	if client.Identity != "" {
		fields = append(fields, zap.String("identity", client.Identity))
	}
	s := &Session{
		hub:       h,
		conn:      conn,
		num:       num,
		client:    client,
		logger:    h.logger.With(fields...),
		queued:    byteBudget{max: h.cfg.Limits.MaxQueueBytes},
		out:       make(chan outFrame, outQueueFrames),
		writerEnd: make(chan struct{}),
		writerOut: make(chan struct{}),

		writerBroken: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(h.ctx)
	s.closeCode.Store(websocket.CloseNormalClosure)
	s.publisher = newPublisher(h.kafka, h.cfg.Producer, h.cfg.RequestTimeout, s.published)
	// A larger frame makes gorilla close the socket with 1009, message too big (RFC 6455 §7.4.1).
	conn.SetReadLimit(h.cfg.Limits.MaxFrameBytes)
	conn.SetCloseHandler(func(code int, _ string) error {
		// What gorilla's default handler does, but under writeMu.
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		s.closeSent = true
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(h.cfg.WriteTimeout))
		return nil
	})
	s.lastActive = time.Now()
	conn.SetPongHandler(func(string) error { s.touch(); return nil })
	conn.SetPingHandler(func(data string) error {
		s.touch()
		// What gorilla's default handler does: answer, ignoring a socket already closing.
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(h.cfg.WriteTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			return nil
		}
		return err
	})
	return s
}

func (s *Session) touch() { s.active.Store(true) }

// keepalive pings the socket when it has been quiet for interval, and closes it when it has been quiet for
// interval plus timeout: its peer is gone. The hub calls it for every socket from one ticker, so idle sockets
// need no timer of their own. Activity counts from the first tick that sees it, so a socket is pinged after
// between interval and interval plus one tick of quiet.
func (s *Session) keepalive(now time.Time, interval, timeout time.Duration) {
	if s.active.Swap(false) {
		s.lastActive = now
	}
	quiet := now.Sub(s.lastActive)
	switch {
	case quiet >= interval+timeout:
		s.logger.Info("closing a socket whose peer stopped answering pings", zap.Duration("quiet", quiet))
		metrics.slowCloses.WithLabelValues("dead_peer").Inc()
		s.peerGone.Store(true)
		s.conn.Close()
	case quiet >= interval:
		s.conn.WriteControl(websocket.PingMessage, nil, now.Add(s.hub.cfg.WriteTimeout))
	}
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
	s.logger.Info("connection closed", zap.Duration("duration", time.Since(start)), zap.Uint64("requests", requests),
		zap.Uint64("frames_sent", s.framesSent))
}

// keptReadBuffer is the largest read buffer a session keeps between frames; a larger frame's buffer is dropped
// after use, so that one big frame does not stay allocated for an idle socket.
const keptReadBuffer = 64 << 10

func (s *Session) readLoop() (requests uint64) {
	// One buffer for every frame (gorilla's ReadMessage would allocate one each): decoding copies what it keeps.
	var buf bytes.Buffer
	for {
		// Binary frames are read like text: the original parsed whatever arrived as JSON.
		buf.Reset()
		if buf.Cap() > keptReadBuffer {
			buf = bytes.Buffer{}
		}
		_, r, err := s.conn.NextReader()
		if err == nil {
			_, err = buf.ReadFrom(r)
		}
		frame := buf.Bytes()
		s.touch()
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
		metrics.framesIn.Inc()
		metrics.bytesIn.Add(float64(len(frame)))
		s.handle(frame)
	}
}

// frameIDs numbers every frame the server sends, process-wide: a broadcast frame, encoded once for many sockets,
// then carries ids unique within each of them.
var frameIDs atomic.Uint64

// reserveFrameIDs returns the first of n consecutive frame ids.
func reserveFrameIDs(n int) uint64 { return frameIDs.Add(uint64(n)) - uint64(n) + 1 }

func (s *Session) nextFrameID() uint64 { return reserveFrameIDs(1) }

func (s *Session) reply(req *protocol.Request, payload any) {
	s.send(dataFrame(protocol.Reply(s.nextFrameID(), req, payload)))
}

func (s *Session) replyError(req *protocol.Request, perr *protocol.Error) {
	s.send(dataFrame(protocol.ErrorReply(s.nextFrameID(), req, perr)))
}

// send queues a frame for the writer, waiting while the queue is full (in frames or in bytes). It reports false
// when the writer has ended and the frame was dropped.
func (s *Session) send(f outFrame) bool {
	return s.sendCtx(context.Background(), f)
}

// sendCtx is send for senders that must also give up when ctx ends (a subscription whose generation ended).
func (s *Session) sendCtx(ctx context.Context, f outFrame) bool {
	if !s.queued.take(ctx, s.writerOut, f.size) {
		return false
	}
	select {
	case s.out <- f:
		metrics.queuedBytes.Add(float64(f.size))
		return true
	case <-s.writerOut:
	case <-ctx.Done():
	}
	s.queued.give(f.size)
	return false
}

// offer queues a frame only if the queue has room; a broadcast never waits for one socket.
func (s *Session) offer(f outFrame) bool {
	if !s.queued.tryTake(f.size) {
		return false
	}
	select {
	case s.out <- f:
		metrics.queuedBytes.Add(float64(f.size))
		return true
	default:
		s.queued.give(f.size)
		return false
	}
}

// closeTooSlow closes a socket that cannot keep up with its broadcast subscription: 1013, try again later (IANA
// WebSocket close code registry).
const closeTooSlow = websocket.CloseTryAgainLater

// closeReasons are the close frames' reason texts.
var closeReasons = map[int]string{
	websocket.CloseNormalClosure:  "",
	websocket.CloseGoingAway:      "server shutting down",
	websocket.CloseServiceRestart: "server configuration reloaded, reconnect",
	closeTooSlow:                  "too slow for a broadcast subscription, reconnect",
}

// shutdown asks the session to end with the given close code; run does the rest.
func (s *Session) shutdown(code int) {
	s.closeCode.Store(int32(code))
	s.cancel()
}
