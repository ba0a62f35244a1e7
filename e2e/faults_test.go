package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The fault suite: clients that number everything they publish, faults injected while they run (reloads, a
// broker killed, a Caddy killed, sockets cut, group churn), and Kafka read back by kcat, so that what was lost
// and what was duplicated are counted exactly. The invariants fail the test; timing figures are logged only.
//
// Invariants (README Lifecycle and Protocol, DESIGN.md "Shutdown of a session"):
//   - an acknowledged publish (receipt) is in Kafka;
//   - a publish that got no error is in Kafka, with or without a receipt: what a socket read before its close
//     frame is published, and what still arrives until the client's close too;
//   - a publish with a receipt is answered (receipt or s:1) while its socket is open, and never skipped: a later
//     publish of the same socket answered while an earlier one is not is a publish that was dropped;
//   - every record in the topic reaches a `commit: client` group.

// Bounds of the fault suite's clients.
const (
	reconnectTimeout = 30 * time.Second // a client redials this long before it gives up
	reconnectPause   = 50 * time.Millisecond
	drainTimeout     = 60 * time.Second // outstanding receipts, a group catching up with Kafka
	faultPoll        = 20 * time.Millisecond
)

// --- the ledger: every publish by its value ------------------------------------------------------------------

// pubFate is what became of one publish, as its client saw it.
type pubFate struct {
	receipt   bool      // it asked for a receipt
	written   bool      // the frame was written whole to the socket
	acked     bool      // a receipt came
	failed    string    // the code of an s:1 answer
	atClose   bool      // a receipt was asked and the socket closed before the answer
	writtenAt time.Time // when the write completed
	socket    int       // which of its client's sockets carried it
}

// ledger is every publish of a scenario, by value ("<publisher>-<seq>"): what its client saw become of it.
type ledger struct {
	mu   sync.Mutex
	pubs map[string]*pubFate
}

func newLedger() *ledger { return &ledger{pubs: map[string]*pubFate{}} }

// faultCounts are the figures of one scenario's publishes against what kcat read back.
type faultCounts struct {
	Sent, Receipts, Acked, Failed, InKafka int
	// Lost: written, not refused (s:1), not in Kafka; LostAcked those of them with a receipt, LostAtClose those
	// whose receipt the socket's close cut off.
	Lost, LostAcked, LostAtClose int
	// AtClose: receipts asked, the socket closed first; Unanswered: receipts asked on a socket still open at the end.
	AtClose, Unanswered int
	// Skipped: unanswered while a later publish of the same socket was answered.
	Skipped    int
	Duplicated int // values Kafka holds more than once
	// RefusedInKafka: answered s:1, yet in Kafka (a produce that timed out on its way back, say): logged.
	RefusedInKafka int
	Unknown        int // records in Kafka that no client wrote whole (a write that failed half way)
	lostFirst      []string
	lostBy         map[string]int // publisher socket → publishes lost
	sentBy         map[string]int // publisher socket → publishes written
	failedBy       map[string]int
}

func (f faultCounts) String() string {
	s := fmt.Sprintf("sent %d (receipts asked %d, acked %d, refused %d), in Kafka %d, lost %d (acked %d), "+
		"lost at close %d, unanswered at close %d, unanswered on an open socket %d, skipped %d, duplicated %d, refused yet in Kafka %d, "+
		"unknown %d", f.Sent, f.Receipts, f.Acked, f.Failed, f.InKafka, f.Lost, f.LostAcked, f.LostAtClose, f.AtClose, f.Unanswered,
		f.Skipped, f.Duplicated, f.RefusedInKafka, f.Unknown)
	if len(f.failedBy) > 0 {
		s += fmt.Sprintf(", refusals by code %v", f.failedBy)
	}
	if len(f.lostFirst) > 0 {
		s += fmt.Sprintf(", lost by publisher socket %v (written %v), first lost %q", f.lostBy, f.sentBy, f.lostFirst)
	}
	return s
}

// count compares the ledger with the values Kafka holds.
func (l *ledger) count(values [][]byte) faultCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	inKafka := map[string]int{}
	for _, v := range values {
		inKafka[string(v)]++
	}
	f := faultCounts{failedBy: map[string]int{}, lostBy: map[string]int{}, sentBy: map[string]int{}}
	// answered is, per publisher socket, the highest seq that got an answer: an unanswered publish below it
	// was skipped.
	answered := map[string]int{}
	for value, p := range l.pubs {
		if p.receipt && (p.acked || p.failed != "") {
			key, seq := socketKey(value, p.socket)
			answered[key] = max(answered[key], seq)
		}
	}
	for value, n := range inKafka {
		if n > 1 {
			f.Duplicated++
		}
		if p, ok := l.pubs[value]; !ok || !p.written {
			f.Unknown++
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range l.pubs {
			if !yield(k) {
				return
			}
		}
	})
	for _, value := range keys {
		p := l.pubs[value]
		if !p.written {
			continue
		}
		f.Sent++
		key, _ := socketKey(value, p.socket)
		f.sentBy[key]++
		if p.receipt {
			f.Receipts++
		}
		if p.acked {
			f.Acked++
		}
		if p.failed != "" {
			f.Failed++
			f.failedBy[p.failed]++
			if inKafka[value] > 0 {
				f.RefusedInKafka++
			}
			continue
		}
		if inKafka[value] > 0 {
			f.InKafka++
		} else {
			f.Lost++
			if p.acked {
				f.LostAcked++
			}
			if p.atClose {
				f.LostAtClose++
			}
			f.lostBy[key]++
			if len(f.lostFirst) < 5 {
				f.lostFirst = append(f.lostFirst, value)
			}
		}
		if p.receipt && !p.acked {
			if p.atClose {
				f.AtClose++
			} else {
				f.Unanswered++
			}
			_, seq := socketKey(value, p.socket)
			if seq < answered[key] {
				f.Skipped++
			}
		}
	}
	return f
}

