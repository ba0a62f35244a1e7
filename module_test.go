package wskafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/segmentio/kafka-go"
)

// The seed README's conversation, answered as protocol-notes.md says.
func TestSeedConversation(t *testing.T) {
	for _, accessLog := range []bool{false, true} {
		// Caddy ≥ 2.11.5 hides http.Hijacker behind Unwrap; the access log's recorder used to hide that bug.
		t.Run(fmt.Sprintf("access_log=%v", accessLog), func(t *testing.T) {
			srv := startServer(t, serverOptions{accessLog: accessLog})
			c := dial(t, srv.url)
			t1, t2 := topicName(t)+".a", topicName(t)+".b"

			r := c.request(`{"id":1,"t":"topic","a":"create","p":["`+t1+`","`+t2+`"]}`, "1")
			if *r.S != 0 || string(r.P) != `["`+t1+`","`+t2+`"]` || r.T != "topic" || r.A != "create" {
				t.Fatalf("create: got %+v", r)
			}

			r = c.request(`{"id":23,"t":"topic","a":"list"}`, "23")
			var list []struct {
				Topic     string `json:"topic"`
				Partition int    `json:"partition"`
			}
			if err := json.Unmarshal(r.P, &list); err != nil || *r.S != 0 {
				t.Fatalf("list: got %s (%v)", r.P, err)
			}
			perTopic := map[string]int{}
			for i, e := range list {
				perTopic[e.Topic]++
				if strings.HasPrefix(e.Topic, "__") {
					t.Errorf("list shows internal topic %s", e.Topic)
				}
				if i > 0 && (list[i-1].Topic > e.Topic || list[i-1].Topic == e.Topic && list[i-1].Partition >= e.Partition) {
					t.Errorf("list not sorted at %d: %v then %v", i, list[i-1], e)
				}
			}
			if perTopic[t1] == 0 || perTopic[t1] != perTopic[t2] {
				t.Fatalf("list: got partitions %v, want both new topics with the same count", perTopic)
			}

			r = c.request(`{"id":1000,"t":"topic","a":"subscribe","p":{"t":["`+t1+`","`+t2+`"],"consumer_group":"`+t1+`"}}`, "1000")
			if *r.S != 0 || string(r.P) != `["`+t1+`","`+t2+`"]` {
				t.Fatalf("subscribe: got s %d p %s", *r.S, r.P)
			}

			c.send(`{"id":1320,"t":"notif","a":"create","p":{"t":"` + t1 + `","m":"{custom_message:'msg'}"}}`)
			c.send(`{"id":1321,"t":"notif","p":{"t":"` + t2 + `","m":{"x": 1}}}`)
			got := c.receive(2)
			slices.Sort(got)
			if want := []string{`{"x":1}`, `{custom_message:'msg'}`}; !slices.Equal(got, want) {
				t.Fatalf("received %q, want %q", got, want)
			}

			r = c.request(`{"id":1500,"t":"health"}`, "1500")
			var health struct {
				Consumers []struct {
					WS     uint64   `json:"ws"`
					Topics []string `json:"topics"`
				} `json:"consumers"`
			}
			if err := json.Unmarshal(r.P, &health); err != nil || r.T != "health" || r.A != "" {
				t.Fatalf("health: got %+v (%v)", r, err)
			}
			if len(health.Consumers) != 1 || !slices.Equal(health.Consumers[0].Topics, []string{t1, t2}) {
				t.Fatalf("health: got %s, want this socket with both topics", r.P)
			}

			r = c.request(`{"id":1300,"t":"topic","a":"unsubscribe"}`, "1300")
			if *r.S != 0 || r.P != nil {
				t.Fatalf("unsubscribe: got %+v", r)
			}
			r = c.request(`{"id":1501,"t":"health"}`, "1501")
			if !strings.Contains(string(r.P), `"topics":[]`) {
				t.Fatalf("health after unsubscribe: got %s, want topics []", r.P)
			}
		})
	}
}

