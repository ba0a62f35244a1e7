package bridge

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// A session's writer encodes its data frames itself and writes them straight to the connection: when frames have
// queued up behind the one it takes (a broadcast reaching a thousand sockets, a peer reading slowly), it writes
// them all with one call, one system call on a plain socket and one TLS record behind HTTPS. Writing each frame
// on its own through gorilla cost a system call per delivery: 60% of Caddy's CPU when broadcasting 100,000
// deliveries a second. The more the writer falls behind, the more it gathers per call.
//
// The writer runs only while something is due (see kick): 19,000 idle sockets with a parked writer goroutine each
// held 4 KiB of stack apiece for nothing. Only the writer writes the connection, control frames included (a
// sender writing through, below, takes the writer's place for that write): a frame larger than coalesceBytes goes
// out in more than one write where the connection cannot write vectors (every *tls.Conn), and a ping written by
// another goroutine between them would land inside it. Pings (asked for by the hub's
// keepalive), pongs (the read loop sees the peer's pings) and the close frame are therefore requests to the
// writer, which it sends before the data frames of its next write; nobody ever waits for them. Frames go out
// uncompressed: the upgrader does not offer permessage-deflate (RFC 7692), so no peer expects otherwise.

// A frame that finds the socket with nothing in the way (no writer running, nothing queued, no control frame due)
// is written by the goroutine that sends it, on a plain TCP connection, with one write that never waits
// (writeThrough): a broadcast reaching a thousand sockets otherwise started a writer goroutine per socket and
// record and set a write deadline for each, and one record to 19,000 sockets waited for 19,000 goroutines to be
// scheduled (BENCHMARKS.md, "Write-through"). Whatever the socket's buffer does not take then is the writer's to
// send first (Session.rest), with its deadline, so a slow peer is treated as before. Behind TLS (a *tls.Conn
// offers no descriptor) every frame goes through the writer.

// coalesceBytes bounds what one write gathers; a frame larger than that is written on its own, from its own
// memory.
const coalesceBytes = 64 << 10

// maxFrameHeader is the longest header of an unmasked frame (RFC 6455 §5.2).
const maxFrameHeader = 10

// coalesceBuffers lend the writers their buffers only while they write: idle sockets hold none. A buffer never
// grows past its capacity: what would not fit is written first.
var coalesceBuffers = sync.Pool{New: func() any { b := make([]byte, 0, coalesceBytes); return &b }}

// appendFrameHeader appends the header of a final, unmasked text frame of n payload bytes (RFC 6455 §5.2), as a
// server sends it.
func appendFrameHeader(dst []byte, n int) []byte {
	const finText = 0x80 | websocket.TextMessage
	switch {
	case n < 126:
		return append(dst, finText, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, finText, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, finText, 127), uint64(n))
	}
}

// control holds the control frames due, for the writer.
type control struct {
	mu      sync.Mutex
	pingDue bool
	// pongDue and pongData: the payload of the latest ping; only the latest needs an answer (RFC 6455 §5.5.3).
	pongDue  bool
	pongData []byte
	closeDue bool
}

func (c *control) ping() {
	c.mu.Lock()
	c.pingDue = true
	c.mu.Unlock()
}

func (c *control) pong(data string) {
	c.mu.Lock()
	c.pongDue = true
	c.pongData = append(c.pongData[:0], data...)
	c.mu.Unlock()
}

func (c *control) close() {
	c.mu.Lock()
	c.closeDue = true
	c.mu.Unlock()
}

// due reports whether a ping or a pong is due, and whether the close frame is.
func (c *control) due() (frames, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pingDue || c.pongDue, c.closeDue
}

// appendDue appends the ping and pong frames due to dst and reports whether the close frame is due.
func (c *control) appendDue(dst []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pongDue {
		dst = appendControlFrame(dst, websocket.PongMessage, c.pongData)
		c.pongDue = false
	}
	if c.pingDue {
		dst = appendControlFrame(dst, websocket.PingMessage, nil)
		c.pingDue = false
	}
	return dst, c.closeDue
}

// appendControlFrame appends a control frame (RFC 6455 §5.5: final, unmasked, at most 125 payload bytes, which
// gorilla checks of the pings it reads).
func appendControlFrame(dst []byte, opcode int, payload []byte) []byte {
	return append(append(dst, 0x80|byte(opcode), byte(len(payload))), payload...)
}

// kick has the writer look at what is due: it starts the writer when none is running, or tells the running one
// to look again before it ends. Whoever queues a frame or makes a control frame due kicks; nobody waits.
func (s *Session) kick() {
	s.writerMu.Lock()
	defer s.writerMu.Unlock()
	if s.writerRunning {
		s.writerKicked = true
		return
	}
	s.writerRunning = true
	go s.writeBurst()
}