// socketKey names the socket that carried a value, and the value's sequence number.
func socketKey(value string, socket int) (string, int) {
	i := strings.LastIndexByte(value, '-')
	seq, _ := strconv.Atoi(value[i+1:])
	return fmt.Sprintf("%s#%d", value[:i], socket), seq
}

// settleTimeout bounds the wait for publishes without receipts to show up in Kafka: nothing tells their client
// when they got there (the server answers a client's close frame before its last flush is done).
const settleTimeout = 10 * time.Second

// readBack reads the topic with kcat until it holds every publish of the ledger that got no error, or
// settleTimeout passes, and returns its values. With crash (see assertPublishes), publishes whose receipts the
// crash cut off are not waited for.
func readBack(t *testing.T, addrs []string, topic string, l *ledger, crash bool) [][]byte {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		values := kcatConsumeOn(t, addrs, topic)
		f := l.count(values)
		missing := f.Lost
		if crash {
			missing -= f.LostAtClose
		}
		if missing == 0 || time.Now().After(deadline) {
			return values
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
}

// assertPublishes fails the test on the publish invariants and logs the counts. With crash, the server was
// killed: what it had read and not yet published is gone with it, so a publish whose receipt the crash cut off may
// be missing (logged); an acknowledged one may not.
func assertPublishes(t *testing.T, scenario string, f faultCounts, crash bool) {
	t.Helper()
	t.Logf("%s: publishes: %v", scenario, f)
	if f.Sent == 0 {
		t.Errorf("%s: got no publish written, want some", scenario)
	}
	if f.LostAcked > 0 {
		t.Errorf("%s: %d acknowledged publishes are missing from Kafka, want none", scenario, f.LostAcked)
	}
	n := f.Lost - f.LostAcked
	if crash {
		n -= f.LostAtClose
	}
	if n > 0 {
		t.Errorf("%s: %d publishes that got no error (no receipt, or a receipt that never came) are missing from "+
			"Kafka, want none (first %q)", scenario, n, f.lostFirst)
	}
	if f.Unanswered > 0 {
		t.Errorf("%s: %d publishes with receipts were never answered on an open socket, want none", scenario, f.Unanswered)
	}
	if f.Skipped > 0 {
		t.Errorf("%s: %d publishes got no answer while later ones on their socket did, want none", scenario, f.Skipped)
	}
}

// tally is what a set of subscribers (a group, or one broadcast socket) received, by value.
type tally struct {
	mu    sync.Mutex
	seen  map[string]int       // value → deliveries
	first map[string]time.Time // value → first delivery
}

func newTally() *tally { return &tally{seen: map[string]int{}, first: map[string]time.Time{}} }

func (ty *tally) add(value string, at time.Time) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	if ty.seen[value] == 0 {
		ty.first[value] = at
	}
	ty.seen[value]++
}

// missing returns the values the tally has not seen yet.
func (ty *tally) missing(values [][]byte) []string {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	var out []string
	for _, v := range values {
		if ty.seen[string(v)] == 0 {
			out = append(out, string(v))
		}
	}
	return out
}