func TestNonUpgradeGoesToNextHandler(t *testing.T) {
	srv := startServer(t, serverOptions{})
	status, body := get(t, "http"+strings.TrimPrefix(srv.url, "ws"))
	if status != 200 || body != "not a websocket" {
		t.Fatalf("got %d %q, want the next handler's 200 %q", status, body, "not a websocket")
	}
}

// Bad input is answered with s:1, the request's refid and a code, and the socket keeps working.
func TestBadInput(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := dial(t, srv.url)
	missing := topicName(t)
	tests := []struct {
		name, frame, refid, code string
	}{
		{"malformed JSON", `{"id":1,"t":`, "", "invalid_json"},
		{"not an object", `[1,2]`, "", "invalid_frame"},
		{"unknown type", `{"id":2,"t":"nope"}`, "2", "unknown_type"},
		{"missing type", `{"id":3}`, "3", "unknown_type"},
		{"unknown topic action", `{"id":4,"t":"topic","a":"explode"}`, "4", "unknown_action"},
		{"missing topic action", `{"id":5,"t":"topic"}`, "5", "unknown_action"},
		{"unknown notif action", `{"id":6,"t":"notif","a":"delete","p":{"t":"x","m":"y"}}`, "6", "unknown_action"},
		{"create without topics", `{"id":7,"t":"topic","a":"create","p":[]}`, "7", "invalid_payload"},
		{"create with a bad name", `{"id":8,"t":"topic","a":"create","p":["bad name!"]}`, "8", "invalid_topic"},
		{"subscribe with a string", `{"id":9,"t":"topic","a":"subscribe","p":{"t":"x"}}`, "9", "invalid_payload"},
		{"subscribe to a missing topic", `{"id":10,"t":"topic","a":"subscribe","p":{"t":["` + missing + `"]}}`, "10", "unknown_topic"},
		{"publish without p", `{"id":11,"t":"notif","a":"create"}`, "11", "invalid_payload"},
		{"publish without m", `{"id":12,"t":"notif","a":"create","p":{"t":"x"}}`, "12", "invalid_payload"},
		{"publish without t", `{"id":13,"t":"notif","a":"create","p":{"m":"x"}}`, "13", "invalid_payload"},
		{"publish to a missing topic", `{"id":"s","t":"notif","p":{"t":"` + missing + `","m":"x"}}`, `"s"`, "unknown_topic"},
		{"string id", `{"id":"14","t":"nope"}`, `"14"`, "unknown_type"},
		{"fractional id", `{"id":1.5,"t":"nope"}`, `1.5`, "unknown_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.send(tt.frame)
			var r reply
			if tt.refid == "" {
				if err := json.Unmarshal(c.next(), &r); err != nil {
					t.Fatal(err)
				}
				if r.RefID != nil || r.T != "error" {
					t.Fatalf("got refid %s t %q, want no refid and t error", r.RefID, r.T)
				}
			} else {
				r = c.replyTo(tt.refid)
			}
			if *r.S != 1 || r.errorCode() != tt.code {
				t.Fatalf("got s %d p %s, want s 1 code %s", *r.S, r.P, tt.code)
			}
			var p struct{ Message string }
			if json.Unmarshal(r.P, &p); p.Message == "" {
				t.Fatalf("got p %s, want a message", r.P)
			}
		})
	}
	if r := c.request(`{"id":99,"t":"health"}`, "99"); *r.S != 0 {
		t.Fatalf("after bad input: health got %+v", r)
	}
}

