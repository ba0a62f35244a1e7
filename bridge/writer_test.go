package bridge

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// writerSession upgrades one connection from a gorilla client and returns the server's session, not yet run, and
// the client's end.
func writerSession(t *testing.T) (*Session, *websocket.Conn) {
	return sessionWith(t, zap.NewNop(), Client{})
}

// queueSession is writerSession for tests that take the frames off the session's queue themselves: kicks start
// no writer, as if one were always running.
func queueSession(t *testing.T) *Session {
	s, _ := writerSession(t)
	s.writerRunning = true
	return s
}

// sessionWith is writerSession with the hub's logger and the client's identity.
func sessionWith(t *testing.T, logger *zap.Logger, client Client) (*Session, *websocket.Conn) {
	return sessionOn(t, httptest.NewServer, logger, client)
}

// sessionOn is sessionWith on a server newServer starts: httptest.NewTLSServer for a session behind TLS.
func sessionOn(t *testing.T, newServer func(http.Handler) *httptest.Server, logger *zap.Logger, client Client) (*Session, *websocket.Conn) {
	t.Helper()
	hub := &Hub{
		cfg:    Config{WriteTimeout: 5 * time.Second, CloseTimeout: time.Second, Limits: Limits{MaxQueueBytes: 1 << 20, MaxFrameBytes: 1 << 20}},
		logger: logger,
		ctx:    context.Background(),
	}
	sessions := make(chan *Session, 1)
	server := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		sessions <- newSession(hub, conn, 1, client)
	}))
	t.Cleanup(server.Close)
	dialer := *websocket.DefaultDialer
	if server.TLS != nil {
		dialer.TLSClientConfig = server.Client().Transport.(*http.Transport).TLSClientConfig
	}
	peer, _, err := dialer.Dial("ws"+strings.TrimPrefix(server.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	s := <-sessions
	t.Cleanup(func() { s.conn.Close() })
	return s, peer
}

// Frames queued together reach the client as the same frames, in order, whatever their sizes: each length form
// of the header (RFC 6455 §5.2), frames gathered into one write, and frames too large to gather.
func TestWriterFrames(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 300, 65535, 65536, coalesceBytes, coalesceBytes + 1, 3, 200000, 10, 10, 10, 10}
	s, client := writerSession(t)
	var payloads [][]byte
	for i, n := range sizes {
		payload := bytes.Repeat([]byte{'a' + byte(i)}, n)
		payloads = append(payloads, payload)
		if !s.send(dataFrame(payload)) {
			t.Fatalf("frame %d was not queued", i)
		}
	}
	for i, want := range payloads {
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, got, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d (%d bytes): %v", i, len(want), err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got type %d, %d bytes %.20q; want text, %d bytes %.20q", i, typ, len(got), got, len(want), want)
		}
	}
	s.stopWriter()
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("got %v after the frames, want a close frame with 1000", err)
	}
	if s.queued.used != 0 {
		t.Fatalf("%d bytes still counted as queued", s.queued.used)
	}
}

// Once the session has answered the peer's close frame, no data frame follows it.
func TestWriterNothingAfterClose(t *testing.T) {
	s, client := writerSession(t)
	client.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(time.Second))
	s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := s.conn.NextReader(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("server read %v, want the client's close frame", err)
	}
	s.send(dataFrame([]byte(`[{"id":1,"t":"notif","p":"late"}]`)))
	s.stopWriter()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := client.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("client read %q, %v; want only the close frame answering its own", msg, err)
	}
	if !s.writeFailed() {
		t.Fatal("the late frame was written after the close frame")
	}
}

// A connection logs one line when it opens and one when it closes, with its number, the client's identity, how
// long it lasted and what went through it, and never a payload at info level.
func TestSessionLogLines(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	s, client := sessionWith(t, zap.New(core), Client{Identity: "alice"})
	ran := make(chan struct{})
	go func() { s.run(); close(ran) }()
	s.send(dataFrame([]byte(`[{"id":1,"t":"notif","p":"secret"}]`)))
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := client.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	client.WriteMessage(websocket.TextMessage, []byte(`not json`)) // answered with an error frame
	if _, _, err := client.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	client.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	<-ran

	lines := logs.AllUntimed()
	if len(lines) != 2 || lines[0].Message != "connection opened" || lines[1].Message != "connection closed" {
		t.Fatalf("got %+v, want one line opening and one closing", lines)
	}
	for _, line := range lines {
		fields := line.ContextMap()
		if fields["ws"] != uint64(1) || fields["identity"] != "alice" || fields["remote"] == "" {
			t.Fatalf("%q: got fields %v, want ws 1, identity alice and the remote address", line.Message, fields)
		}
		if strings.Contains(fmt.Sprint(fields), "secret") {
			t.Fatalf("%q logs a payload: %v", line.Message, fields)
		}
	}
	closed := lines[1].ContextMap()
	if closed["requests"] != uint64(1) || closed["frames_sent"] != uint64(2) {
		t.Fatalf("got %v, want 1 request read and 2 frames sent", closed)
	}
	if d, ok := closed["duration"].(time.Duration); !ok || d <= 0 {
		t.Fatalf("got duration %v, want how long the connection lasted", closed["duration"])
	}
}