// duplicated counts the values delivered more than once.
func (ty *tally) duplicated() int {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	n := 0
	for _, c := range ty.seen {
		if c > 1 {
			n++
		}
	}
	return n
}

// --- clients that number their publishes and reconnect -----------------------------------------------------

// closeCodeOf is the close code of a read error, or -1 when the connection ended without a close frame.
func closeCodeOf(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// clientLife is what every fault-suite client records of its sockets.
type clientLife struct {
	mu       sync.Mutex
	name     string
	closes   []socketClose // by the server, or cut
	connects []time.Time   // every successful dial
	errs     []string
}

type socketClose struct {
	at   time.Time
	code int
}

func (cl *clientLife) fail(format string, args ...any) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.errs) < 10 {
		cl.errs = append(cl.errs, cl.name+": "+fmt.Sprintf(format, args...))
	}
}

func (cl *clientLife) closed(code int) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.closes = append(cl.closes, socketClose{time.Now(), code})
}

// redial dials url() until it succeeds, the client is stopped, or reconnectTimeout passes.
func (cl *clientLife) redial(url func() string, stop <-chan struct{}) *websocket.Conn {
	deadline := time.Now().Add(reconnectTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		default:
		}
		d := websocket.Dialer{HandshakeTimeout: dialTimeout}
		conn, resp, err := d.Dial(url(), nil)
		if err == nil {
			resp.Body.Close()
			cl.mu.Lock()
			cl.connects = append(cl.connects, time.Now())
			cl.mu.Unlock()
			return conn
		}
		lastErr = err
		time.Sleep(reconnectPause)
	}
	cl.fail("no connection within %v: %v", reconnectTimeout, lastErr)
	return nil
}

// reconnectedAfter returns when the client first connected after at (zero if it did not).
func (cl *clientLife) reconnectedAfter(at time.Time) time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, c := range cl.connects {
		if c.After(at) {
			return c
		}
	}
	return time.Time{}
}

func (cl *clientLife) errors() []string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return slices.Clone(cl.errs)
}

// seqPublisher publishes "<name>-<seq>" every interval, seq counting up across its sockets; when the server
// closes a socket it dials again and goes on with the next number.
type seqPublisher struct {
	clientLife
	topic    string
	receipts bool
	interval time.Duration
	url      func() string
	l        *ledger
	stop     chan struct{}
	done     chan struct{}
	socket   int // sockets dialled so far; the current one's number
}

