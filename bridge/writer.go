package bridge

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// A session's writer encodes its data frames itself and writes them straight to the connection: when frames have
// queued up behind the one it takes (a broadcast reaching a thousand sockets, a peer reading slowly), it writes
// them all with one call, one system call on a plain socket and one TLS record behind HTTPS. Writing each frame
// on its own through gorilla cost a system call per delivery: 60% of Caddy's CPU when broadcasting 100,000
// deliveries a second. The more the writer falls behind, the more it gathers per call. Control frames (ping,
// pong, close) stay gorilla's WriteControl; every write to the connection is one call, so one never lands inside
// another. Frames go out uncompressed: the upgrader does not offer permessage-deflate (RFC 7692), so no peer
// expects otherwise.

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

// writeLoop is the only goroutine that writes data frames. After a failed write it keeps draining the queue, so
// that senders never block on a dead socket, until stopWriter.
func (s *Session) writeLoop() {
	defer close(s.writerOut)
	for {
		select {
		case f := <-s.out:
			s.writeQueued(f)
		case <-s.writerEnd:
			for {
				select {
				case f := <-s.out:
					s.writeQueued(f)
				default:
					if !s.writeFailed() && !s.peerGone.Load() {
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

// writeFailed reports whether a write failed: frames still queued are then dropped.
func (s *Session) writeFailed() bool {
	select {
	case <-s.writerBroken:
		return true
	default:
		return false
	}
}

// writeQueued writes first and the frames queued behind it, as few calls as coalesceBytes allows.
func (s *Session) writeQueued(first outFrame) {
	var room [outQueueFrames + 1]outFrame
	frames := append(room[:0], first)
	size := first.size
gather:
	for size < coalesceBytes && len(frames) < len(room) {
		select {
		case f := <-s.out:
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
	if s.writeFailed() {
		return
	}
	if err := s.writeFrames(frames); err != nil {
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			metrics.slowCloses.WithLabelValues("write_timeout").Inc()
			s.logger.Info("closing a socket that took no data for write_timeout", zap.Duration("write_timeout", s.hub.cfg.WriteTimeout))
		}
		close(s.writerBroken)
		s.peerGone.Store(true)
		s.logger.Debug("socket write failed", zap.Error(err))
		s.cancel()
		return
	}
	s.framesSent += uint64(len(frames))
	metrics.framesOut.Add(float64(len(frames)))
	metrics.bytesOut.Add(float64(size))
	for _, f := range frames {
		if f.written != nil {
			f.written()
		}
	}
}

// writeFrames writes frames to the connection, gathered into as few writes of at most coalesceBytes as they fit
// in; a frame larger than that is written from its own memory.
func (s *Session) writeFrames(frames []outFrame) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closeSent {
		return websocket.ErrCloseSent
	}
	conn := s.conn.NetConn()
	conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout))
	bufp := coalesceBuffers.Get().(*[]byte)
	buf := (*bufp)[:0]
	defer func() { *bufp = buf[:0]; coalesceBuffers.Put(bufp) }()
	for _, f := range frames {
		framed := maxFrameHeader + len(f.data)
		if len(buf) > 0 && len(buf)+framed > coalesceBytes {
			if _, err := conn.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if framed > coalesceBytes {
			large := net.Buffers{appendFrameHeader(make([]byte, 0, maxFrameHeader), len(f.data)), f.data}
			if _, err := large.WriteTo(conn); err != nil {
				return err
			}
			continue
		}
		buf = append(appendFrameHeader(buf, len(f.data)), f.data...)
	}
	if len(buf) == 0 {
		return nil
	}
	_, err := conn.Write(buf)
	return err
}

// stopWriter lets the writer send what is queued and the close frame, and waits for it.
func (s *Session) stopWriter() {
	close(s.writerEnd)
	<-s.writerOut
}
