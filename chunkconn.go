package wskafka

import (
	"bufio"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// readChunk is how much one read(2) of a WebSocket connection may take. gorilla reads through the 4 KiB
// bufio.Reader net/http hands over with the hijacked connection, one system call per 4 KiB: a socket publishing
// 100-byte messages at full speed spent a sixth of Caddy's CPU reading (BENCHMARKS.md, "Produce").
const readChunk = 64 << 10

// readChunks lends connections the memory one read(2) fills, from the read until the bytes are handed on.
var readChunks = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// chunkedConn is a TCP connection read readChunk bytes at a time into a chunk borrowed from readChunks, so that
// a busy socket makes few system calls while a quiet one holds no more memory than before: the chunk is taken
// only once the socket is readable (a read waiting for data holds none) and given back as soon as its last byte
// is read. A reader that stops with more than a bufio.Reader's worth unread keeps its chunk until it reads on:
// the session is then held by backpressure, with the kernel's socket buffer full behind it anyway.
//
// Writes go straight to the embedded *net.TCPConn, which keeps net.Buffers' writev(2) for the writer.
type chunkedConn struct {
	*net.TCPConn
	raw   syscall.RawConn
	chunk *[]byte // borrowed while it holds bytes not yet read: (*chunk)[next:end]
	next  int
	end   int
	// frames is the reader gorilla reads this connection's frames through, once the upgrade has handed it over
	// (see hijacker.Hijack); the session reads small frames from it itself.
	frames *bufio.Reader
}

// newChunkedConn wraps conn, or returns it as it is when it is not a plain TCP connection (TLS reads whole
// records into a buffer of its own).
func newChunkedConn(conn net.Conn) net.Conn {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return conn
	}
	return &chunkedConn{TCPConn: tcp, raw: raw}
}

// Read implements io.Reader, with the semantics of net.Conn's: io.EOF once the peer has shut its side, errors
// as *net.OpError.
func (c *chunkedConn) Read(p []byte) (int, error) {
	if c.chunk == nil {
		if len(p) >= readChunk {
			return c.TCPConn.Read(p) // a copy through the chunk would save no system call
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*c.chunk)[c.next:c.end])
	c.consumed(n)
	return n, nil
}

// fill waits until the socket is readable and reads what it holds into a borrowed chunk.
func (c *chunkedConn) fill() error {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		chunk := readChunks.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *chunk)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			readChunks.Put(chunk)
			return false // RawConn.Read waits for the poller (and the read deadline), then calls again
		}
		if n > 0 {
			c.chunk, c.next, c.end = chunk, 0, n
		} else {
			readChunks.Put(chunk)
		}
		return true
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return io.EOF
	}
	return nil
}

// consumed marks n more bytes of the chunk read, and gives the chunk back once all are.
func (c *chunkedConn) consumed(n int) {
	if c.next += n; c.next == c.end {
		readChunks.Put(c.chunk)
		c.chunk = nil
	}
}

// FrameReader implements bridge.FrameReaderConn: nil when gorilla was not handed a reader of ours.
func (c *chunkedConn) FrameReader() *bufio.Reader { return c.frames }

// WriteTo implements io.WriterTo. Without it, io.Copy from the connection would use the embedded TCPConn's,
// which reads the socket directly and would skip the bytes the chunk still holds.
func (c *chunkedConn) WriteTo(w io.Writer) (int64, error) {
	var written int64
	if c.chunk != nil {
		n, err := w.Write((*c.chunk)[c.next:c.end])
		written += int64(n)
		c.consumed(n)
		if err != nil {
			return written, err
		}
		if c.chunk != nil {
			return written, io.ErrShortWrite
		}
	}
	n, err := c.TCPConn.WriteTo(w)
	return written + n, err
}
