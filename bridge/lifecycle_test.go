package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// sessionKafka is the Kafka port for tests of sessions: publishes are recorded, and topic creation waits until
// its context ends, as against a broker that does not answer. Other methods are not used by these tests.
type sessionKafka struct {
	Kafka
	producer recordingProducer
	// creating receives once a create request has reached Kafka; cancelled once its context has ended.
	creating, cancelled chan struct{}
}

func newSessionKafka() *sessionKafka {
	return &sessionKafka{creating: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
}

func (k *sessionKafka) Produce(ctx context.Context, records []Record) []error {
	return k.producer.Produce(ctx, records)
}

func (k *sessionKafka) CreateTopics(ctx context.Context, _ []TopicSpec) (map[string]error, error) {
	k.creating <- struct{}{}
	<-ctx.Done()
	k.cancelled <- struct{}{}
	return nil, ctx.Err()
}

// produced lists the values Kafka took, in order.
func (k *sessionKafka) produced() []string {
	var values []string
	for _, batch := range k.producer.got() {
		values = append(values, batch...)
	}
	return values
}

func sessionConfig() Config {
	return Config{
		RequestTimeout: time.Minute,
		WriteTimeout:   time.Minute,
		CloseTimeout:   10 * time.Second,
		Producer:       ProducerConfig{MQLimit: 1000, MQInterval: 200 * time.Millisecond, MaxMessageBytes: 1 << 20, MaxBufferBytes: 1 << 30},
		Limits:         Limits{MaxFrameBytes: 1 << 20, MaxQueueBytes: 1 << 20},
	}
}

// serveHub serves WebSocket sessions of a hub on cfg and k, over TLS when asked, and returns the hub and a dialer
// with the URL to use.
func serveHub(t *testing.T, cfg Config, k Kafka, overTLS bool) (*Hub, *websocket.Dialer, string) {
	t.Helper()
	hub := NewHub(cfg, k, nil, zap.NewNop())
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		hub.Go(conn, Client{}, func() {})
	})
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	var server *httptest.Server
	if overTLS {
		server = httptest.NewTLSServer(handler)
		dialer.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	} else {
		server = httptest.NewServer(handler)
	}
	t.Cleanup(func() {
		hub.Close(websocket.CloseGoingAway, 0)
		hub.Wait()
		server.Close()
	})
	return hub, dialer, "ws" + strings.TrimPrefix(server.URL, "http")
}

// onlySession waits (bounded) for the hub's one session and returns it.
func onlySession(t *testing.T, hub *Hub) *Session {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if s := hub.snapshot(); len(s) == 1 {
			return s[0]
		}
	}
	t.Fatal("no session")
	return nil
}

func dial(t *testing.T, dialer *websocket.Dialer, url string) *websocket.Conn {
	t.Helper()
	conn, _, err := dialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// A reload closes a socket while its client publishes as fast as it can: every publish the client sent before it
// answered the close frame reaches Kafka, and every receipt that reached the client is for a publish it sent. The
// close frame says 1012.
func TestServerCloseLosesNoPublish(t *testing.T) {
	tests := []struct {
		name     string
		receipts bool
		interval time.Duration
	}{
		{name: "no receipts, batched", interval: 200 * time.Millisecond},
		{name: "no receipts, at once"},
		{name: "receipts, batched", receipts: true, interval: 50 * time.Millisecond},
		{name: "receipts, at once", receipts: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newSessionKafka()
			cfg := sessionConfig()
			cfg.Producer.MQInterval, cfg.Producer.Receipts = tt.interval, tt.receipts
			hub, dialer, url := serveHub(t, cfg, k, false)
			client := dial(t, dialer, url)

			const most = 20000
			sent := 0
			sending := make(chan struct{})
			go func() {
				defer close(sending)
				for i := range most {
					frame := fmt.Sprintf(`{"id":%d,"t":"notif","a":"create","p":{"t":"t","m":"%d"}}`, i, i)
					if err := client.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
						return // the client has answered the close frame
					}
					sent = i + 1
				}
			}()
			var receipts []int
			var closeErr error
			reading := make(chan struct{})
			go func() {
				defer close(reading)
				for {
					_, msg, err := client.ReadMessage()
					if err != nil {
						closeErr = err
						return
					}
					var r struct {
						Refid int `json:"refid"`
						S     int `json:"s"`
					}
					if err := json.Unmarshal(msg, &r); err != nil || r.S != 0 {
						t.Errorf("got %s (%v), want receipts", msg, err)
					}
					receipts = append(receipts, r.Refid)
				}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for len(k.produced()) < 100 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			hub.Close(websocket.CloseServiceRestart, 0)
			<-reading
			<-sending
			hub.Wait()

			if !websocket.IsCloseError(closeErr, websocket.CloseServiceRestart) {
				t.Fatalf("got %v, want a close frame with 1012", closeErr)
			}
			got := k.produced()
			want := make([]string, sent)
			for i := range want {
				want[i] = strconv.Itoa(i)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("Kafka got %d publishes, want the %d sent, in order (first difference at %d)", len(got), sent, firstDifference(got, want))
			}
			for i, refid := range receipts {
				if refid != i {
					t.Fatalf("receipt %d answers publish %d; want receipts in order of the publishes", i, refid)
				}
			}
			if tt.receipts && len(receipts) == 0 {
				t.Fatal("no receipt reached the client before the close frame")
			}
			t.Logf("%d sent, %d in Kafka, %d receipts before the close frame", sent, len(got), len(receipts))
		})
	}
}

