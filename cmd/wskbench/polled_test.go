package main

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// serverFrameOf is what a server sends: op and payload, unmasked.
func serverFrameOf(op byte, payload []byte) []byte {
	frame := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, byte(n))
	case n <= 0xffff:
		frame = binary.BigEndian.AppendUint16(append(frame, 126), uint16(n))
	default:
		frame = binary.BigEndian.AppendUint64(append(frame, 127), uint64(n))
	}
	return append(frame, payload...)
}

func TestNextFrame(t *testing.T) {
	long := []byte(strings.Repeat("x", 300))
	huge := []byte(strings.Repeat("y", 70000))
	for _, tc := range []struct {
		name    string
		in      []byte
		ok      bool
		op      byte
		payload []byte
		err     string
	}{
		{name: "empty", in: nil},
		{name: "one byte", in: []byte{0x81}},
		{name: "short text", in: serverFrameOf(opText, []byte("hi")), ok: true, op: opText, payload: []byte("hi")},
		{name: "ping, nothing in it", in: serverFrameOf(opPing, nil), ok: true, op: opPing, payload: []byte{}},
		{name: "16-bit length", in: serverFrameOf(opText, long), ok: true, op: opText, payload: long},
		{name: "16-bit length, header cut", in: serverFrameOf(opText, long)[:3]},
		{name: "64-bit length", in: serverFrameOf(opBinary, huge), ok: true, op: opBinary, payload: huge},
		{name: "64-bit length, header cut", in: serverFrameOf(opBinary, huge)[:9]},
		{name: "payload cut", in: serverFrameOf(opText, long)[:200]},
		{name: "followed by the next", in: append(serverFrameOf(opText, []byte("a")), serverFrameOf(opText, []byte("b"))...), ok: true, op: opText, payload: []byte("a")},
		{name: "fragment", in: []byte{0x01, 0x01, 'a'}, err: "fragmented"},
		{name: "continuation", in: []byte{0x80, 0x01, 'a'}, err: "fragmented"},
		{name: "masked", in: []byte{0x81, 0x81, 1, 2, 3, 4, 'a'}, err: "masked"},
		{name: "absurd length", in: binary.BigEndian.AppendUint64([]byte{0x82, 127}, 1<<40), err: "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok, err := nextFrame(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || ok != tc.ok {
				t.Fatalf("got ok %v, %v; want ok %v", ok, err, tc.ok)
			}
			if ok && (f.op != tc.op || string(f.payload) != string(tc.payload) || f.size != len(serverFrameOf(tc.op, tc.payload))) {
				t.Errorf("got op %d, %d bytes, size %d", f.op, len(f.payload), f.size)
			}
		})
	}
}

// stampedNotif is a wskafka notification frame's payload whose value carries the send time now after the marker.
func stampedNotif(now time.Time) []byte {
	return []byte(`[{"id":2,"t":"notif","p":"@@` + strconv.FormatInt(now.UnixNano(), 10) + `xxx"}]`)
}