// writeThrough writes f at once on the calling goroutine, as the writer for one write that never waits, when
// nothing is in the way. It reports whether it took f: written, or begun with its rest left to the writer (which
// it then starts). Otherwise the caller queues f.
func (s *Session) writeThrough(f outFrame) bool {
	if s.raw == nil || maxFrameHeader+len(f.data) > coalesceBytes {
		return false
	}
	s.writerMu.Lock()
	if s.writerRunning || s.writerStop {
		s.writerMu.Unlock()
		return false
	}
	s.writerRunning = true
	s.writerMu.Unlock()

	taken := s.tryWrite(f)

	s.writerMu.Lock()
	defer s.writerMu.Unlock()
	if s.writerKicked || s.writerStop || s.rest != nil {
		go s.writeBurst() // writerRunning stays set: the writer takes over
		return taken
	}
	s.writerRunning = false
	return taken
}

// tryWrite is writeThrough's write, by the writer's holder: f goes out only if nothing queued or due would have
// gone before it.
func (s *Session) tryWrite(f outFrame) bool {
	// A frame queued but not yet kicked is ahead of f: its sender kicks the writer next.
	if s.pending.Load() > 0 || s.writeFailed() || s.peerClose.Load() != 0 {
		return false
	}
	if controls, closing := s.control.due(); controls || closing {
		return false
	}
	bufp := coalesceBuffers.Get().(*[]byte)
	defer coalesceBuffers.Put(bufp)
	buf := append(appendFrameHeader((*bufp)[:0], len(f.data)), f.data...)
	n := writeNoWait(s.raw, buf)
	switch {
	case n == 0:
		// No room, the deadline of an earlier write passed, or the socket failed: the writer, with a deadline of
		// its own, finds out which.
		return false
	case n < len(buf):
		s.rest, s.restFrame = append([]byte(nil), buf[n:]...), f
	default:
		s.wrote(f)
	}
	return true
}

// writeNoWait writes what the socket's buffer takes of b now, and reports how much that was. Three choices
// here are for the CPU a delivery costs, where one write per socket and record is most of it (BENCHMARKS.md,
// "The send that never waits"):
//   - send(2) with MSG_DONTWAIT rather than write(2): the socket call skips the file layer (vfs_write and
//     fdget_pos were 7% of Caddy's CPU broadcasting 100,000 deliveries a second); MSG_NOSIGNAL makes a peer gone
//     an EPIPE, as the runtime would have taken the SIGPIPE to mean.
//   - a raw system call, without telling the scheduler: a send that never waits returns within microseconds, and
//     announcing each one kept the runtime's monitor thread waking to look at it.
//   - RawConn.Control rather than RawConn.Write: Control holds the descriptor open (a Close waits for it, so the
//     number is never another socket's), without the poller's write lock or deadline check. Whoever writes holds
//     the writer's place (writeThrough), so nothing else writes meanwhile, and the deadline left by the writer's
//     last burst, passed once write_timeout went by, would otherwise refuse every write that never waits.
func writeNoWait(raw syscall.RawConn, b []byte) (n int) {
	_ = raw.Control(func(fd uintptr) {
		for n < len(b) {
			m, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b[n:]))),
				uintptr(len(b)-n), syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL, 0, 0)
			switch {
			case errno == 0 && m > 0:
				n += int(m)
			case errno == syscall.EINTR:
			default:
				return // EAGAIN: no room; anything else: the writer finds out with a write of its own
			}
		}
	})
	return n
}

// wrote accounts for a frame on the socket.
func (s *Session) wrote(f outFrame) {
	s.framesSent++
	metrics.framesOut.Inc()
	metrics.bytesOut.Add(float64(f.size))
	if f.written != nil {
		f.written()
	}
}

// writeRest writes the end of a frame writeThrough began, before anything else may go.
func (s *Session) writeRest(conn net.Conn) error {
	if s.rest == nil {
		return nil
	}
	rest, f := s.rest, s.restFrame
	s.rest, s.restFrame = nil, outFrame{}
	if _, err := conn.Write(rest); err != nil {
		return err
	}
	s.wrote(f)
	return nil
}

// writeBurst is the writer: it writes until nothing is due, then ends, so that an idle socket has no goroutine
// (and no stack) for writing; the next kick starts it again. At most one runs at a time, and writes follow one
// another in order. After stopWriter it sends the close frame and ends for good: later kicks start nothing.
func (s *Session) writeBurst() {
	for {
		s.writerMu.Lock()
		s.writerKicked = false
		stop := s.writerStop
		s.writerMu.Unlock()
		if stop {
			s.writeClose()
			// What is still queued is dropped, its bytes given back.
			for found := true; found; {
				found, _ = s.writeQueued()
			}
			s.endData()
			close(s.writerOut)
			return // writerRunning stays set
		}
		for found := true; found; {
			var closing bool
			found, closing = s.writeQueued()
			if closing {
				s.writeClose()
			}
		}
		s.writerMu.Lock()
		if !s.writerKicked && !s.writerStop {
			s.writerRunning = false
			s.writerMu.Unlock()
			return
		}
		s.writerMu.Unlock()
	}
}