func startPublisher(t *testing.T, l *ledger, name, topic string, receipts bool, interval time.Duration, url func() string) *seqPublisher {
	t.Helper()
	p := &seqPublisher{clientLife: clientLife{name: name}, topic: topic, receipts: receipts, interval: interval,
		url: url, l: l, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	t.Cleanup(p.finish)
	return p
}

func (p *seqPublisher) run() {
	defer close(p.done)
	seq := 0
	for {
		conn := p.redial(p.url, p.stop)
		if conn == nil {
			return
		}
		p.socket++
		if !p.serve(conn, &seq) {
			return
		}
	}
}

// serve publishes on one socket until the server closes it (true: dial again) or the publisher is stopped and
// its receipts are in (false).
func (p *seqPublisher) serve(conn *websocket.Conn, seq *int) bool {
	defer conn.Close()
	readDone := make(chan struct{})
	var pending sync.WaitGroup // receipts outstanding on this socket
	var outstanding []string   // the values of this socket's publishes with receipts
	go func() {
		defer close(readDone)
		for {
			_, frame, err := conn.ReadMessage()
			if err != nil {
				select {
				case <-p.stop:
					if closeCodeOf(err) == websocket.CloseNormalClosure {
						return
					}
				default:
				}
				p.closed(closeCodeOf(err))
				return
			}
			var r struct {
				RefID json.RawMessage `json:"refid"`
				S     int             `json:"s"`
				P     struct {
					Code string `json:"code"`
				} `json:"p"`
			}
			if err := json.Unmarshal(frame, &r); err != nil {
				p.fail("got %.200s, want a receipt or an error", frame)
				continue
			}
			var value string
			if err := json.Unmarshal(r.RefID, &value); err != nil {
				p.fail("got %.200s, want a refid naming a publish", frame)
				continue
			}
			p.l.mu.Lock()
			fate := p.l.pubs[value]
			if fate == nil || fate.acked || fate.failed != "" {
				p.l.mu.Unlock()
				p.fail("got %.200s, an answer to nothing outstanding", frame)
				continue
			}
			if r.S == 0 {
				fate.acked = true
			} else {
				fate.failed = r.P.Code
			}
			p.l.mu.Unlock()
			if fate.receipt {
				pending.Done()
			}
		}
	}()

	ticker := time.NewTicker(p.interval)
	defer ticker.Stop()
	stopped := false
	for !stopped {
		select {
		case <-p.stop:
			stopped = true
			continue
		case <-readDone:
		case <-ticker.C:
		}
		select {
		case <-readDone:
			p.markAtClose(outstanding)
			return true
		default:
		}
		*seq++
		value := fmt.Sprintf("%s-%d", p.name, *seq)
		msg := map[string]any{"id": value, "t": "notif", "a": "create", "p": map[string]any{"t": p.topic, "m": value}}
		if p.receipts {
			msg["ack"] = true
		}
		frame, _ := json.Marshal(msg)
		fate := &pubFate{receipt: p.receipts, socket: p.socket}
		p.l.mu.Lock()
		p.l.pubs[value] = fate
		p.l.mu.Unlock()
		if p.receipts {
			pending.Add(1)
		}
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		err := conn.WriteMessage(websocket.TextMessage, frame)
		p.l.mu.Lock()
		fate.written = err == nil
		fate.writtenAt = time.Now()
		p.l.mu.Unlock()
		if err != nil {
			if p.receipts {
				pending.Done()
			}
			// The server closed the socket under the write; the reader reports how.
			select {
			case <-readDone:
			case <-time.After(writeTimeout):
				p.fail("write failed (%v) but the socket did not end", err)
			}
			p.markAtClose(outstanding)
			return true
		}
		if p.receipts {
			outstanding = append(outstanding, value)
		}
	}
	// Stopped: wait (bounded) for every receipt, then close with a close frame.
	answered := make(chan struct{})
	go func() { pending.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-readDone:
		p.markAtClose(outstanding)
	case <-time.After(drainTimeout):
		p.fail("receipts still outstanding %v after stop", drainTimeout)
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case <-readDone:
	case <-time.After(closeWait):
		conn.Close()
		<-readDone
	}
	return false
}

// closeWait bounds the wait for the server's answer to a client's close frame.
const closeWait = 10 * time.Second

// markAtClose marks the socket's unanswered receipts as cut off by its close.
func (p *seqPublisher) markAtClose(outstanding []string) {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	for _, v := range outstanding {
		if f := p.l.pubs[v]; !f.acked && f.failed == "" {
			f.atClose = true
		}
	}
}

// finish stops publishing and waits for the publisher's last receipts; it is idempotent.
func (p *seqPublisher) finish() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// seqSubscriber subscribes with sub (the p of topic/subscribe) and tallies every notification; with commit
// client it acknowledges each frame once it has tallied it. When the server closes its socket it dials again and
// subscribes again, unless stay is set (then a close is an error: the subscription must survive the fault).
type seqSubscriber struct {
	clientLife
	url       func() string
	sub       map[string]any
	ackClient bool
	stay      bool
	// retryRefused subscribes again, after subscribePause, when a subscribe is answered s:1.
	retryRefused bool
	ty           *tally
	stop         chan struct{}
	done         chan struct{}

	connMu sync.Mutex
	conn   *websocket.Conn

	smu        sync.Mutex
	subscribed []time.Time // every s:0 to a subscribe
	received   []time.Time // when each frame arrived
	refused    int         // subscribes answered s:1 (with retryRefused)
	// firstRefusal is the p of the first.
	firstRefusal string
	// ackRefused counts acks answered s:1; firstAckRefusal says where the first was and why.
	ackRefused      int
	firstAckRefusal string
}

// sockets is how many sockets the client has dialled.
func (cl *clientLife) sockets() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.connects)
}

// ackRefusals reports the acks refused, if any.
func (s *seqSubscriber) ackRefusals() string {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.ackRefused == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d acks refused, the first %s", s.name, s.ackRefused, s.firstAckRefusal)
}

// subscribePause is how long a subscriber with retryRefused waits before it asks again.
const subscribePause = 500 * time.Millisecond