// A message published right after the subscribe reply is delivered: the reply waits until the group is joined
// and "latest" is resolved to an absolute offset.
func TestPublishRightAfterSubscribeIsDelivered(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	topic := topicName(t)
	createTopic(t, topic)
	for i := range 3 {
		c := dial(t, srv.url)
		group := fmt.Sprintf("%s.g%d", topic, i)
		if r := c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+group+`"}}`, "1"); *r.S != 0 {
			t.Fatalf("subscribe: got %s", r.P)
		}
		want := fmt.Sprintf("right after %d", i)
		produce(t, topic, want)
		if got := c.receive(1); got[0] != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// Two sockets in one group split the partitions: every message reaches exactly one of them.
func TestGroupSplitsMessages(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	topic := topicName(t)
	createTopic(t, topic)
	sub := `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + topic + `"],"consumer_group":"` + topic + `"}}`
	a, b := dial(t, srv.url), dial(t, srv.url)
	if r := a.request(sub, "1"); *r.S != 0 {
		t.Fatalf("subscribe a: %s", r.P)
	}
	if r := b.request(sub, "1"); *r.S != 0 {
		t.Fatalf("subscribe b: %s", r.P)
	}
	// b's reply means the group's join completed, a rejoining too; a committed every partition's start offset
	// in its first generation, so nothing produced now can be skipped.
	const n = 200
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprint(i)
	}
	produce(t, topic, values...)
	seen := collect(t, n, a, b)
	counts := map[string]int{}
	for _, who := range seen {
		counts[who]++
	}
	if len(seen) != n || counts["a"] == 0 || counts["b"] == 0 {
		t.Fatalf("got %d distinct messages split %v, want %d split between both", len(seen), counts, n)
	}
}

// collect receives from both clients until n distinct values arrived, failing on a value delivered twice.
func collect(t *testing.T, n int, a, b *client) map[string]string {
	t.Helper()
	got := map[string]string{}
	deadline := time.After(waitLimit)
	for len(got) < n {
		var f []byte
		var who string
		select {
		case f = <-a.frames:
			who = "a"
		case f = <-b.frames:
			who = "b"
		case <-deadline:
			t.Fatalf("got %d of %d messages", len(got), n)
		}
		if !strings.HasPrefix(string(f), "[") {
			continue
		}
		var ns []notification
		if err := json.Unmarshal(f, &ns); err != nil {
			t.Fatal(err)
		}
		for _, note := range ns {
			if prev, dup := got[*note.P]; dup {
				t.Fatalf("message %s delivered to %s and %s", *note.P, prev, who)
			}
			got[*note.P] = who
		}
	}
	return got
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	topic := topicName(t)
	createTopic(t, topic)
	c := dial(t, srv.url)
	c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`"}}`, "1")
	produce(t, topic, "before")
	if got := c.receive(1); got[0] != "before" {
		t.Fatalf("got %q, want before", got)
	}
	if r := c.request(`{"id":2,"t":"topic","a":"unsubscribe"}`, "2"); *r.S != 0 {
		t.Fatalf("unsubscribe: %s", r.P)
	}
	produce(t, topic, "after")
	c.quiet(500 * time.Millisecond)

	// The group committed what was delivered, so a new member starts after it and gets only "after".
	if r := c.request(`{"id":3,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`"}}`, "3"); *r.S != 0 {
		t.Fatalf("subscribe again: %s", r.P)
	}
	if got := c.receive(1); got[0] != "after" {
		t.Fatalf("got %q, want after", got)
	}
}

// Subscribing again replaces the subscription: only the new topics are delivered.
func TestSubscribeReplaces(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	first, second := topicName(t)+".1", topicName(t)+".2"
	createTopic(t, first, second)
	c := dial(t, srv.url)
	c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+first+`"],"consumer_group":"`+first+`"}}`, "1")
	c.request(`{"id":2,"t":"topic","a":"subscribe","p":{"t":["`+second+`"],"consumer_group":"`+first+`"}}`, "2")
	produce(t, first, "old")
	produce(t, second, "new")
	if got := c.receive(1); got[0] != "new" {
		t.Fatalf("got %q, want new", got)
	}
	c.quiet(300 * time.Millisecond)
}

