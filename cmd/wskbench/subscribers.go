package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
)

// stampMarker precedes the send time in the values of the peer, storm and scale scenarios. It survives both
// servers' framing unchanged: JSON-escaped inside a wskafka notification's value, raw JSON data in a Centrifugo
// push, so one scan counts the deliveries of either.
var stampMarker = []byte("@@")

// markedStamps calls fn with every send time that follows stampMarker in frame.
func markedStamps(frame []byte, fn func(sent int64)) (notes int, err error) {
	for {
		i := bytes.Index(frame, stampMarker)
		if i < 0 {
			return notes, nil
		}
		frame = frame[i+len(stampMarker):]
		sent, err := stampOf(frame)
		if err != nil {
			return notes, err
		}
		fn(sent)
		notes++
	}
}

// endpoint is a server under the same subscriber code: what a socket does after the dial, and how it subscribes.
type endpoint struct {
	name string
	url  string
	pid  int
	// handshake runs once per socket after the dial (Centrifugo's connect command); nil: none.
	handshake func(c *wsConn) error
	// subscribe subscribes the socket and returns once the server has answered.
	subscribe func(c *wsConn) error
	// ping reports whether a frame holds the server's application ping, which the reader answers with pong.
	ping func(frame []byte) bool
	pong []byte
}

// wskafkaEndpoint is a broadcast subscription to topic on a Caddy route.
func wskafkaEndpoint(c *caddyProcess, route, topic string) endpoint {
	return endpoint{
		name:      "wskafka",
		url:       c.url(route),
		pid:       c.Pid(),
		subscribe: func(conn *wsConn) error { return conn.subscribe(topic, "", true) },
	}
}

// centrifugoEndpoint is a subscription to the peer's channel with its JSON protocol over WebSocket: a connect
// command first (anonymous: the config allows it), then subscribe. Centrifugo pings with an empty command ({})
// every 25 s, as a JSON line that may share a frame with pushes queued before it, and closes a client that does
// not answer with one within its pong_timeout (code 3012, "no pong").
func centrifugoEndpoint(c *centrifugoProcess) endpoint {
	return endpoint{
		name:      "centrifugo",
		url:       c.url(),
		pid:       c.Pid(),
		handshake: func(conn *wsConn) error { return conn.centrifugoCommand(1, `{"id":1,"connect":{}}`) },
		subscribe: func(conn *wsConn) error {
			return conn.centrifugoCommand(2, `{"id":2,"subscribe":{"channel":"`+centrifugoChannel+`"}}`)
		},
		ping: centrifugoPing,
		pong: []byte("{}"),
	}
}

// centrifugoPing reports whether one of the frame's JSON lines is an empty command: Centrifugo's ping.
func centrifugoPing(frame []byte) bool {
	for line := range bytes.Lines(frame) {
		if bytes.Equal(bytes.TrimSpace(line), []byte("{}")) {
			return true
		}
	}
	return false
}

