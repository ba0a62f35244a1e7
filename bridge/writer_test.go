package bridge

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// writerSession upgrades one connection from a gorilla client and returns the server's session, its writer not
// started, and the client's end.
func writerSession(t *testing.T) (*Session, *websocket.Conn) {
	t.Helper()
	hub := &Hub{
		cfg:    Config{WriteTimeout: 5 * time.Second, CloseTimeout: time.Second, Limits: Limits{MaxQueueBytes: 1 << 20, MaxFrameBytes: 1 << 20}},
		logger: zap.NewNop(),
		ctx:    context.Background(),
	}
	sessions := make(chan *Session, 1)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		sessions <- newSession(hub, conn, 1, Client{})
	}))
	t.Cleanup(server.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(server.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s := <-sessions
	t.Cleanup(func() { s.conn.Close() })
	return s, client
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
		if !s.send(dataFrame(payload)) { // the queue holds them all: the writer finds them waiting
			t.Fatalf("frame %d was not queued", i)
		}
	}
	go s.writeLoop()
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
	s.peerGone.Store(true) // as the read loop does
	s.send(dataFrame([]byte(`[{"id":1,"t":"notif","p":"late"}]`)))
	go s.writeLoop()
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