func startSubscriber(t *testing.T, ty *tally, name string, sub map[string]any, url func() string) *seqSubscriber {
	t.Helper()
	s := &seqSubscriber{clientLife: clientLife{name: name}, url: url, sub: sub, ty: ty,
		ackClient: sub["commit"] == "client", stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	t.Cleanup(s.finish)
	return s
}

func (s *seqSubscriber) run() {
	defer close(s.done)
	for {
		conn := s.redial(s.url, s.stop)
		if conn == nil {
			return
		}
		s.connMu.Lock()
		s.conn = conn
		s.connMu.Unlock()
		again := s.serve(conn)
		conn.Close()
		if !again || s.stay {
			return
		}
	}
}

func (s *seqSubscriber) serve(conn *websocket.Conn) bool {
	subscribe, _ := json.Marshal(map[string]any{"id": "subscribe", "t": "topic", "a": "subscribe", "p": s.sub})
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, subscribe); err != nil {
		s.fail("subscribing: %v", err)
		return true
	}
	for {
		_, frame, err := conn.ReadMessage()
		now := time.Now()
		if err != nil {
			select {
			case <-s.stop:
				return false
			default:
			}
			s.closed(closeCodeOf(err))
			if s.stay {
				s.fail("socket closed (code %d: %v), want the subscription to survive", closeCodeOf(err), err)
			}
			return true
		}
		if t := bytes.TrimSpace(frame); len(t) > 0 && t[0] == '{' {
			var r struct {
				RefID string          `json:"refid"`
				S     int             `json:"s"`
				P     json.RawMessage `json:"p"`
			}
			_ = json.Unmarshal(frame, &r)
			switch {
			case r.RefID == "subscribe" && r.S == 0:
				s.smu.Lock()
				s.subscribed = append(s.subscribed, now)
				s.smu.Unlock()
			case r.RefID == "subscribe" && s.retryRefused:
				// Refused while Kafka is away: answered, which is all the protocol promises; ask again.
				s.smu.Lock()
				s.refused++
				if s.firstRefusal == "" {
					s.firstRefusal = string(r.P)
				}
				s.smu.Unlock()
				time.Sleep(subscribePause)
				conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				if err := conn.WriteMessage(websocket.TextMessage, subscribe); err != nil {
					s.fail("subscribing again: %v", err)
				}
			case r.RefID == "subscribe":
				s.fail("subscribe answered %.200s", frame)
			case s.ackClient && bytes.Contains(frame, []byte(`"a":"ack"`)):
				// An ack refused: its notifications come again (to whichever member), which the group's count
				// shows; the refusals are counted and logged.
				s.smu.Lock()
				s.ackRefused++
				if s.firstAckRefusal == "" {
					s.firstAckRefusal = fmt.Sprintf("on socket %d: %s", s.sockets(), r.P)
				}
				s.smu.Unlock()
			default:
				s.fail("got %.200s, want notifications", frame)
			}
			continue
		}
		var notes []struct {
			ID json.Number `json:"id"`
			P  *string     `json:"p"`
		}
		if err := json.Unmarshal(frame, &notes); err != nil || len(notes) == 0 {
			s.fail("got %.200s, want a notification frame", frame)
			continue
		}
		for _, n := range notes {
			if n.P != nil {
				s.ty.add(*n.P, now)
			}
		}
		s.smu.Lock()
		s.received = append(s.received, now)
		s.smu.Unlock()
		if s.ackClient {
			ack, _ := json.Marshal(map[string]any{"t": "notif", "a": "ack", "p": map[string]any{"id": notes[len(notes)-1].ID}})
			conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			// A failed ack is the socket closing: the read that follows says how.
			_ = conn.WriteMessage(websocket.TextMessage, ack)
		}
	}
}

// waitSubscribed waits (bounded) for the subscriber's first s:0.
func (s *seqSubscriber) waitSubscribed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(replyTimeout)
	for s.subscribedAfter(time.Time{}).IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not subscribed after %v: %v", s.name, replyTimeout, s.errors())
		}
		time.Sleep(faultPoll)
	}
}

// subscribedAfter returns the first subscribe s:0 after at, and receivedAfter the first frame after at.
func (s *seqSubscriber) subscribedAfter(at time.Time) time.Time {
	return firstAfter(&s.smu, &s.subscribed, at)
}
func (s *seqSubscriber) receivedAfter(at time.Time) time.Time {
	return firstAfter(&s.smu, &s.received, at)
}

func firstAfter(mu *sync.Mutex, times *[]time.Time, at time.Time) time.Time {
	mu.Lock()
	defer mu.Unlock()
	for _, x := range *times {
		if x.After(at) {
			return x
		}
	}
	return time.Time{}
}

// cut closes the subscriber's current TCP connection without a close frame; with rst the kernel sends a reset
// instead of a FIN.
func (s *seqSubscriber) cut(rst bool) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn == nil {
		return
	}
	cutConn(s.conn, rst)
}