// The poller subscribes over a real socket, counts deliveries in frames that arrive behind the subscribe reply,
// split over reads and larger than 125 bytes, and answers the server's ping; a refused subscribe is an error.
func TestSubscribePolled(t *testing.T) {
	pongs := make(chan string, 1)
	var refuse, busy atomic.Bool
	busy.Store(true) // the first subscribe is refused as Kafka being slow, and tried again
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_, req, err := c.ReadMessage()
		if err != nil || !strings.Contains(string(req), `"a":"subscribe"`) || !strings.Contains(string(req), `"broadcast"`) {
			t.Errorf("the subscribe: %s (%v)", req, err)
			return
		}
		raw := c.NetConn()
		if busy.CompareAndSwap(true, false) {
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"refid":1,"s":1,"p":{"code":"kafka_unavailable","message":"slow"}}`))
			if _, again, err := c.ReadMessage(); err != nil || string(again) != string(req) {
				t.Errorf("the subscribe again: %s (%v)", again, err)
				return
			}
		}
		if refuse.Load() {
			_, _ = raw.Write(serverFrameOf(opText, []byte(`{"refid":1,"s":1,"p":{"code":"unknown_topic","message":"no such topic"}}`)))
			return
		}
		c.SetPongHandler(func(data string) error { pongs <- data; return nil })
		closed := make(chan struct{})
		go func() { // runs the pong handler until the client closes
			defer close(closed)
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		now := time.Now()
		// The reply and a delivery in one write, a ping, a delivery in two writes, two in a long frame.
		_, _ = raw.Write(append(serverFrameOf(opText, []byte(`{"refid":1,"s":0,"p":"ok"}`)), serverFrameOf(opText, stampedNotif(now))...))
		_, _ = raw.Write(serverFrameOf(opPing, []byte("beat")))
		split := serverFrameOf(opText, stampedNotif(now))
		_, _ = raw.Write(split[:10])
		time.Sleep(20 * time.Millisecond)
		_, _ = raw.Write(split[10:])
		long := append(append(stampedNotif(now), strings.Repeat(" ", 200)...), stampedNotif(now)...)
		_, _ = raw.Write(serverFrameOf(opText, long))
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	set, err := subscribePolled(ctx, url, "t", 1, 1, sourceAddrs{base: net.ParseIP("127.0.0.1"), perAddr: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmtCodes(set.retried); got != "kafka_unavailable 1" {
		t.Errorf("retried %s, want kafka_unavailable 1", got)
	}
	set.expect(4)
	select {
	case <-set.allIn:
	case <-ctx.Done():
		t.Fatalf("delivered %d of 4", set.delivered.Load())
	}
	select {
	case got := <-pongs:
		if got != "beat" {
			t.Errorf("pong %q, want the ping's payload", got)
		}
	case <-ctx.Done():
		t.Error("the ping was not answered")
	}
	set.close()
	if set.closed.Load() != 0 || len(set.perConn[0]) != 4 {
		t.Errorf("got %d closed, %d latencies; want 0 and 4", set.closed.Load(), len(set.perConn[0]))
	}
	if f, _ := set.failure.Load().(error); f != nil {
		t.Error(f)
	}

	refuse.Store(true)
	if _, err := subscribePolled(ctx, url, "t", 1, 1, sourceAddrs{}); err == nil || !strings.Contains(err.Error(), "no such topic") {
		t.Errorf("a refused subscribe: got %v, want its reason", err)
	}
}

// The counts the workers print come back as they were, summed over workers.
func TestAddCodes(t *testing.T) {
	counts := map[string]int{}
	for _, printed := range []string{"none", fmtCodes(map[string]int{"kafka_timeout": 2, "kafka_unavailable": 5}), "kafka_timeout 1"} {
		if err := addCodes(counts, printed); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmtCodes(counts); got != "kafka_timeout 3, kafka_unavailable 5" {
		t.Errorf("got %s", got)
	}
	for _, bad := range []string{"", "kafka_timeout", "kafka_timeout x", "a 1,b 2"} {
		if err := addCodes(map[string]int{}, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A refusal is retried only for the codes that say Kafka was slow, whichever request quoted it.
func TestRetryableCode(t *testing.T) {
	for text, want := range map[string]string{
		`topic/subscribe failed: {"code":"kafka_unavailable","message":"…"}`:   "kafka_unavailable",
		`the subscribe failed: {"refid":1,"s":1,"p":{"code":"kafka_timeout"}}`: "kafka_timeout",
		`topic/subscribe failed: {"code":"unknown_topic","message":"…"}`:       "",
		`dialing 127.0.0.1:1: connection refused`:                              "",
	} {
		if got := retryableCode(errors.New(text)); got != want {
			t.Errorf("%s: got %q, want %q", text, got, want)
		}
	}
}
