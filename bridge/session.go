package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
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
// many sockets), of size bytes. written, when set, runs once the frame is on the socket, on the goroutine that
// wrote it (the writer, or the sender writing through); it must not block nor take a lock its sender holds.
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

// Session is one WebSocket connection: one goroutine reads, a writer that runs only while something is due owns
// every write (data frames, pings, pongs, the close frame), a Publisher batches publishes, requests that wait on Kafka run on the session's
// lane, and at most one Subscription delivers notifications.
type Session struct {
	hub    *Hub
	conn   *websocket.Conn
	num    uint64
	client Client

	// ctx is the session's work against Kafka (requests, the subscription): it ends when the peer has gone, or
	// once the server's close frame is out and nothing more can be answered.
	ctx    context.Context
	cancel context.CancelFunc

	out     chan outFrame
	queued  byteBudget // bytes of the frames in out and being written
	control control
	// The writer runs only while something is due (see kick); writerMu guards when it runs.
	writerMu      sync.Mutex
	writerRunning bool
	writerKicked  bool          // something became due while it ran: it looks again before it ends
	writerStop    bool          // set by stopWriter: send what is queued and the close frame, then end for good
	writerOut     chan struct{} // closed when the writer has ended for good
	// dataEnd is closed by the writer once it writes no more data frames: a write failed, the close frame went out,
	// or it returned. Frames still queued are then dropped, never written, and senders give up.
	dataEnd chan struct{}
	// dataOver says dataEnd is closed, and pending counts the frames in out or being put there (whoever takes one
	// out counts it off): every write that never waits asks both, and reading them in the session, whose memory
	// it touches anyway, costs a delivery less than looking into each channel's own (BENCHMARKS.md, "The send
	// that never waits").
	dataOver  atomic.Bool
	pending   atomic.Int32
	closeCode atomic.Int32 // the server's close code (RFC 6455 §7.4.1); 1000 unless shutdown set one
	peerClose atomic.Int32 // the code of the peer's close frame, once it sent one
	peerGone  atomic.Bool  // the socket failed: send no close frame
	// framesSent counts the frames written; the writer's own, read once it has ended.
	framesSent uint64
	// raw is the socket's descriptor on a plain TCP connection (nil behind TLS), for writes that never wait
	// (writeThrough).
	raw syscall.RawConn
	// rest is the end of a frame that writeThrough began and the socket's buffer had no room for, and restFrame
	// that frame: the writer writes rest before anything else. Both belong to whoever is the writer.
	rest      []byte
	restFrame outFrame

	decoder   protocol.Decoder // the read loop's
	publisher *Publisher
	// active says the client sent something, pongs included, since the hub's last keepalive tick. Setting a flag
	// costs the read loop less than reading the clock for every frame (4% of Caddy's CPU when publishing).
	active atomic.Bool
	// handling says the read loop is busy with a frame rather than waiting for one: a full publish buffer or a
	// full lane holds it (TCP backpressure), and the pongs it does not read meanwhile are not the peer's fault.
	handling atomic.Bool
	// lastActive is the keepalive tick that last found the session active (or its start); only the hub's
	// keepalive goroutine uses it.
	lastActive time.Time
	// limiter bounds publishes; made on the first publish, so idle sockets carry none.
	limiter *publishLimiter

	// reqMu guards the accounting of requests read and not yet answered, and the lane.
	reqMu sync.Mutex
	// unanswered counts the requests read before the close frame was decided on and still being handled (a
	// publish until the Publisher has buffered it: from then on it counts it).
	unanswered int
	// closeDecided is set once nothing read before it is unanswered, or close_timeout passed: the close frame may
	// go. Requests read later are still handled; their answers are dropped.
	closeDecided bool
	lane         chan laneRequest // made when the lane gets work, dropped when it has none
	laneLen      int              // requests on the lane, running or waiting
	laneRunning  sync.WaitGroup

	// closeMu guards the start of a server-initiated close, so that it starts once and never after run has ended.
	closeMu  sync.Mutex
	closing  bool // the server is closing the session
	ended    bool // run has ended
	closerUp sync.WaitGroup

	subMu sync.Mutex
	sub   subscription // nil when not subscribed
	// subClosed refuses new subscriptions: the session is closing.
	subClosed bool
}