// A subscribe naming no consumer_group joins the configured default group.
func TestSubscribeDefaultGroup(t *testing.T) {
	topic := topicName(t)
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"group_id": topic, "mq_interval": 0}}})
	createTopic(t, topic)
	c := dial(t, srv.url)
	if r := c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"]}}`, "1"); *r.S != 0 {
		t.Fatalf("subscribe: %s", r.P)
	}
	produce(t, topic, "x")
	c.receive(1)
	waitCommitted(t, topic, topic, 1)
}

// waitCommitted polls the group's committed offsets of a new topic until they add up to want. Each poll uses a
// new transport: kafka-go's default one answers metadata from a cache, which can predate the topic.
func waitCommitted(t *testing.T, group, topic string, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	var total int64
	for time.Now().Before(deadline) {
		transport := &kafka.Transport{}
		client := &kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport}
		offsets, err := client.ConsumerOffsets(context.Background(), kafka.TopicAndGroup{Topic: topic, GroupId: group})
		transport.CloseIdleConnections()
		if err == nil {
			total = 0
			for _, o := range offsets {
				total += max(o, 0)
			}
			if total == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("group %s committed %d records of %s, want %d", group, total, topic, want)
}

// Only messages written to the socket are committed: a subscriber that received k messages leaves the group
// with exactly k committed.
func TestCommitsOnlyWhatWasWritten(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0, "commit_interval": "1h"}}})
	topic := topicName(t)
	createTopic(t, topic)
	c := dial(t, srv.url)
	c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`"}}`, "1")
	produce(t, topic, "1", "2", "3")
	c.receive(3)
	// The writer marks a frame written after writing it and before writing the next: once this reply is here,
	// the notifications count as written.
	c.request(`{"id":9,"t":"health"}`, "9")
	// commit_interval is an hour: the offsets are committed when the member leaves, and only then.
	c.request(`{"id":2,"t":"topic","a":"unsubscribe"}`, "2")
	waitCommitted(t, topic, topic, 3)
}

func TestProducerBatching(t *testing.T) {
	tests := []struct {
		name     string
		producer map[string]any
		publish  int
	}{
		// With an hour's interval only the limit can have flushed these.
		{"mq_limit flushes before mq_interval", map[string]any{"mq_limit": 3, "mq_interval": "1h"}, 3},
		{"mq_interval 0 sends at once", map[string]any{"mq_limit": 1000, "mq_interval": 0}, 1},
		{"mq_interval flushes a partial buffer", map[string]any{"mq_limit": 1000, "mq_interval": "10ms"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, serverOptions{handler: map[string]any{"producer": tt.producer}})
			topic := topicName(t)
			createTopic(t, topic)
			c := dial(t, srv.url)
			for i := range tt.publish {
				c.send(fmt.Sprintf(`{"id":%d,"t":"notif","a":"create","p":{"t":"%s","m":"m%d"}}`, i, topic, i))
			}
			waitRecords(t, topic, int64(tt.publish))
			c.conn.Close()
		})
	}
}

// waitRecords polls the topic's high watermarks until they add up to n.
func waitRecords(t *testing.T, topic string, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	var total int64
	for time.Now().Before(deadline) {
		// A new transport each time: the default one answers metadata from a cache that can predate the topic.
		transport := &kafka.Transport{}
		client := &kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport}
		defer transport.CloseIdleConnections()
		meta, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil || len(meta.Topics) != 1 {
			t.Fatalf("metadata of %s: %v", topic, err)
		}
		req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
		for _, p := range meta.Topics[0].Partitions {
			req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p.ID))
		}
		res, err := client.ListOffsets(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		total = 0
		for _, p := range res.Topics[topic] {
			total += p.LastOffset
		}
		if total == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("topic %s holds %d records, want %d", topic, total, n)
}

// A message published just before the socket closes reaches Kafka: closing flushes the buffer.
func TestPublishBeforeCloseReachesKafka(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"producer": map[string]any{"mq_interval": "1h"}}})
	topic := topicName(t)
	createTopic(t, topic)
	c := dial(t, srv.url)
	c.send(`{"id":1,"t":"notif","a":"create","p":{"t":"` + topic + `","m":"last words"}}`)
	c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	c.conn.Close()
	if got := readTopic(t, topic, 1); got[0] != "last words" {
		t.Fatalf("got %q, want last words", got)
	}
}