// wantWrittenThrough checks that f, the session's only frame, was written by its sender (nothing queued, no writer
// started) and that the client reads it.
func wantWrittenThrough(t *testing.T, s *Session, client *websocket.Conn, f outFrame) {
	t.Helper()
	if len(s.out) != 0 || s.writerRunning || s.framesSent != 1 {
		t.Fatalf("queued %d, writer running %v, %d frames sent; want the frame written by its sender", len(s.out), s.writerRunning, s.framesSent)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, got, err := client.ReadMessage(); err != nil || !bytes.Equal(got, f.data) {
		t.Fatalf("client read %q, %v; want %q", got, err, f.data)
	}
}

// A frame that finds a plain TCP socket with nothing in the way is written by its sender; one that finds a writer
// running is queued for it; behind TLS every frame is the writer's.
func TestWriteThrough(t *testing.T) {
	frame := dataFrame([]byte(`[{"id":1,"t":"notif","p":"x"}]`))
	t.Run("idle socket", func(t *testing.T) {
		s, client := writerSession(t)
		if s.raw == nil {
			t.Fatal("a plain TCP connection has no descriptor for writes that never wait")
		}
		if !s.offer(frame) {
			t.Fatal("the frame was refused")
		}
		wantWrittenThrough(t, s, client, frame)
	})
	t.Run("deadline of an earlier write passed", func(t *testing.T) {
		// The writer's last burst leaves its deadline on the connection, passed once write_timeout has gone by;
		// it bounds the writer's writes, not those that never wait.
		s, client := writerSession(t)
		if err := s.conn.NetConn().SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if !s.writeThrough(frame) {
			t.Fatal("the frame was not taken")
		}
		wantWrittenThrough(t, s, client, frame)
	})
	t.Run("socket closed", func(t *testing.T) {
		s, _ := writerSession(t)
		if err := s.conn.NetConn().Close(); err != nil {
			t.Fatal(err)
		}
		s.writerRunning = true // tryWrite runs in the writer's place
		if s.tryWrite(frame) || s.framesSent != 0 {
			t.Fatal("a frame was taken by a closed socket: the writer never learns that it failed")
		}
	})
	t.Run("writer running", func(t *testing.T) {
		s := queueSession(t)
		if !s.offer(frame) || len(s.out) != 1 || s.framesSent != 0 {
			t.Fatalf("queued %d, %d frames sent; want the frame queued for the writer", len(s.out), s.framesSent)
		}
	})
	t.Run("control frame due", func(t *testing.T) {
		s := queueSession(t)
		s.writerRunning = false
		s.control.ping()
		if s.writeThrough(frame) {
			t.Fatal("a frame went ahead of the ping due")
		}
	})
	t.Run("TLS", func(t *testing.T) {
		s, _ := sessionOn(t, httptest.NewTLSServer, zap.NewNop(), Client{})
		if s.raw != nil || s.writeThrough(frame) {
			t.Fatal("a frame was written around the TLS connection")
		}
	})
}

// When the socket's buffer takes only part of a frame written through, the writer sends the rest before anything
// else: the frames queued after it, a ping due meanwhile, and the close frame all arrive whole and in order.
func TestWriteThroughRest(t *testing.T) {
	s, client := writerSession(t)
	if err := s.conn.NetConn().(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	// As writeThrough does, the test holds the writer's place while it writes, and the client reads nothing yet.
	s.writerRunning = true
	var payloads [][]byte
	for i := 0; s.rest == nil; i++ {
		if i == 10000 {
			t.Fatal("no frame was ever left half written")
		}
		payload := bytes.Repeat([]byte{'a' + byte(i%26)}, 50000+i)
		if !s.tryWrite(dataFrame(payload)) {
			t.Fatalf("frame %d was not written: the socket's buffer was full before one was begun", i)
		}
		payloads = append(payloads, payload)
	}
	s.control.ping()
	more := []byte(`[{"id":2,"t":"notif","p":"after"}]`)
	if !s.send(dataFrame(more)) {
		t.Fatal("the frame after was refused")
	}
	payloads = append(payloads, more)
	s.writerRunning = false
	s.kick()
	pinged := make(chan struct{}, 1)
	client.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil })
	go s.stopWriter()
	for i, want := range payloads {
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := client.ReadMessage()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d of %d: read %d bytes %.20q, %v; want %d bytes %.20q", i, len(payloads), len(got), got, err, len(want), want)
		}
	}
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("got %v after the frames, want a close frame with 1000", err)
	}
	select {
	case <-pinged:
	default:
		t.Fatal("the ping due never arrived")
	}
}