// centrifugoCommand sends one command of Centrifugo's JSON protocol and waits for the reply with its id (replies
// and pushes are JSON lines; a frame may hold several).
func (c *wsConn) centrifugoCommand(id int, command string) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(replyTimeout)) // a failed deadline shows as the next I/O failing
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(command)); err != nil {
		return fmt.Errorf("sending %s: %w", command, err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(replyTimeout)) // a failed deadline shows as the next I/O failing
	defer func() { _ = c.conn.SetReadDeadline(time.Time{}) }()
	for range 16 { // pings before the reply, at most
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for the reply to %s: %w", command, err)
		}
		for line := range bytes.Lines(msg) {
			var r struct {
				ID    int             `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("reply to %s: %w: %s", command, err, line)
			}
			if r.ID != id {
				continue
			}
			if len(r.Error) > 0 {
				return fmt.Errorf("%s failed: %s", command, r.Error)
			}
			return nil
		}
	}
	return fmt.Errorf("no reply to %s", command)
}

// sourceAddrs are the loopback addresses the client sockets are bound to, one per block of perAddr sockets: one
// source address has about 28,000 ephemeral ports (net.ipv4.ip_local_port_range), and a socket bound before it
// connects takes its port from that address's pool whatever the destination.
type sourceAddrs struct {
	base    net.IP // the first address; nil: let the kernel choose (127.0.0.1)
	perAddr int
}

// of returns the local address of socket i (nil: the kernel's choice).
func (s sourceAddrs) of(i int) net.Addr {
	if s.base == nil || s.perAddr <= 0 {
		return nil
	}
	ip := slices.Clone(s.base.To4())
	n := int(ip[2])<<8 | int(ip[3]) + i/s.perAddr
	ip[2], ip[3] = byte(n>>8), byte(n)
	return &net.TCPAddr{IP: ip}
}

// subscriberSet is many sockets subscribed to one endpoint and read until closed: each delivery's latency is the
// time from its send time (in the record) to the socket read, in the tool's clock.
type subscriberSet struct {
	ep        endpoint
	conns     []*wsConn
	perConn   [][]time.Duration
	delivered atomic.Int64
	frames    atomic.Int64 // frames other than pings, marked or not (the probes)
	last      atomic.Int64 // ns of the last marked delivery
	closed    atomic.Int64 // sockets the server closed
	closing   atomic.Bool  // the tool closes the sockets: read errors are its own
	want      atomic.Int64 // allIn closes once delivered reaches it (0: never)
	allIn     chan struct{}
	allInOnce sync.Once
	readers   sync.WaitGroup
	failure   atomic.Value
	subscribe time.Duration  // from the first subscribe sent to the last reply
	retried   map[string]int // subscribes refused and tried again, by error code
	// closeConns closes the sockets, which ends the readers; nil: closeAll(conns).
	closeConns func()
}

// subscribeSet dials n sockets to the endpoint (parallel at a time, bound to src), runs the handshake and the
// subscribe on each, and starts their readers.
func subscribeSet(ctx context.Context, ep endpoint, n, parallel int, src sourceAddrs) (*subscriberSet, error) {
	s := &subscriberSet{ep: ep, conns: make([]*wsConn, n), perConn: make([][]time.Duration, n), allIn: make(chan struct{})}
	errs := make(chan error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range s.conns {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialWSFrom(ctx, ep.url, src.of(i))
			if err == nil && ep.handshake != nil {
				err = ep.handshake(c)
			}
			if err == nil {
				err = ep.subscribe(c)
			}
			if err != nil {
				if c != nil {
					_ = c.conn.Close() // closing: nothing to do about it
				}
				errs <- fmt.Errorf("%s subscriber %d: %w", ep.name, i, err)
				return
			}
			s.conns[i] = c
		})
	}
	wg.Wait()
	s.subscribe = time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		closeAll(s.conns)
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		closeAll(s.conns)
		return nil, err
	}
	for i, c := range s.conns {
		s.readers.Go(func() { s.read(i, c) })
	}
	return s, nil
}

func (s *subscriberSet) read(i int, c *wsConn) {
	for {
		_, frame, err := c.conn.ReadMessage()
		now := time.Now().UnixNano()
		if err != nil {
			if !s.closing.Load() {
				s.closed.Add(1)
				s.failure.CompareAndSwap(nil, fmt.Errorf("%s socket %d closed: %w", s.ep.name, i, err))
			}
			return
		}
		if s.ep.ping != nil && s.ep.ping(frame) {
			_ = c.conn.SetWriteDeadline(time.Now().Add(replyTimeout)) // a failed deadline shows as the next I/O failing
			_ = c.conn.WriteMessage(websocket.TextMessage, s.ep.pong)
			if len(bytes.TrimSpace(frame)) == 2 {
				continue // the ping alone
			}
		}
		s.frame(i, frame, now)
	}
}

// frame counts the deliveries in a frame socket i read at now (ns).
func (s *subscriberSet) frame(i int, frame []byte, now int64) {
	s.frames.Add(1)
	n, err := markedStamps(frame, func(sent int64) {
		s.perConn[i] = append(s.perConn[i], time.Duration(now-sent))
	})
	if err != nil {
		s.failure.CompareAndSwap(nil, fmt.Errorf("%s socket %d: %w in %.200s", s.ep.name, i, err, frame))
	}
	if n == 0 {
		return
	}
	s.last.Store(now)
	if want := s.want.Load(); s.delivered.Add(int64(n)) >= want && want > 0 {
		s.allInOnce.Do(func() { close(s.allIn) })
	}
}

// expect arms allIn for want deliveries in all.
func (s *subscriberSet) expect(want int64) {
	s.want.Store(want)
	if s.delivered.Load() >= want {
		s.allInOnce.Do(func() { close(s.allIn) })
	}
}

// close closes every socket and waits for the readers.
func (s *subscriberSet) close() {
	s.closing.Store(true)
	if s.closeConns != nil {
		s.closeConns()
	} else {
		closeAll(s.conns)
	}
	s.readers.Wait()
}

// latencies are every marked delivery's latency, sorted.
func (s *subscriberSet) latencies() *latencyResult {
	res := newLatencyResult(slices.Concat(s.perConn...))
	res.delivered = s.delivered.Load()
	res.closed = int(s.closed.Load())
	return res
}

// warning prints the first failure of the set, if any.
func (s *subscriberSet) warning() {
	if f, _ := s.failure.Load().(error); f != nil {
		fmt.Printf("  warning: %v\n", f)
	}
}

// waitFrames produces probe records (unmarked) every probeInterval until the set has read a frame, bounded by
// timeout: then the server reads the topic (a consumer group joined, a broadcast reader positioned).
func (b *bench) waitFrames(ctx context.Context, s *subscriberSet, topic string, probe []byte, timeout time.Duration) error {
	producer, err := b.kafka.latencyProducer(topic)
	if err != nil {
		return err
	}
	defer producer.Close()
	deadline := time.Now().Add(timeout)
	for s.frames.Load() == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no probe record arrived within %v", s.ep.name, timeout)
		}
		if err := producer.ProduceSync(ctx, &kgo.Record{Value: probe}).FirstErr(); err != nil {
			return fmt.Errorf("producing a probe: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(probeInterval):
		}
	}
	return nil
}

// probeInterval paces the probe records of waitFrames.
const probeInterval = 250 * time.Millisecond