// endData marks the end of data frames: frames still queued are dropped.
func (s *Session) endData() {
	if !s.dataOver.Swap(true) {
		close(s.dataEnd)
	}
}

// writeFailed reports whether the writer writes no more data frames.
func (s *Session) writeFailed() bool { return s.closeFrameOut() }

// writeQueued writes the control frames due and the frames queued, as many as one write of coalesceBytes
// gathers; once the writer writes no more data it drops them. It reports whether it found anything to write or
// drop, and whether the close frame is due.
func (s *Session) writeQueued() (found, closing bool) {
	var room [outQueueFrames]outFrame
	frames := room[:0]
	var size int64
gather:
	for size < coalesceBytes && len(frames) < len(room) {
		select {
		case f := <-s.out:
			s.pending.Add(-1)
			frames = append(frames, f)
			size += f.size
		default:
			break gather
		}
	}
	defer func() {
		s.queued.give(size)
		metrics.queuedBytes.Sub(float64(size))
	}()
	found = len(frames) > 0 || s.rest != nil
	if s.writeFailed() {
		s.rest = nil
		return found, false
	}
	if s.peerClose.Load() != 0 {
		// The peer has closed and discards data from now on (RFC 6455 §1.4): its answer goes first, data not at all.
		return found, true
	}
	if controls, closing := s.control.due(); !found && !controls {
		return false, closing
	}
	closing, err := s.writeFrames(frames)
	if err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			metrics.slowCloses.WithLabelValues("write_timeout").Inc()
			s.logger().Info("closing a socket that took no data for write_timeout", zap.Duration("write_timeout", s.hub.cfg.WriteTimeout))
		}
		s.endData()
		s.peerGone.Store(true)
		s.debug("socket write failed", zap.Error(err))
		// The peer takes nothing: stop reading too, so the session ends.
		_ = s.conn.SetReadDeadline(time.Now())
		return true, false
	}
	s.framesSent += uint64(len(frames))
	metrics.framesOut.Add(float64(len(frames)))
	metrics.bytesOut.Add(float64(size))
	for _, f := range frames {
		if f.written != nil {
			f.written()
		}
	}
	return true, closing
}

// writeClose sends the close frame: the server's own after everything still queued, or the answer to the peer's
// at once (RFC 6455 §5.5.1: as soon as practical, echoing its code). A peer whose socket failed gets none.
func (s *Session) writeClose() {
	for found := s.peerClose.Load() == 0; found; {
		found, _ = s.writeQueued()
	}
	if s.writeFailed() {
		return
	}
	s.endData()
	if s.peerGone.Load() {
		return
	}
	var msg []byte
	switch code := int(s.peerClose.Load()); code {
	case 0:
		code = int(s.closeCode.Load())
		msg = websocket.FormatCloseMessage(code, s.closeReason(code))
	case websocket.CloseNoStatusReceived:
		// The peer's close frame had no code, so the answer has none either (RFC 6455 §7.1.5).
	default:
		msg = websocket.FormatCloseMessage(code, "")
	}
	conn := s.conn.NetConn()
	_ = conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
	// The peer's close is answered after the frame begun, never inside it.
	if err := s.writeRest(conn); err != nil {
		s.debug("writing the close frame", zap.Error(err))
		return
	}
	if _, err := conn.Write(appendControlFrame(nil, websocket.CloseMessage, msg)); err != nil {
		s.debug("writing the close frame", zap.Error(err))
	}
}

// writeFrames writes the ping and pong due and frames to the connection, gathered into as few writes of at most
// coalesceBytes as they fit in; a frame larger than that is written from its own memory. It reports whether the
// close frame is due.
func (s *Session) writeFrames(frames []outFrame) (closing bool, err error) {
	conn := s.conn.NetConn()
	_ = conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
	if err := s.writeRest(conn); err != nil {
		return false, err
	}
	bufp := coalesceBuffers.Get().(*[]byte)
	buf := (*bufp)[:0]
	defer func() { *bufp = buf[:0]; coalesceBuffers.Put(bufp) }()
	buf, closing = s.control.appendDue(buf)
	for _, f := range frames {
		framed := maxFrameHeader + len(f.data)
		if len(buf) > 0 && len(buf)+framed > coalesceBytes {
			if _, err := conn.Write(buf); err != nil {
				return closing, err
			}
			buf = buf[:0]
		}
		if framed > coalesceBytes {
			large := net.Buffers{appendFrameHeader(make([]byte, 0, maxFrameHeader), len(f.data)), f.data}
			if _, err := large.WriteTo(conn); err != nil {
				return closing, err
			}
			continue
		}
		buf = append(appendFrameHeader(buf, len(f.data)), f.data...)
	}
	if len(buf) == 0 {
		return closing, nil
	}
	_, err = conn.Write(buf)
	return closing, err
}

// stopWriter lets the writer send what is queued and the close frame, and waits for it.
func (s *Session) stopWriter() {
	s.writerMu.Lock()
	s.writerStop = true
	s.writerMu.Unlock()
	s.kick()
	<-s.writerOut
}
