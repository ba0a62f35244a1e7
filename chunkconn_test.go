package wskafka

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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

// The upgrade hands gorilla a chunked connection behind a small reader, which the session may read frames from
// too, unless net/http's reader already holds bytes the client sent after its request: those are kept, for gorilla
// to refuse the upgrade, and the session reads nothing itself.
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
				shared   bool // the connection's FrameReader is the reader handed over
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
				chunked, _ := conn.(*chunkedConn)
				got <- hijacked{conn, brw.Reader.Size(), string(early), chunked != nil && chunked.FrameReader() == brw.Reader}
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
			if wantShared := tt.after == ""; h.shared != wantShared {
				t.Errorf("got the reader shared with the session %v, want %v", h.shared, wantShared)
			}
		})
	}
}

// maskedFrame encodes one client frame (RFC 6455 §5.2): first is the byte of FIN, RSV and opcode.
func maskedFrame(first byte, payload string) []byte {
	f := []byte{first}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	key := []byte{0x9e, 0x01, 0x5c, 0xe3}
	f = append(f, key...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i%4])
	}
	return f
}

// The session reads small frames from the connection's reader itself and leaves the others to gorilla, on the
// same reader: sent in one write, so that they sit in the reader together, small frames, pings, a fragmented
// message with a ping inside it, a frame larger than the reader, a binary frame and frames that are not requests
// are each answered, in order, and the pings ponged.
func TestFramesReadBySessionAndGorilla(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
	}
}`)
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dialing: %v (response %v)", err, resp)
	}
	pongs := make(chan string, 8)
	conn.SetPongHandler(func(data string) error { pongs <- data; return nil })
	c := newClient(t, conn)

	fragmented := `{"id":3,"t":"ping"}`
	var frames []byte
	for _, f := range [][]byte{
		maskedFrame(0x81, `{"id":1,"t":"ping"}`),
		maskedFrame(0x89, "a"),
		maskedFrame(0x81, `{"id":2,"t":"ping"}`),
		maskedFrame(0x01, fragmented[:7]),
		maskedFrame(0x89, "b"),
		maskedFrame(0x80, fragmented[7:]),
		maskedFrame(0x81, `{"id":4,"t":"ping","pad":"`+strings.Repeat("x", 3000)+`"}`),
		maskedFrame(0x82, `{"id":5,"t":"ping"}`),
		maskedFrame(0x81, `not json`),
		maskedFrame(0x81, `{"id":6,"t":"no such type"}`),
		maskedFrame(0x81, `{"id":7,"t":"ping"}`),
	} {
		frames = append(frames, f...)
	}
	if _, err := conn.NetConn().Write(frames); err != nil {
		t.Fatal(err)
	}
	want := []struct{ refid, code string }{
		{"1", ""}, {"2", ""}, {"3", ""}, {"4", ""}, {"5", ""}, {"", "invalid_json"}, {"6", "unknown_type"}, {"7", ""},
	}
	for _, w := range want {
		var r reply
		if err := json.Unmarshal(c.next(), &r); err != nil {
			t.Fatal(err)
		}
		code := ""
		if r.S != nil && *r.S != 0 {
			code = r.errorCode()
		}
		if got := strings.Trim(string(r.RefID), `"`); got != w.refid || code != w.code {
			t.Fatalf("got a reply to %q with error %q, want one to %q with error %q", got, code, w.refid, w.code)
		}
	}
	// Only the latest ping needs an answer (RFC 6455 §5.5.3): "a" may have been answered by "b"'s pong.
	for got := ""; got != "b"; {
		select {
		case got = <-pongs:
			if got != "a" && got != "b" {
				t.Fatalf("got pong %q, want \"a\" or \"b\"", got)
			}
		case <-time.After(waitLimit):
			t.Fatal(`no pong to ping "b"`)
		}
	}
}
