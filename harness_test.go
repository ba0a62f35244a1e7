package wskafka

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/caddyserver/caddy/v2"
)

// The integration tests run the handler inside a real Caddy instance (one per test, loaded from JSON), reached
// by real WebSocket clients over TCP, in front of franz-go's in-process broker, or of the Kafka cluster named
// by KAFKA_BROKERS when it is set (make test runs them against both).

// testBrokers is the address of the broker every test in the package shares.
var testBrokers string

func TestMain(m *testing.M) {
	if brokers := os.Getenv("KAFKA_BROKERS"); brokers != "" {
		testBrokers = strings.Split(brokers, ",")[0]
		code := m.Run()
		caddy.Stop()
		os.Exit(code)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting kfake:", err)
		os.Exit(1)
	}
	testBrokers = cluster.ListenAddrs()[0]
	code := m.Run()
	caddy.Stop()
	cluster.Close()
	os.Exit(code)
}

const waitLimit = 10 * time.Second

// server is one Caddy instance serving the handler at ws://<addr>/.
type server struct {
	url string
}

type serverOptions struct {
	handler   map[string]any // the handler's JSON config; "handler" and default brokers are filled in
	accessLog bool
}

// startServer loads a Caddy config with the handler on a free loopback port; the config is unloaded when the
// test ends.
func startServer(t *testing.T, opts serverOptions) server {
	t.Helper()
	handler := map[string]any{"handler": "wskafka", "brokers": []string{testBrokers}}
	for k, v := range opts.handler {
		handler[k] = v
	}
	addr := freeAddr(t)
	srv := map[string]any{
		"listen": []string{addr},
		"routes": []any{map[string]any{"handle": []any{
			handler,
			map[string]any{"handler": "static_response", "body": "not a websocket", "status_code": 200},
		}}},
	}
	if opts.accessLog {
		srv["logs"] = map[string]any{}
	}
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps":    map[string]any{"http": map[string]any{"servers": map[string]any{"test": srv}}},
	}
	loadConfig(t, cfg)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return server{url: "ws://" + addr + "/"}
}

func loadConfig(t *testing.T, cfg map[string]any) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// client is a WebSocket client that reads every frame into a channel, so tests can wait for frames with a
// deadline.
type client struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan []byte
	closed chan error // receives the read error that ended the connection
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dialing %s: %v (response %v)", url, err, resp)
	}
	c := &client{t: t, conn: conn, frames: make(chan []byte, 1024), closed: make(chan error, 1)}
	go func() {
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				c.closed <- err
				close(c.frames)
				return
			}
			c.frames <- data
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *client) send(frame string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("sending %s: %v", frame, err)
	}
}

// next returns the next frame, failing the test if none comes in time.
func (c *client) next() []byte {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatal("connection closed while waiting for a frame")
		}
		return f
	case <-time.After(waitLimit):
		c.t.Fatal("no frame within", waitLimit)
	}
	return nil
}

// reply is a decoded reply frame.
type reply struct {
	ID    json.RawMessage `json:"id"`
	RefID json.RawMessage `json:"refid"`
	T     string          `json:"t"`
	A     string          `json:"a"`
	S     *int            `json:"s"`
	P     json.RawMessage `json:"p"`
}

func (r reply) errorCode() string {
	var p struct{ Code string }
	json.Unmarshal(r.P, &p)
	return p.Code
}

// request sends a frame and returns the reply whose refid is refid, collecting notifications that arrive first.
func (c *client) request(frame, refid string) reply {
	c.t.Helper()
	c.send(frame)
	return c.replyTo(refid)
}

func (c *client) replyTo(refid string) reply {
	c.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for the reply to %s", refid)
			}
			if strings.HasPrefix(string(f), "[") {
				continue // a notification frame
			}
			var r reply
			if err := json.Unmarshal(f, &r); err != nil {
				c.t.Fatalf("reply %s is not JSON: %v", f, err)
			}
			if string(r.RefID) == refid {
				return r
			}
		case <-deadline:
			c.t.Fatalf("no reply to %s within %v", refid, waitLimit)
		}
	}
}

// notification is one element of a received notification frame.
type notification struct {
	ID json.RawMessage `json:"id"`
	T  string          `json:"t"`
	P  *string         `json:"p"`
}

// receive collects notification values until n have arrived, failing the test if they do not in time.
func (c *client) receive(n int) []string {
	c.t.Helper()
	var values []string
	deadline := time.After(waitLimit)
	for len(values) < n {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed after %d of %d notifications", len(values), n)
			}
			if !strings.HasPrefix(string(f), "[") {
				continue
			}
			var ns []notification
			if err := json.Unmarshal(f, &ns); err != nil {
				c.t.Fatalf("notification frame %s: %v", f, err)
			}
			for _, n := range ns {
				if n.T != "notif" || n.P == nil {
					c.t.Fatalf("notification %s: got t %q, p %v", f, n.T, n.P)
				}
				values = append(values, *n.P)
			}
		case <-deadline:
			c.t.Fatalf("got %d notifications, want %d", len(values), n)
		}
	}
	return values
}

// quiet asserts that no notification arrives within d. Used only after a positive check has shown that
// notifications flow, so a failure means something was delivered that should not have been.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if ok && strings.HasPrefix(string(f), "[") {
				c.t.Fatalf("got notification %s, want none", f)
			}
		case <-timeout:
			return
		}
	}
}

// topicName returns a topic name unique to the test.
func topicName(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("%s.%d", name, time.Now().UnixNano())
}

// createTopic creates topics directly on the broker.
func createTopic(t *testing.T, names ...string) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(testBrokers)}
	req := &kafka.CreateTopicsRequest{}
	for _, n := range names {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: n, NumPartitions: -1, ReplicationFactor: -1})
	}
	res, err := client.CreateTopics(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for n, err := range res.Errors {
		if err != nil {
			t.Fatalf("creating %s: %v", n, err)
		}
	}
}

// readTopic waits until topic holds n records, then reads them straight from the broker, partition by
// partition.
func readTopic(t *testing.T, topic string, n int) []string {
	t.Helper()
	waitRecords(t, topic, int64(n))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", testBrokers)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{testBrokers}, Topic: topic, Partition: p.ID, MaxWait: 50 * time.Millisecond})
		high, err := kafka.DialLeader(ctx, "tcp", testBrokers, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := high.ReadLastOffset()
		high.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(0); i < last; i++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("reading %s/%d: %v", topic, p.ID, err)
			}
			values = append(values, string(m.Value))
		}
		r.Close()
	}
	if len(values) != n {
		t.Fatalf("topic %s holds %d records %q, want %d", topic, len(values), values, n)
	}
	return values
}

// produce writes values to topic straight to the broker.
func produce(t *testing.T, topic string, values ...string) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(testBrokers), Topic: topic, RequiredAcks: kafka.RequireOne, BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// get fetches url over plain HTTP.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}