// subscription is what a session holds while subscribed: a consumer-group member or broadcast memberships.
type subscription interface {
	// topics lists the subscribed topics, in the order the client gave them.
	topics() []string
	// stop ends the subscription, waiting at most timeout for it to let go of Kafka.
	stop(timeout time.Duration)
}

func newSession(h *Hub, conn *websocket.Conn, num uint64, client Client) *Session {
	s := &Session{
		hub:       h,
		conn:      conn,
		num:       num,
		client:    client,
		queued:    byteBudget{max: h.cfg.Limits.MaxQueueBytes},
		out:       make(chan outFrame, outQueueFrames),
		writerOut: make(chan struct{}),
		dataEnd:   make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(h.ctx)
	if sc, ok := conn.NetConn().(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	s.closeCode.Store(websocket.CloseNormalClosure)
	s.decoder.SetNamespace(client.Namespace)
	s.publisher = newPublisher(h.kafka, h.cfg.Producer, h.cfg.RequestTimeout, s.published)
	// A larger frame makes gorilla close the socket with 1009, message too big (RFC 6455 §7.4.1).
	conn.SetReadLimit(h.cfg.Limits.MaxFrameBytes)
	// gorilla calls these handlers on the read loop; none of them writes: the writer answers (RFC 6455 §5.5).
	conn.SetCloseHandler(func(code int, _ string) error {
		s.peerClose.Store(int32(code))
		s.control.close()
		s.kick()
		return nil
	})
	s.lastActive = time.Now()
	conn.SetPongHandler(func(string) error { s.touch(); return nil })
	conn.SetPingHandler(func(data string) error {
		s.touch()
		s.control.pong(data)
		s.kick()
		return nil
	})
	return s
}

func (s *Session) touch() { s.active.Store(true) }

// keepalive pings the socket when it has been quiet for interval, and closes it when it has been quiet for
// interval plus timeout: its peer is gone. The hub calls it for every socket from one ticker, so idle sockets
// need no timer of their own; it never waits for a socket (the writer sends the ping). Activity counts from the
// first tick that sees it, so a socket is pinged after between interval and interval plus one tick of quiet. A
// session whose read loop is held by the server (backpressure) is not quiet: it is not reading.
func (s *Session) keepalive(now time.Time, interval, timeout time.Duration) {
	if s.active.Swap(false) || s.handling.Load() {
		s.lastActive = now
	}
	quiet := now.Sub(s.lastActive)
	switch {
	case quiet >= interval+timeout:
		s.logger().Info("closing a socket whose peer stopped answering pings", zap.Duration("quiet", quiet))
		metrics.slowCloses.WithLabelValues("dead_peer").Inc()
		s.peerGone.Store(true)
		_ = s.conn.Close()
	case quiet >= interval:
		s.control.ping()
		s.kick()
	}
}

// logger is the session's logger, made when the session logs: a zap logger With fields keeps its own encoded
// copy of them (about a kilobyte), too much to hold for every idle socket of a route.
func (s *Session) logger() *zap.Logger {
	fields := []zap.Field{zap.Uint64("ws", s.num), zap.String("remote", s.conn.RemoteAddr().String())}
	if s.client.Identity != "" {
		fields = append(fields, zap.String("identity", s.client.Identity))
	}
	return s.hub.logger.With(fields...)
}

// debug logs at debug level, making the session's logger only when that level is on: a publish that fails
// while Kafka is down logs here once per publish.
func (s *Session) debug(msg string, fields ...zap.Field) {
	if s.hub.logger.Core().Enabled(zap.DebugLevel) {
		s.logger().Debug(msg, fields...)
	}
}

// run serves the session until the socket closes, in this order: every request read is handled and its
// publishes flushed (the answers reach the client unless it has gone), the subscription leaves its group, the
// writer sends what is queued and the close frame (or the answer to the peer's), the connection closes. Every
// part has ended when it returns.
func (s *Session) run() {
	start := time.Now()
	s.logger().Info("connection opened")
	requests := s.readLoop()
	// The peer has gone or closed (or the server's close is complete): waits on Kafka have no one to answer.
	s.cancel()
	s.laneRunning.Wait()
	// Flush what the client published before it left: its publishes must reach Kafka.
	s.publisher.Close(s.hub.cfg.CloseTimeout)
	s.stopSubscription()
	s.closeMu.Lock()
	s.ended = true
	s.closeMu.Unlock()
	s.closerUp.Wait()
	s.stopWriter()
	_ = s.conn.Close()
	s.logger().Info("connection closed", zap.Duration("duration", time.Since(start)), zap.Uint64("requests", requests),
		zap.Uint64("frames_sent", s.framesSent))
}

// readBuffers lend sessions the buffer a frame is read into, from its first byte until it has been handled
// (decoding copies what it keeps): an idle socket holds none, and gorilla's ReadMessage would allocate one a frame.
var readBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// keptReadBuffer is the largest read buffer given back to readBuffers; a larger frame's is dropped after use, so
// that a few big frames do not keep big buffers allocated.
const keptReadBuffer = 64 << 10

func (s *Session) readLoop() (requests uint64) {
	// The connection's reader, when the loop may read small frames from it itself rather than through gorilla.
	var frames *bufio.Reader
	if fc, ok := s.conn.NetConn().(FrameReaderConn); ok {
		frames = fc.FrameReader()
	}
	for {
		s.handling.Store(false)
		var frame []byte
		var small int // the bytes of a small frame, read without gorilla, to discard once handled
		var buf *bytes.Buffer
		var err error
		if frames != nil {
			frame, small, err = readSmallFrame(frames, s.hub.cfg.Limits.MaxFrameBytes)
		}
		if small == 0 && err == nil {
			// Binary frames are read like text: the original parsed whatever arrived as JSON.
			var r io.Reader
			_, r, err = s.conn.NextReader()
			buf = readBuffers.Get().(*bytes.Buffer)
			if err == nil {
				_, err = buf.ReadFrom(r)
			}
			frame = buf.Bytes()
		}
		s.handling.Store(true)
		s.touch()
		if err != nil {
			if buf != nil {
				giveReadBuffer(buf)
			}
			// A close frame was recorded by the close handler; any other error after the server's close frame is
			// the end of the wait for the peer's. Otherwise the socket failed and gets no close frame.
			var closeErr *websocket.CloseError
			if !errors.As(err, &closeErr) && !s.closeFrameOut() {
				s.peerGone.Store(true)
				s.debug("socket read failed", zap.Error(err))
			}
			return requests
		}
		requests++
		metrics.framesIn.Inc()
		metrics.bytesIn.Add(float64(len(frame)))
		s.handle(frame)
		if small > 0 {
			_, _ = frames.Discard(small) // the frame's bytes are buffered: discarding them cannot fail
		} else {
			giveReadBuffer(buf)
		}
	}
}

func giveReadBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= keptReadBuffer {
		buf.Reset()
		readBuffers.Put(buf)
	}
}

// frameIDs numbers every frame the server sends, process-wide: a broadcast frame, encoded once for many sockets,
// then carries ids unique within each of them.
var frameIDs atomic.Uint64

// reserveFrameIDs returns the first of n consecutive frame ids.
func reserveFrameIDs(n int) uint64 { return frameIDs.Add(uint64(n)) - uint64(n) + 1 }

func (s *Session) nextFrameID() uint64 { return reserveFrameIDs(1) }

func (s *Session) reply(req *protocol.Request, payload any) {
	s.send(dataFrame(protocol.Reply(s.nextFrameID(), req, s.visiblePayload(payload))))
}

// sendAssigned tells the client which partitions it now reads, each with the offset it starts from.
func (s *Session) sendAssigned(starts map[string]map[int]int64) {
	p := make(map[string]map[int32]int64, len(starts))
	for topic, parts := range starts {
		visible := s.visible(topic)
		p[visible] = make(map[int32]int64, len(parts))
		for part, offset := range parts {
			p[visible][int32(part)] = offset
		}
	}
	s.send(dataFrame(protocol.Assigned(s.nextFrameID(), p)))
}

func (s *Session) replyError(req *protocol.Request, perr *protocol.Error) {
	s.send(dataFrame(protocol.ErrorReply(s.nextFrameID(), req, s.visibleError(perr))))
}

// send queues a frame for the writer, waiting while the queue is full (in frames or in bytes). It reports false
// when the writer writes no more data frames and the frame was dropped.
func (s *Session) send(f outFrame) bool {
	return s.sendCtx(context.Background(), f)
}

// dataEnded is closed once the writer writes no more data frames.
func (s *Session) dataEnded() <-chan struct{} { return s.dataEnd }

// sendCtx is send for senders that must also give up when ctx ends (a subscription whose generation ended).
func (s *Session) sendCtx(ctx context.Context, f outFrame) bool {
	if s.writeThrough(f) {
		return true
	}
	if !s.queued.take(ctx, s.dataEnd, f.size) {
		return false
	}
	s.pending.Add(1)
	select {
	case s.out <- f:
		metrics.queuedBytes.Add(float64(f.size))
		s.kick()
		return true
	case <-s.dataEnd:
	case <-ctx.Done():
	}
	s.pending.Add(-1)
	s.queued.give(f.size)
	return false
}

// offer queues a frame only if the queue has room; a broadcast never waits for one socket.
func (s *Session) offer(f outFrame) bool {
	if s.writeThrough(f) {
		return true
	}
	if !s.queued.tryTake(f.size) {
		return false
	}
	s.pending.Add(1)
	select {
	case s.out <- f:
		metrics.queuedBytes.Add(float64(f.size))
		s.kick()
		return true
	default:
		s.pending.Add(-1)
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
	CloseCredentialExpired:        "credential expired, reconnect with a new one",
}

// closeAgeReason is the reason text of CloseCredentialExpired for a socket that reached max_connection_age.
const closeAgeReason = "connection reached its largest age, reconnect with a fresh credential"

// closeReason is the reason text of the server's close frame with code.
func (s *Session) closeReason(code int) string {
	if code == CloseCredentialExpired && s.client.ClosesAtAge {
		return closeAgeReason
	}
	return closeReasons[code]
}

// shutdown closes the session from the server's side with the given close code, at once and once: a later call
// changes nothing. See closeFromServer.
func (s *Session) shutdown(code int) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closing || s.ended {
		return
	}
	s.closing = true
	s.closeCode.Store(int32(code))
	s.closerUp.Add(1)
	go s.closeFromServer()
}

// settlePoll is how often a closing session looks whether everything read has been answered. Closing is rare
// and short, so looking is simpler than being told.
const settlePoll = 5 * time.Millisecond

// closeFromServer closes the session without losing what the client sent (RFC 6455 §7.1.2: the server starts
// the closing handshake and waits for the client's close frame):
//  1. no new subscription; publishes flush at once;
//  2. once every request read so far has been answered (at most close_timeout), the close frame is decided on:
//     the writer sends what is queued, then the close frame;
//  3. the read loop goes on until the client's close frame (at most close_timeout): what arrives meanwhile is
//     still published, unanswered, and failures are logged; acknowledgements still count.
//
// The subscription ends last, in run, with a commit of what the socket took or the client acknowledged until its
// close frame: frames queued after the close frame are dropped, uncommitted, for the partitions' next owner.
func (s *Session) closeFromServer() {
	defer s.closerUp.Done()
	timeout := s.hub.cfg.CloseTimeout
	s.subMu.Lock()
	s.subClosed = true
	s.subMu.Unlock()
	s.publisher.Hurry()
	deadline := time.Now().Add(timeout)
	poll := time.NewTicker(settlePoll)
	// A writer that writes no more (its socket failed) can send no answer: nothing is worth waiting for.
	for !s.decideClose(s.closeFrameOut() || time.Now().After(deadline)) {
		select {
		case <-poll.C:
		case <-s.dataEnd:
		}
	}
	poll.Stop()
	s.cancel()
	s.control.close()
	s.kick()
	select {
	case <-s.dataEnd:
	case <-s.writerOut:
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
}

// decideClose decides on the close frame when nothing read is unanswered, or when force says to stop waiting.
func (s *Session) decideClose(force bool) bool {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if !force && (s.unanswered > 0 || s.publisher.Unsettled() > 0) {
		return false
	}
	s.closeDecided = true
	return true
}

// closeFrameOut reports whether the server's close frame has gone out (or never will: the writer has stopped).
func (s *Session) closeFrameOut() bool { return s.dataOver.Load() }
