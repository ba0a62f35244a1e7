package wskafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The extensions a recovering client library leans on: a heartbeat request, the partitions a socket reads with
// their start offsets, broadcast subscriptions that resume from offsets, and refusals a browser can read.

// A ping is answered at once, alone or in a batch, with nothing but the envelope.
func TestPingAnswered(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := dial(t, srv.url)
	tests := []struct {
		name, frame, refid string
	}{
		{name: "alone", frame: `{"id":1,"t":"ping"}`, refid: "1"},
		{name: "in a batch", frame: `[{"id":2,"t":"health"},{"id":"hb","t":"ping"}]`, refid: `"hb"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.request(tt.frame, tt.refid)
			if r.T != "ping" || r.S == nil || *r.S != 0 || r.P != nil || r.A != "" {
				t.Fatalf("got t %q, a %q, s %s, p %s; want t ping, s 0 and no p", r.T, r.A, status(r), r.P)
			}
		})
	}
}

// atOnce publishes and delivers every record as it comes.
var atOnce = map[string]any{"producer": map[string]any{"mq_interval": 0}, "consumer": map[string]any{"mq_interval": 0}}

// assignedFrame is the frame a subscription with "assignments": true gets.
type assignedFrame struct {
	T string                      `json:"t"`
	A string                      `json:"a"`
	S int                         `json:"s"`
	P map[string]map[string]int64 `json:"p"`
}

// nextAssigned returns the next assigned frame, skipping others.
func (c *client) nextAssigned() assignedFrame {
	c.t.Helper()
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); {
		var f assignedFrame
		if raw := c.next(); json.Unmarshal(raw, &f) == nil && f.A == "assigned" {
			return f
		}
	}
	c.t.Fatal("no assigned frame")
	return assignedFrame{}
}

// publishTo publishes values to one partition of topic and waits for their receipts.
func publishTo(t *testing.T, c *client, topic string, partition, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		id := fmt.Sprint(partition*100000 + i)
		succeeded(t, "publish", c.request(fmt.Sprintf(`{"id":%s,"t":"notif","ack":true,"p":{"t":%q,"part":%d,"m":"%d-%d"}}`, id, topic, partition, partition, i), id))
	}
}

// A group member told of its partitions gets, after the subscribe reply, every partition it reads with the offset
// it starts from.
func TestAssignedFrameOfAGroup(t *testing.T) {
	srv := startServer(t, serverOptions{handler: atOnce})
	topic := topicName(t)
	createTopicPartitions(t, 2, topic)
	c := dial(t, srv.url)
	publishTo(t, c, topic, 1, 0, 3)
	succeeded(t, "subscribe", c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`","assignments":true,"seek":{"`+topic+`":{"1":1}}}}`, "1"))
	got := c.nextAssigned()
	want := map[string]map[string]int64{topic: {"0": 0, "1": 1}}
	if got.T != "topic" || got.S != 0 || fmt.Sprint(got.P) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want t topic, s 0, p %v", got, want)
	}
}

// A broadcast subscription with seek delivers every record of each partition from its offset on, exactly once:
// first from its own reads, then from the shared stream, which it joins where the stream stands, also while
// records keep arriving. An offset past the partition's end starts at its end.
func TestBroadcastSeekCatchesUpThenShares(t *testing.T) {
	srv := startServer(t, serverOptions{handler: atOnce})
	topic := topicName(t)
	createTopicPartitions(t, 2, topic)
	pub := dial(t, srv.url)
	publishTo(t, pub, topic, 0, 0, 20)
	publishTo(t, pub, topic, 1, 0, 20)
	live := dial(t, srv.url) // the shared stream, reading from now (offset 20)
	succeeded(t, "subscribe", live.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"mode":"broadcast","meta":true}}`, "1"))
	publishTo(t, pub, topic, 0, 20, 5)
	publishTo(t, pub, topic, 1, 20, 5)
	live.elements(10)

	resumer := dial(t, srv.url)
	resumer.send(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + topic + `"],"mode":"broadcast","meta":true,"assignments":true,"seek":{"` + topic + `":{"0":5,"1":30}}}}`)
	publishTo(t, pub, topic, 0, 25, 10) // while it catches up
	succeeded(t, "subscribe", resumer.replyTo("1"))
	if got, want := resumer.nextAssigned().P, (map[string]map[string]int64{topic: {"0": 5, "1": 25}}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("assigned %v, want %v", got, want)
	}
	publishTo(t, pub, topic, 1, 25, 10) // past the start of partition 1, which was its end
	els := decodeElements(t, resumer.elements(30+10))
	offsets := map[int][]int64{}
	for _, e := range els {
		offsets[e.Part] = append(offsets[e.Part], e.Offset)
	}
	for partition, from := range map[int]int64{0: 5, 1: 25} {
		var want []int64
		for o := from; o < 35; o++ {
			want = append(want, o)
		}
		if !slices.Equal(offsets[partition], want) {
			t.Fatalf("partition %d: got offsets %v, want %d to 34, each once, in order", partition, offsets[partition], from)
		}
	}
	resumer.quiet(300 * time.Millisecond)
	// Caught up, it gets what comes next from the shared stream, as the live socket does.
	publishTo(t, pub, topic, 1, 35, 1)
	if got := values(decodeElements(t, resumer.elements(1))); !slices.Equal(got, []string{"1-35"}) {
		t.Fatalf("after catching up got %q, want [1-35]", got)
	}
}

// A client offering the wskafka subprotocol learns why it is refused from a close frame (1013 and the reason's
// code), which a browser can read; one that does not gets the HTTP status, as before.
func TestRefusalInBand(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"limits": map[string]any{"max_connections": 1}}})
	dial(t, srv.url)
	dialer := websocket.Dialer{Subprotocols: []string{"wskafka"}, HandshakeTimeout: waitLimit}
	conn, resp, err := dialer.Dial(srv.url, nil)
	if err != nil {
		t.Fatalf("got %v (%v), want the upgrade", err, resp)
	}
	defer conn.Close()
	if conn.Subprotocol() != "wskafka" {
		t.Fatalf("got subprotocol %q, want wskafka", conn.Subprotocol())
	}
	_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
	_, _, err = conn.ReadMessage()
	var closeErr *websocket.CloseError
	if !errors.As(err, &closeErr) || closeErr.Code != websocket.CloseTryAgainLater || closeErr.Text != "too_many_connections" {
		t.Fatalf("got %v, want close 1013 too_many_connections", err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(srv.url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("without the subprotocol: got %v, %v; want 503", resp, err)
	}
}

// With seek and from together, the partitions seek names start there, the others where from says.
func TestBroadcastSeekWithFrom(t *testing.T) {
	srv := startServer(t, serverOptions{handler: atOnce})
	topic := topicName(t)
	createTopicPartitions(t, 2, topic)
	pub := dial(t, srv.url)
	publishTo(t, pub, topic, 0, 0, 3)
	publishTo(t, pub, topic, 1, 0, 3)
	c := dial(t, srv.url)
	succeeded(t, "subscribe", c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"mode":"broadcast","meta":true,"assignments":true,"from":"earliest","seek":{"`+topic+`":{"1":2}}}}`, "1"))
	if got, want := c.nextAssigned().P, (map[string]map[string]int64{topic: {"0": 0, "1": 2}}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("assigned %v, want %v", got, want)
	}
	got := values(decodeElements(t, c.elements(4)))
	slices.Sort(got)
	if want := []string{"0-0", "0-1", "0-2", "1-2"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.quiet(300 * time.Millisecond)
}
