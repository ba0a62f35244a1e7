package wskafka

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection: the accepted one chunked, and the dialled one.
func tcpPair(t *testing.T) (*chunkedConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c, ok := newChunkedConn(conn).(*chunkedConn)
	if !ok {
		t.Fatalf("got %T, want a *chunkedConn for a TCP connection", newChunkedConn(conn))
	}
	return c, peer
}

// pattern is n bytes that tell their positions apart.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	return b
}

// Whatever the reader's buffer, it gets every byte in order, io.EOF once the peer has shut its side, and the
// chunk goes back to the pool once its bytes are read.
func TestChunkedConnRead(t *testing.T) {
	for _, tt := range []struct {
		name string
		sent int // bytes the peer writes before closing
		buf  int // the reader's buffer
	}{
		{"nothing", 0, 4096},
		{"less than the reader's buffer", 100, 4096},
		{"a bufio.Reader's worth many times", 3*readChunk + 5, 4096},
		{"one byte at a time", 300, 1},
		{"buffers of a chunk or more read directly", 2*readChunk + 1, readChunk},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := tcpPair(t)
			want := pattern(tt.sent)
			go func() {
				_, _ = peer.Write(want) // a failed write shows as missing bytes
				_ = peer.Close()
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var got []byte
			p := make([]byte, tt.buf)
			for {
				n, err := c.Read(p)
				got = append(got, p[:n]...)
				if c.chunk != nil && c.next == c.end {
					t.Fatalf("got a chunk kept with nothing left in it, want it given back")
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("got error %v after %d bytes, want io.EOF after %d", err, len(got), tt.sent)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want the %d sent, in order", len(got), len(want))
			}
			if c.chunk != nil {
				t.Errorf("got a chunk held after EOF, want none")
			}
		})
	}
}

// A read waiting for data holds no chunk, and ends with the deadline's error as a net.Conn's read does.
func TestChunkedConnIdle(t *testing.T) {
	c, _ := tcpPair(t)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Read(make([]byte, 4096))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %d bytes and error %v, want 0 and a deadline error", n, err)
	}
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("got %T, want a net.Error that is a timeout", err)
	}
	if c.chunk != nil {
		t.Errorf("got a chunk held by an idle connection, want none")
	}
}

// io.Copy from a connection whose chunk still holds bytes gets those first, then the rest of the socket.
func TestChunkedConnWriteTo(t *testing.T) {
	c, peer := tcpPair(t)
	want := pattern(20000)
	if _, err := peer.Write(want); err != nil {
		t.Fatal(err)
	}
	_ = peer.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if _, err := io.Copy(&rest, c); err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest.Bytes()...); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want the %d sent, in order", len(got), len(want))
	}
}

// A connection that is not plain TCP (TLS, a listener wrapper's) is read as it is.
func TestChunkedConnOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer func() { _ = a.Close(); _ = b.Close() }()
	if got := newChunkedConn(a); got != a {
		t.Errorf("got %T, want the connection unwrapped", got)
	}
}

// The upgrade hands gorilla a chunked connection behind a small reader, unless net/http's reader already holds
// bytes the client sent after its request: those are kept, for gorilla to refuse the upgrade.
func TestHijackerReader(t *testing.T) {
	for _, tt := range []struct {
		name     string
		after    string // bytes the client sends right behind its request
		wantSize int
	}{
		{"nothing sent early", "", frameReadBuffer},
		{"data sent before the handshake completed", "early", 4096},
	} {
		t.Run(tt.name, func(t *testing.T) {
			type hijacked struct {
				conn     net.Conn
				size     int
				buffered string
			}
			got := make(chan hijacked, 1)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, brw, err := hijacker{w, http.NewResponseController(w)}.Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer func() { _ = conn.Close() }()
				early, _ := brw.Reader.Peek(brw.Reader.Buffered())
				got <- hijacked{conn, brw.Reader.Size(), string(early)}
			})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = client.Close() }()
			if _, err := client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + tt.after)); err != nil {
				t.Fatal(err)
			}
			var h hijacked
			select {
			case h = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler never ran")
			}
			if _, ok := h.conn.(*chunkedConn); !ok {
				t.Errorf("got a %T, want a *chunkedConn", h.conn)
			}
			if h.size != tt.wantSize || h.buffered != tt.after {
				t.Errorf("got a reader of %d bytes holding %q, want %d holding %q", h.size, h.buffered, tt.wantSize, tt.after)
			}
		})
	}
}
