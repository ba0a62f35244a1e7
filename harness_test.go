package wskafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
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
	return newClient(t, conn)
}

// newClient starts reading conn into the client's channel.
func newClient(t *testing.T, conn *websocket.Conn) *client {
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

// receive collects notification values (of string p) until n have arrived, failing the test if they do not in
// time.
func (c *client) receive(n int) []string {
	c.t.Helper()
	var values []string
	for _, el := range c.elements(n) {
		var note notification
		if err := json.Unmarshal(el, &note); err != nil || note.T != "notif" || note.P == nil {
			c.t.Fatalf("notification %s: got t %q, p %v (%v)", el, note.T, note.P, err)
		}
		values = append(values, *note.P)
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

// replies waits for the replies to every one of refids, in whichever order they come: the elements of a request
// array are answered as each is done (a publish when Kafka has it, a topic request when the lane reaches it).
func (c *client) replies(refids ...string) map[string]reply {
	c.t.Helper()
	got := make(map[string]reply, len(refids))
	deadline := time.After(waitLimit)
	for len(got) < len(refids) {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed with %d of the replies to %v", len(got), refids)
			}
			if strings.HasPrefix(string(f), "[") {
				continue // a notification frame
			}
			var r reply
			if err := json.Unmarshal(f, &r); err != nil {
				c.t.Fatalf("reply %s is not JSON: %v", f, err)
			}
			if slices.Contains(refids, string(r.RefID)) {
				got[string(r.RefID)] = r
			}
		case <-deadline:
			c.t.Fatalf("within %v: %d of the replies to %v", waitLimit, len(got), refids)
		}
	}
	return got
}

// replyAndElements waits for both the reply to refid and n notifications, in whichever order they come: with
// mq_interval 0 a record published with a receipt can be delivered before the receipt (replyTo would skip it).
func (c *client) replyAndElements(refid string, n int) (reply, []json.RawMessage) {
	c.t.Helper()
	var r *reply
	var els []json.RawMessage
	deadline := time.After(waitLimit)
	for r == nil || len(els) < n {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for the reply to %s and %d notifications", refid, n)
			}
			if strings.HasPrefix(string(f), "[") {
				var batch []json.RawMessage
				if err := json.Unmarshal(f, &batch); err != nil {
					c.t.Fatalf("notification frame %s: %v", f, err)
				}
				els = append(els, batch...)
				continue
			}
			var got reply
			if err := json.Unmarshal(f, &got); err != nil {
				c.t.Fatalf("reply %s is not JSON: %v", f, err)
			}
			if string(got.RefID) == refid {
				r = &got
			}
		case <-deadline:
			c.t.Fatalf("within %v: reply to %s %v, %d of %d notifications", waitLimit, refid, r != nil, len(els), n)
		}
	}
	return *r, els
}

// elements collects notification elements, each as its JSON text, until at least n have arrived, failing the test
// if they do not in time. It returns every element of the frames read, which may be more than n.
func (c *client) elements(n int) []json.RawMessage {
	c.t.Helper()
	var els []json.RawMessage
	deadline := time.After(waitLimit)
	for len(els) < n {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed after %d of %d notifications", len(els), n)
			}
			if !strings.HasPrefix(string(f), "[") {
				continue
			}
			var batch []json.RawMessage
			if err := json.Unmarshal(f, &batch); err != nil {
				c.t.Fatalf("notification frame %s: %v", f, err)
			}
			els = append(els, batch...)
		case <-deadline:
			c.t.Fatalf("got %d notifications, want %d", len(els), n)
		}
	}
	return els
}

// silent asserts that no frame of any kind arrives within d. Like quiet, it is used only after a positive check.
func (c *client) silent(d time.Duration) {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if ok {
			c.t.Fatalf("got frame %s, want none", f)
		}
	case <-time.After(d):
	}
}

// createTopicPartitions creates topics with the given number of partitions directly on the broker, and waits
// until every partition's leader answers for it.
func createTopicPartitions(t *testing.T, partitions int, names ...string) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(testBrokers)}
	req := &kafka.CreateTopicsRequest{}
	for _, n := range names {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: n, NumPartitions: partitions, ReplicationFactor: -1})
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
	for _, n := range names {
		waitTopicReady(t, n, partitions)
	}
}

// waitTopicReady polls until topic has the given number of partitions and every one answers a ListOffsets
// request: a real Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after it has created a topic.
func waitTopicReady(t *testing.T, topic string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	var last error
	for time.Now().Before(deadline) {
		if last = topicReady(topic, partitions); last == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("topic %s not ready within %v: %v", topic, waitLimit, last)
}

func topicReady(topic string, partitions int) error {
	transport := &kafka.Transport{} // fresh metadata: the default transport's cache can predate the topic
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport, Timeout: waitLimit}
	meta, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil || len(meta.Topics[0].Partitions) != partitions {
		return fmt.Errorf("metadata: %+v", meta.Topics)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range meta.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(context.Background(), req)
	if err != nil {
		return err
	}
	if len(res.Topics[topic]) != partitions {
		return fmt.Errorf("offsets of %d partitions, want %d", len(res.Topics[topic]), partitions)
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
	}
	return nil
}

// produceMessages writes messages, with their keys, headers and times, to topic straight to the broker.
func produceMessages(t *testing.T, topic string, msgs ...kafka.Message) {
	t.Helper()
	transport := &kafka.Transport{} // fresh metadata: the default transport's cache can predate the topic
	defer transport.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(testBrokers), Topic: topic, RequiredAcks: kafka.RequireOne, BatchTimeout: time.Millisecond, Transport: transport}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// storedRecord is one record as the broker holds it: a null key or value is nil, an empty one is not.
type storedRecord struct {
	Key, Value []byte
	Headers    []kafka.Header
	Time       time.Time
}

// readRecord fetches the record at offset of one partition straight from the broker, with the low-level Fetch
// API, which keeps a null value apart from an empty one (kafka-go's Reader does not).
func readRecord(t *testing.T, topic string, partition int, offset int64) storedRecord {
	t.Helper()
	transport := &kafka.Transport{} // fresh metadata: the default transport's cache can predate the topic
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport}
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		res, err := client.Fetch(ctx, &kafka.FetchRequest{
			Topic: topic, Partition: partition, Offset: offset, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
		})
		cancel()
		if err != nil {
			t.Fatalf("fetching %s/%d at %d: %v", topic, partition, offset, err)
		}
		if res.Error != nil {
			t.Fatalf("fetching %s/%d at %d: %v", topic, partition, offset, res.Error)
		}
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("reading %s/%d at %d: %v", topic, partition, offset, err)
			}
			if r.Offset != offset {
				continue
			}
			return storedRecord{Key: recordBytes(t, r.Key), Value: recordBytes(t, r.Value), Headers: r.Headers, Time: r.Time}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no record at %s/%d offset %d within %v", topic, partition, offset, waitLimit)
	return storedRecord{}
}

func recordBytes(t *testing.T, b kafka.Bytes) []byte {
	t.Helper()
	if b == nil {
		return nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	if _, err := io.ReadFull(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}
