package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// replyTimeout bounds every request the tool waits on (a subscribe joins a consumer group).
const replyTimeout = 60 * time.Second

var dialer = &websocket.Dialer{
	NetDialContext:   (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   4096,
	WriteBufferSize:  4096,
}

type wsConn struct {
	conn *websocket.Conn
}

func dialWS(ctx context.Context, url string) (*wsConn, error) {
	return dialWSFrom(ctx, url, nil)
}

// dialWSFrom is dialWS from the local address local (nil: the kernel's choice).
func dialWSFrom(ctx context.Context, url string, local net.Addr) (*wsConn, error) {
	d := dialer
	if local != nil {
		bound := *dialer
		bound.NetDialContext = (&net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}).DialContext
		d = &bound
	}
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", url, err)
	}
	return &wsConn{conn: conn}, nil
}

func (c *wsConn) close() {
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)) // closing: nothing to do about it
	_ = c.conn.Close()                                                                                                                           // closing: nothing to do about it
}

// reply is the part of a reply frame the tool looks at.
type reply struct {
	RefID json.RawMessage `json:"refid"`
	S     int             `json:"s"`
	P     json.RawMessage `json:"p"`
}

// request sends one request and waits for its reply; notifications arriving first are an error, since the tool
// only sends requests before the measured phase.
func (c *wsConn) request(id int, t, a string, p any) (*reply, error) {
	frame, err := json.Marshal(map[string]any{"id": id, "t": t, "a": a, "p": p})
	if err != nil {
		return nil, err
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(replyTimeout)) // a failed deadline shows as the next I/O failing
	if err := c.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
		return nil, fmt.Errorf("sending %s/%s: %w", t, a, err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(replyTimeout)) // a failed deadline shows as the next I/O failing
	defer func() { _ = c.conn.SetReadDeadline(time.Time{}) }()
	_, msg, err := c.conn.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("waiting for the reply to %s/%s: %w", t, a, err)
	}
	var r reply
	if err := json.Unmarshal(msg, &r); err != nil {
		return nil, fmt.Errorf("reply to %s/%s: %w: %s", t, a, err, msg)
	}
	if string(r.RefID) != strconv.Itoa(id) {
		return nil, fmt.Errorf("reply to %s/%s: refid %s, want %d: %s", t, a, r.RefID, id, msg)
	}
	if r.S != 0 {
		return nil, fmt.Errorf("%s/%s failed: %s", t, a, r.P)
	}
	return &r, nil
}

// subscribe subscribes the socket; group "" with broadcast false uses the route's group.
func (c *wsConn) subscribe(topic, group string, broadcast bool) error {
	p := map[string]any{"t": []string{topic}}
	if group != "" {
		p["consumer_group"] = group
	}
	if broadcast {
		p["mode"] = "broadcast"
	}
	_, err := c.request(1, "topic", "subscribe", p)
	return err
}

// notifPrefix starts the value of every notification in a frame (`[{"id":4,"t":"notif","p":"…"},…]`).
var notifPrefix = []byte(`"t":"notif","p":"`)

// sendTimes calls fn with the send time (ns since the epoch) that starts the value of each notification in a
// frame. It scans rather than decodes: one tool process reads 100,000 notifications a second on a shared CPU.
func sendTimes(frame []byte, fn func(sent int64)) (notes int, err error) {
	for {
		i := bytes.Index(frame, notifPrefix)
		if i < 0 {
			return notes, nil
		}
		frame = frame[i+len(notifPrefix):]
		sent, err := stampOf(frame)
		if err != nil {
			return notes, err
		}
		fn(sent)
		notes++
	}
}

// stampDigits is the length of the send time that starts every value the tool produces for latency runs.
const stampDigits = 19

// stampOf reads the send time that starts value.
func stampOf(value []byte) (int64, error) {
	if len(value) < stampDigits {
		return 0, fmt.Errorf("value shorter than its timestamp: %.40q", value)
	}
	sent, err := strconv.ParseInt(string(value[:stampDigits]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value without a timestamp: %w", err)
	}
	return sent, nil
}

// stampedValue returns a value of size bytes starting with now in ns since the epoch.
func stampedValue(buf []byte, now time.Time) []byte {
	buf = strconv.AppendInt(buf[:0], now.UnixNano(), 10)
	for len(buf) < cap(buf) {
		buf = append(buf, 'x')
	}
	return buf
}

// maskedFrames returns count copies of the client text frame carrying payload, back to back: masked as RFC 6455
// §5.3 requires of a client (with one key, which the server does not care about), so that written to a socket as
// one buffer they arrive as count frames. Encoded once, they cost the tool nothing but the write.
func maskedFrames(payload []byte, count int) []byte {
	header := []byte{0x81} // FIN, text
	switch n := len(payload); {
	case n < 126:
		header = append(header, 0x80|byte(n))
	case n <= 0xffff:
		header = binary.BigEndian.AppendUint16(append(header, 0x80|126), uint16(n))
	default:
		header = binary.BigEndian.AppendUint64(append(header, 0x80|127), uint64(n))
	}
	key := binary.LittleEndian.AppendUint32(nil, rand.Uint32())
	frame := append(append(header, key...), payload...)
	for i := range payload {
		frame[len(header)+len(key)+i] ^= key[i%4]
	}
	return bytes.Repeat(frame, count)
}

// dialMany opens n sockets with at most parallel handshakes at a time.
func dialMany(ctx context.Context, url string, n, parallel int) ([]*wsConn, error) {
	conns := make([]*wsConn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialWS(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []*wsConn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.close()
		})
	}
	wg.Wait()
}