func firstDifference(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A client that publishes and then closes has every publish in Kafka, and its close frame answered with its code.
func TestPeerCloseLosesNoPublish(t *testing.T) {
	k := newSessionKafka()
	hub, dialer, url := serveHub(t, sessionConfig(), k, false)
	client := dial(t, dialer, url)
	var want []string
	for i := range 500 {
		want = append(want, strconv.Itoa(i))
		frame := fmt.Sprintf(`{"t":"notif","p":{"t":"t","m":"%d"}}`, i)
		if err := client.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "")
	if err := client.WriteControl(websocket.CloseMessage, msg, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("got %v, want the close frame answered with 1001", err)
	}
	hub.Close(websocket.CloseGoingAway, 0)
	hub.Wait()
	if got := k.produced(); !slices.Equal(got, want) {
		t.Fatalf("Kafka got %d publishes, want the %d sent, in order", len(got), len(want))
	}
}

// A client whose request waits on Kafka far longer than the keepalive allows a silent peer, while it answers
// pings, is not closed as dead; its close frame ends the wait at once.
func TestWaitingOnKafkaIsNotDead(t *testing.T) {
	k := newSessionKafka()
	cfg := sessionConfig()
	// Short enough that the wait below is five times what a silent peer is given, long enough that a loaded
	// machine answers every ping in time.
	cfg.Limits.PingInterval, cfg.Limits.PongTimeout = 100*time.Millisecond, 500*time.Millisecond
	hub, dialer, url := serveHub(t, cfg, k, false)
	client := dial(t, dialer, url)
	closed := make(chan error, 1)
	go func() { // reading answers the server's pings
		for {
			if _, _, err := client.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	if err := client.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"t":"topic","a":"create","p":["t"]}`)); err != nil {
		t.Fatal(err)
	}
	<-k.creating
	select {
	case err := <-closed:
		t.Fatalf("the socket closed while its request waited on Kafka: %v", err)
	case <-time.After(5 * (cfg.Limits.PingInterval + cfg.Limits.PongTimeout)):
	}
	if n := hub.Sessions(); n != 1 {
		t.Fatalf("got %d sessions, want the waiting one open", n)
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := client.WriteControl(websocket.CloseMessage, msg, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's close frame did not cancel its request's wait on Kafka")
	}
	if err := <-closed; !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("got %v, want the close frame answered", err)
	}
}

// Frames larger than one write reach a TLS client intact while the server pings it and answers its pings as fast
// as the keepalive and the client can: no control frame lands inside a data frame (a *tls.Conn writes no
// vectors, so a large frame takes more than one write).
func TestControlFramesNeverInsideDataFrames(t *testing.T) {
	cfg := sessionConfig()
	cfg.Limits.PingInterval, cfg.Limits.PongTimeout = 2*time.Millisecond, time.Minute
	cfg.Limits.MaxQueueBytes = 4 << 20
	hub, dialer, url := serveHub(t, cfg, newSessionKafka(), true)
	client := dial(t, dialer, url)
	var pongs sync.WaitGroup
	stopPinging := make(chan struct{})
	pongs.Go(func() {
		for {
			select {
			case <-stopPinging:
				return
			case <-time.After(100 * time.Microsecond):
				_ = client.WriteControl(websocket.PingMessage, []byte("client"), time.Now().Add(time.Second))
			}
		}
	})
	defer func() { close(stopPinging); pongs.Wait() }()
	session := onlySession(t, hub)
	pinged := 0
	client.SetPingHandler(func(data string) error {
		pinged++
		return client.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	const frames, size = 100, 3*coalesceBytes + 7
	go func() {
		for i := range frames {
			session.send(dataFrame(bytes.Repeat([]byte{'a' + byte(i%26)}, size)))
		}
	}()
	for i := range frames {
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, got, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v (after %d pings)", i, err, pinged)
		}
		if want := bytes.Repeat([]byte{'a' + byte(i%26)}, size); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes %.20q…, want %d bytes %.20q…", i, len(got), got, len(want), want)
		}
	}
	if pinged == 0 {
		t.Fatal("the server sent no ping: the test proves nothing")
	}
	t.Logf("%d frames of %d bytes intact over TLS with %d pings from the server", frames, size, pinged)
}

// The keepalive asks a socket whose writer is stuck for a ping without waiting for it, so one stuck socket delays
// no other socket's keepalive.
func TestKeepaliveNeverWaitsForAStuckSocket(t *testing.T) {
	cfg := sessionConfig()
	hub, _, url := serveHub(t, cfg, newSessionKafka(), false)
	// A client that never reads, with a small receive buffer: the server's writes soon block.
	dialer := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return conn, err
	}}
	dial(t, dialer, url)
	session := onlySession(t, hub)
	_ = session.conn.NetConn().(*net.TCPConn).SetWriteBuffer(4 << 10)
	// Fill the socket until a frame waits in the queue: the writer is stuck in a write.
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		for range 64 {
			if !session.send(dataFrame(make([]byte, 256<<10))) {
				return
			}
		}
	}()
	queued := func() int64 {
		session.queued.mu.Lock()
		defer session.queued.mu.Unlock()
		return session.queued.used
	}
	for deadline := time.Now().Add(10 * time.Second); queued() < 512<<10; {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not get stuck")
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		now := time.Now()
		session.lastActive = now.Add(-time.Hour)
		session.keepalive(now, time.Second, 2*time.Hour) // quiet for longer than the interval: ping
		close(done)
	}()
	select {
	case <-done:
	case <-session.dataEnd:
		t.Fatal("the keepalive waited for the stuck writer until its write failed")
	}
	if session.closeFrameOut() {
		t.Fatal("the writer is no longer stuck: the test proves nothing")
	}
	_ = session.conn.Close()
	<-filled
}

// After a reload the sockets keep working under the old hub, each closed with 1012 at its own moment within the
// spread; exiting meanwhile closes the rest at once with 1001.
func TestReloadSpreadsCloses(t *testing.T) {
	tests := []struct {
		name   string
		spread time.Duration
		exit   bool // Caddy exits during the spread
		want   int
	}{
		{name: "each within the spread", spread: 200 * time.Millisecond, want: websocket.CloseServiceRestart},
		{name: "exit hurries the rest", spread: time.Hour, exit: true, want: websocket.CloseGoingAway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub, dialer, url := serveHub(t, sessionConfig(), newSessionKafka(), false)
			clients := make([]*websocket.Conn, 20)
			for i := range clients {
				clients[i] = dial(t, dialer, url)
			}
			for deadline := time.Now().Add(10 * time.Second); hub.Sessions() < len(clients); {
				if time.Now().After(deadline) {
					t.Fatalf("got %d sessions, want %d", hub.Sessions(), len(clients))
				}
				time.Sleep(time.Millisecond)
			}
			hub.Close(websocket.CloseServiceRestart, tt.spread)
			if tt.exit {
				for i, c := range clients { // still served
					if err := c.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"t":"health"}`)); err != nil {
						t.Fatal(err)
					}
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, msg, err := c.ReadMessage(); err != nil || !strings.Contains(string(msg), `"s":0`) {
						t.Fatalf("client %d during the spread: got %s, %v; want its health answered", i, msg, err)
					}
				}
				hub.Close(websocket.CloseGoingAway, 0)
			}
			for i, c := range clients {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, tt.want) {
					t.Fatalf("client %d: got %v, want a close frame with %d", i, err, tt.want)
				}
			}
			hub.Wait()
		})
	}
}