// A full publish buffer stops the reader instead of growing: with mq_limit 1 and one flush at a time, every
// publish still arrives, in order.
func TestPublishBufferBoundKeepsOrder(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{
		"producer": map[string]any{"mq_limit": 1, "mq_interval": "1h", "partitioner": "round_robin"},
		"topics":   map[string]any{"partitions": 1},
	}})
	topic := topicName(t)
	c := dial(t, srv.url)
	c.request(`{"id":0,"t":"topic","a":"create","p":["`+topic+`"]}`, "0")
	const n = 50
	for i := range n {
		c.send(fmt.Sprintf(`{"id":%d,"t":"notif","p":{"t":"%s","m":"%d"}}`, i+1, topic, i))
	}
	got := readTopic(t, topic, n)
	for i, v := range got {
		if v != fmt.Sprint(i) {
			t.Fatalf("record %d is %q, want %d: order lost", i, v, i)
		}
	}
}

// Requests are answered even when Kafka is unreachable, within a bounded time and with a code that says so.
func TestKafkaUnreachable(t *testing.T) {
	closed := freeAddr(t) // nothing listens there
	srv := startServer(t, serverOptions{handler: map[string]any{
		"brokers":  []string{closed},
		"producer": map[string]any{"mq_interval": 0},
	}})
	c := dial(t, srv.url)
	tests := []struct{ name, frame, refid string }{
		{"create", `{"id":1,"t":"topic","a":"create","p":["x"]}`, "1"},
		{"list", `{"id":2,"t":"topic","a":"list"}`, "2"},
		{"subscribe", `{"id":3,"t":"topic","a":"subscribe","p":{"t":["x"]}}`, "3"},
		{"publish", `{"id":4,"t":"notif","p":{"t":"x","m":"y"}}`, "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.request(tt.frame, tt.refid)
			if *r.S != 1 || r.errorCode() != "kafka_unavailable" {
				t.Fatalf("got s %d p %s, want s 1 code kafka_unavailable", *r.S, r.P)
			}
		})
	}
}

// A config reload closes every socket with 1012 (service restart) after flushing its publishes.
func TestReloadClosesWith1012AndFlushes(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"producer": map[string]any{"mq_interval": "1h"}}})
	topic := topicName(t)
	createTopic(t, topic)
	c := dial(t, srv.url)
	c.request(`{"id":1,"t":"health"}`, "1")
	c.send(`{"id":2,"t":"notif","p":{"t":"` + topic + `","m":"buffered"}}`)
	c.request(`{"id":3,"t":"health"}`, "3") // the publish has been read once its successor is answered

	startServer(t, serverOptions{}) // a new config replaces the running one
	select {
	case err := <-c.closed:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
			t.Fatalf("got %v, want close 1012", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("socket not closed by the reload")
	}
	if got := readTopic(t, topic, 1); got[0] != "buffered" {
		t.Fatalf("got %q, want buffered", got)
	}
}

// brokers embedded serves the protocol from the in-process broker.
func TestEmbeddedBroker(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"brokers": []string{"embedded"}, "consumer": map[string]any{"mq_interval": 0}}})
	c := dial(t, srv.url)
	c.request(`{"id":1,"t":"topic","a":"create","p":["embedded.t"]}`, "1")
	if r := c.request(`{"id":2,"t":"topic","a":"subscribe","p":{"t":["embedded.t"]}}`, "2"); *r.S != 0 {
		t.Fatalf("subscribe: %s", r.P)
	}
	c.send(`{"id":3,"t":"notif","p":{"t":"embedded.t","m":"hello"}}`)
	if got := c.receive(1); got[0] != "hello" {
		t.Fatalf("got %q, want hello", got)
	}
}