func (s *seqSubscriber) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
		s.connMu.Lock()
		if s.conn != nil {
			_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			// The read loop ends on the server's answer, or at this deadline.
			s.conn.SetReadDeadline(time.Now().Add(closeWait))
		}
		s.connMu.Unlock()
	}
	<-s.done
}

// waitGroupCovers waits (bounded) until the tally holds every value of want, and returns those it still lacks.
func waitGroupCovers(ty *tally, want [][]byte) []string {
	deadline := time.Now().Add(drainTimeout)
	for {
		missing := ty.missing(want)
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(faultPoll)
	}
}

// assertGroup fails the test for every record of Kafka a `commit: client` group never processed, and logs the
// acks its members had refused.
func assertGroup(t *testing.T, scenario string, ty *tally, inKafka [][]byte, members ...*seqSubscriber) {
	t.Helper()
	for _, m := range members {
		if r := m.ackRefusals(); r != "" {
			t.Logf("%s: %s", scenario, r)
		}
	}
	missing := waitGroupCovers(ty, inKafka)
	t.Logf("%s: commit:client group: %d records in Kafka, %d processed, %d never processed, %d processed more than once",
		scenario, len(inKafka), len(inKafka)-len(missing), len(missing), ty.duplicated())
	if len(missing) > 0 {
		t.Errorf("%s: the commit:client group never processed %d of %d records in Kafka (first %q), want none",
			scenario, len(missing), len(inKafka), missing[:min(5, len(missing))])
	}
}

// clientErrors fails the test with what the clients saw go wrong.
func clientErrors(t *testing.T, lives ...*clientLife) {
	t.Helper()
	for _, cl := range lives {
		for _, e := range cl.errors() {
			t.Errorf("%s", e)
		}
	}
}

// --- Caddy: reloads and kills -----------------------------------------------------------------------------

// reloadTimeout bounds POST /load: with close_delay 0 it returns once every old socket is closed.
const reloadTimeout = time.Minute

// reload loads the Caddyfile of opts through the admin API (POST /load, adapted by Caddy from text/caddyfile)
// and returns how long the request took.
func (c *caddyServer) reload(t *testing.T, opts caddyOptions) time.Duration {
	t.Helper()
	if c.admin == 0 {
		t.Fatal("reload: caddy was started without its admin API (caddyOptions.admin)")
	}
	if opts.groupID == "" {
		opts.groupID = c.groupID
	}
	caddyfile, err := c.caddyfile(opts)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(c.Dir, "Caddyfile.reload"), caddyfile, 0o644)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", c.admin), bytes.NewReader(caddyfile))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	client := &http.Client{Timeout: reloadTimeout}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST /load: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /load: got %s: %s, want 200", resp.Status, body)
	}
	return time.Since(start)
}

// closeDelayLine is the wskafka line that spreads a reload's closes over d, when the binary knows close_delay;
// the second result says whether it does. Builds from before close_delay close every socket at once on a reload,
// which is what close_delay 0 asks for, so an at-once scenario runs on them without the line.
func closeDelayLine(t *testing.T, d time.Duration) (string, bool) {
	t.Helper()
	closeDelayOnce.Do(func() {
		dir := t.TempDir()
		path := filepath.Join(dir, "Caddyfile")
		config := "{\n\tadmin off\n}\nhttp://127.0.0.1:1 {\n\twskafka {\n\t\tbrokers 127.0.0.1:1\n\t\tclose_delay 1s\n\t}\n}\n"
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := runCaddy(t, caddyBin, nil, "adapt", "--config", path, "--adapter", "caddyfile")
		closeDelayKnown = err == nil
	})
	if !closeDelayKnown {
		return "", false
	}
	return fmt.Sprintf("close_delay %s", d), true
}

var (
	closeDelayOnce  sync.Once
	closeDelayKnown bool
)

// kill ends Caddy with SIGKILL: no close frame, no flush, no group leave.
func (c *caddyServer) kill() {
	killGroup(c.Pid())
	<-c.Exited
}

// killGroup sends SIGKILL to a process group.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// cutConn closes a WebSocket's TCP connection without a close frame: a FIN, or with rst a reset (SO_LINGER 0).
func cutConn(conn *websocket.Conn, rst bool) {
	if tcp, ok := conn.UnderlyingConn().(*net.TCPConn); ok && rst {
		_ = tcp.SetLinger(0)
	}
	_ = conn.UnderlyingConn().Close()
}