// Spread over a window, sessions close at moments of their own, the members of one group at the same one.
func TestCloseMoments(t *testing.T) {
	const spread = time.Hour
	sessions := make([]*Session, 300)
	groups := make(map[*Session]string)
	for i := range sessions {
		sessions[i] = new(Session)
		if i%3 != 0 { // a third not in a group, the rest in ten groups of twenty
			groups[sessions[i]] = fmt.Sprint("g", i%10)
		}
	}
	moments := closeMoments(slices.Values(sessions), spread, func(s *Session) (string, bool) { g, ok := groups[s]; return g, ok })
	groupMoment := make(map[string]time.Duration)
	distinct := make(map[time.Duration]bool)
	for _, s := range sessions {
		m, ok := moments[s]
		if !ok || m < 0 || m >= spread {
			t.Fatalf("got moment %v (%v), want one within [0, %v)", m, ok, spread)
		}
		distinct[m] = true
		g, inGroup := groups[s]
		if !inGroup {
			continue
		}
		if first, seen := groupMoment[g]; seen && first != m {
			t.Fatalf("group %s: members at %v and %v, want one moment", g, first, m)
		}
		groupMoment[g] = m
	}
	// 100 sessions of their own and 10 groups: 110 moments, unless two random ones collide (about 1e-9).
	if len(distinct) < 105 {
		t.Fatalf("got %d distinct moments, want about 110: not spread", len(distinct))
	}
}
