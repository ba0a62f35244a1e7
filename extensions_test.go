package wskafka

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/segmentio/kafka-go"
)

// The protocol's opt-in extensions (protocol/doc.go), each through a real Caddy, real sockets and the broker.

// receipt is the p of a reply to a publish that asked for one.
type receipt struct {
	T      string `json:"t"`
	Part   int    `json:"part"`
	Offset int64  `json:"offset"`
	TS     int64  `json:"ts"`
}

// decodeReceipt checks that r is a success reply carrying exactly a receipt's members and returns it.
func decodeReceipt(t *testing.T, r reply) receipt {
	t.Helper()
	if r.S == nil || *r.S != 0 {
		t.Fatalf("publish reply: got s %s p %s, want s 0", status(r), r.P)
	}
	if got, want := keysOf(t, r.P), []string{"offset", "part", "t", "ts"}; !slices.Equal(got, want) {
		t.Fatalf("receipt %s: got members %v, want %v", r.P, got, want)
	}
	var rc receipt
	if err := json.Unmarshal(r.P, &rc); err != nil {
		t.Fatalf("receipt %s: %v", r.P, err)
	}
	return rc
}

// keysOf returns the member names of a JSON object, sorted.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s is not an object: %v", raw, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// succeeded fails the test unless r is a success reply.
func succeeded(t *testing.T, what string, r reply) {
	t.Helper()
	if r.S == nil || *r.S != 0 {
		t.Fatalf("%s: got s %s p %s, want s 0", what, status(r), r.P)
	}
}

// failedWith fails the test unless r is a failure reply with the code.
func failedWith(t *testing.T, what string, r reply, code string) {
	t.Helper()
	if r.S == nil || *r.S != 1 || r.errorCode() != code {
		t.Fatalf("%s: got s %s p %s, want s 1 code %s", what, status(r), r.P, code)
	}
}

// status is a reply's s for messages.
func status(r reply) string {
	if r.S == nil {
		return "<none>"
	}
	return fmt.Sprint(*r.S)
}

// element is one notification element of a subscription with "meta": true.
type element struct {
	ID     uint64            `json:"id"`
	T      string            `json:"t"`
	P      *string           `json:"p"`
	Topic  string            `json:"topic"`
	Part   int               `json:"part"`
	Offset int64             `json:"offset"`
	K      *string           `json:"k"`
	H      map[string]string `json:"h"`
	TS     int64             `json:"ts"`
	Enc    string            `json:"enc"`
}

func decodeElements(t *testing.T, raws []json.RawMessage) []element {
	t.Helper()
	els := make([]element, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &els[i]); err != nil {
			t.Fatalf("notification %s: %v", raw, err)
		}
	}
	return els
}

func values(els []element) []string {
	out := make([]string, len(els))
	for i, e := range els {
		if e.P == nil {
			out[i] = "<null>"
		} else {
			out[i] = *e.P
		}
	}
	return out
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// consumerOptions is a handler config with the given consumer block.
func consumerOptions(consumer map[string]any) serverOptions {
	return serverOptions{handler: map[string]any{"consumer": consumer}}
}

func TestPublishReceiptsNameTheStoredRecord(t *testing.T) {
	tests := []struct {
		name     string
		producer map[string]any
		frame    string // %s is the topic
	}{
		{"ack at the top level", nil, `{"id":1,"t":"notif","a":"create","ack":true,"p":{"t":"%s","m":"top-level ack"}}`},
		{"ack in p", nil, `{"id":1,"t":"notif","p":{"t":"%s","m":"ack in p","ack":true}}`},
		{"route with receipts", map[string]any{"receipts": true}, `{"id":1,"t":"notif","p":{"t":"%s","m":"route receipts"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, serverOptions{handler: map[string]any{"producer": tt.producer}})
			topic := topicName(t)
			createTopic(t, topic)
			c := dial(t, srv.url)
			frame := fmt.Sprintf(tt.frame, topic)
			r := c.request(frame, "1")
			if r.T != "notif" {
				t.Fatalf("reply t: got %q, want notif", r.T)
			}
			rc := decodeReceipt(t, r)
			if rc.T != topic {
				t.Fatalf("receipt t: got %v, want %v", rc.T, topic)
			}
			var sent struct{ P struct{ M string } }
			json.Unmarshal([]byte(frame), &sent)
			stored := readRecord(t, topic, rc.Part, rc.Offset)
			if string(stored.Value) != sent.P.M {
				t.Fatalf("record at %d/%d: got %q, want %q", rc.Part, rc.Offset, stored.Value, sent.P.M)
			}
			if stored.Time.UnixMilli() != rc.TS {
				t.Fatalf("receipt ts: got %v, want the record's %v", rc.TS, stored.Time.UnixMilli())
			}
		})
	}

	t.Run("no ack, no reply", func(t *testing.T) {
		srv := startServer(t, serverOptions{handler: map[string]any{"producer": map[string]any{"mq_interval": 0}}})
		topic := topicName(t)
		createTopic(t, topic)
		c := dial(t, srv.url)
		c.send(`{"id":1,"t":"notif","p":{"t":"` + topic + `","m":"unacknowledged"}}`)
		waitRecords(t, topic, 1)
		c.send(`{"id":2,"t":"health"}`)
		var r reply
		if f := c.next(); json.Unmarshal(f, &r) != nil || string(r.RefID) != "2" {
			t.Fatalf("first frame after a publish without ack: got %s, want the health reply", f)
		}
		c.silent(300 * time.Millisecond)
	})
}

func TestPublishKeyHeadersPartitionTimestamp(t *testing.T) {
	srv := startServer(t, serverOptions{})
	topic := topicName(t)
	createTopicPartitions(t, 2, topic)
	c := dial(t, srv.url)

	ts := time.Now().Add(-10 * time.Minute).UnixMilli()
	rc := decodeReceipt(t, c.request(fmt.Sprintf(
		`{"id":1,"t":"notif","ack":true,"p":{"t":"%s","m":"v","k":"key-1","h":{"h1":"one","h2":"two"},"part":1,"ts":%d}}`,
		topic, ts), "1"))
	if rc.Part != 1 || rc.TS != ts {
		t.Fatalf("receipt: got part %v ts %v, want part 1 ts %v", rc.Part, rc.TS, ts)
	}
	stored := readRecord(t, topic, 1, rc.Offset)
	if string(stored.Key) != "key-1" || string(stored.Value) != "v" || stored.Time.UnixMilli() != ts {
		t.Fatalf("record: got key %q value %q ts %v, want key-1, v, %v", stored.Key, stored.Value, stored.Time.UnixMilli(), ts)
	}
	headers := make([]string, len(stored.Headers))
	for i, h := range stored.Headers {
		headers[i] = h.Key + "=" + string(h.Value)
	}
	if want := []string{"h1=one", "h2=two"}; !slices.Equal(headers, want) {
		t.Fatalf("headers: got %v, want %v", headers, want)
	}

	t.Run("a partition the topic lacks", func(t *testing.T) {
		r := c.request(`{"id":2,"t":"notif","p":{"t":"`+topic+`","m":"nowhere","part":2}}`, "2")
		failedWith(t, "publish to partition 2 of 2", r, "unknown_topic")
		waitRecords(t, topic, 1)
	})

	t.Run("one key, one partition", func(t *testing.T) {
		keyed := topicName(t)
		createTopicPartitions(t, 3, keyed)
		// Round-robin over 3 partitions would put the second record of every key elsewhere than its first.
		const keys = 5
		for i := range 2 * keys {
			c.send(fmt.Sprintf(`{"id":%d,"t":"notif","ack":true,"p":{"t":"%s","m":"x","k":"key-%d"}}`, 10+i, keyed, i%keys))
		}
		parts := make(map[string][]int)
		for i := range 2 * keys {
			rc := decodeReceipt(t, c.replyTo(fmt.Sprint(10+i)))
			key := fmt.Sprintf("key-%d", i%keys)
			parts[key] = append(parts[key], rc.Part)
		}
		for key, p := range parts {
			if p[0] != p[1] {
				t.Errorf("key %s: got partitions %v, want one partition", key, p)
			}
		}
	})
}

func TestPublishBase64TombstonesAndMissingValue(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	topic := topicName(t)
	createTopicPartitions(t, 1, topic)
	// request drops the notifications that arrive before the reply: the subscriber is a socket of its own.
	c, sub := dial(t, srv.url), dial(t, srv.url)
	succeeded(t, "subscribe", sub.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`","meta":true}}`, "1"))

	raw := []byte{0xff, 0x00, 0x80}
	rc := decodeReceipt(t, c.request(fmt.Sprintf(
		`{"id":1,"t":"notif","ack":true,"p":{"t":"%s","enc":"base64","m":"%s","k":"%s","h":{"x":"%s"}}}`,
		topic, b64(raw), b64([]byte("key")), b64([]byte{0xfe})), "1"))
	stored := readRecord(t, topic, rc.Part, rc.Offset)
	if string(stored.Value) != string(raw) || string(stored.Key) != "key" ||
		len(stored.Headers) != 1 || stored.Headers[0].Key != "x" || string(stored.Headers[0].Value) != "\xfe" {
		t.Fatalf("base64 record: got value %x key %q headers %v, want value %x key key headers x=fe", stored.Value, stored.Key, stored.Headers, raw)
	}

	rc = decodeReceipt(t, c.request(`{"id":2,"t":"notif","ack":true,"p":{"t":"`+topic+`","m":null,"k":"gone"}}`, "2"))
	stored = readRecord(t, topic, rc.Part, rc.Offset)
	if stored.Value != nil || string(stored.Key) != "gone" {
		t.Fatalf("tombstone: got value %q (nil %v) key %q, want a null value and key gone", stored.Value, stored.Value == nil, stored.Key)
	}

	rc = decodeReceipt(t, c.request(`{"id":3,"t":"notif","ack":true,"p":{"t":"`+topic+`","m":""}}`, "3"))
	stored = readRecord(t, topic, rc.Part, rc.Offset)
	if stored.Value == nil || len(stored.Value) != 0 {
		t.Fatalf("empty value: got %q (nil %v), want an empty, non-null value", stored.Value, stored.Value == nil)
	}

	failedWith(t, "publish without m", c.request(`{"id":4,"t":"notif","ack":true,"p":{"t":"`+topic+`"}}`, "4"), "invalid_payload")

	// The subscriber sees the three records as Kafka holds them: bytes as base64, the tombstone as null.
	els := decodeElements(t, sub.elements(3))
	if len(els) != 3 {
		t.Fatalf("got %d notifications %q, want 3", len(els), values(els))
	}
	if e := els[0]; e.P == nil || *e.P != b64(raw) || e.Enc != "base64" || e.K == nil || *e.K != b64([]byte("key")) {
		t.Fatalf("base64 record delivered: got %v, want p %s enc base64", deref(e), b64(raw))
	}
	if e := els[1]; e.P != nil || e.K == nil || *e.K != "gone" || e.Enc != "" {
		t.Fatalf("tombstone delivered: got %v, want p null k gone", deref(e))
	}
	if e := els[2]; e.P == nil || *e.P != "" {
		t.Fatalf("empty value delivered: got %v, want p \"\"", deref(e))
	}
	waitRecords(t, topic, 3)
}

func TestArrayFrameRequestsAnsweredAsIfAlone(t *testing.T) {
	srv := startServer(t, serverOptions{})
	topic := topicName(t)
	c := dial(t, srv.url)

	c.send(`[{"id":1,"t":"topic","a":"create","p":["` + topic + `"]},` +
		`{"id":2,"t":"notif","ack":true,"p":{"t":"` + topic + `","m":"in an array"}},` +
		`{"id":3,"t":"health"}]`)
	order := map[string]int{}
	replies := map[string]reply{}
	for i := range 3 {
		var r reply
		f := c.next()
		if err := json.Unmarshal(f, &r); err != nil {
			t.Fatalf("frame %s: %v", f, err)
		}
		order[string(r.RefID)] = i
		replies[string(r.RefID)] = r
	}
	if r := replies["1"]; r.S == nil || *r.S != 0 || string(r.P) != `["`+topic+`"]` {
		t.Fatalf("create: got s %s p %s, want s 0 p [%q]", status(r), r.P, topic)
	}
	if rc := decodeReceipt(t, replies["2"]); rc.T != topic {
		t.Fatalf("publish receipt t: got %v, want %v", rc.T, topic)
	}
	if r := replies["3"]; r.S == nil || *r.S != 0 || r.T != "health" {
		t.Fatalf("health: got t %s s %s p %s, want t health s 0", r.T, status(r), r.P)
	}
	// The publish's receipt waits for its flush, as it would alone; create and health are answered in order.
	if order["1"] != 0 || order["3"] < order["1"] {
		t.Fatalf("reply order: got %v, want create first and health after it", order)
	}
	if got := readTopic(t, topic, 1); got[0] != "in an array" {
		t.Fatalf("got %q, want in an array", got)
	}

	t.Run("an element that is not an object", func(t *testing.T) {
		c.send(`[{"id":4,"t":"health"},5,{"id":6,"t":"topic","a":"list"}]`)
		var rs [3]reply
		for i := range rs {
			f := c.next()
			if err := json.Unmarshal(f, &rs[i]); err != nil {
				t.Fatalf("frame %s: %v", f, err)
			}
		}
		succeeded(t, "health in the array", rs[0])
		if string(rs[0].RefID) != "4" {
			t.Fatalf("first reply refid: got %s, want 4", rs[0].RefID)
		}
		failedWith(t, "element 5", rs[1], "invalid_frame")
		if rs[1].RefID != nil || rs[1].T != "error" {
			t.Fatalf("element 5: got refid %s t %q, want no refid and t error", rs[1].RefID, rs[1].T)
		}
		succeeded(t, "list in the array", rs[2])
		if string(rs[2].RefID) != "6" {
			t.Fatalf("third reply refid: got %s, want 6", rs[2].RefID)
		}
	})
}

// A notification without meta is exactly the original's element.
var plainElement = regexp.MustCompile(`^\{"id":[0-9]+,"t":"notif","p":(null|"([^"\\]|\\.)*")\}$`)

func TestMetaDeliveryDescribesRecords(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	topic := topicName(t)
	createTopicPartitions(t, 1, topic)
	meta, plain := dial(t, srv.url), dial(t, srv.url)
	succeeded(t, "meta subscribe", meta.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`.meta","meta":true}}`, "1"))
	succeeded(t, "plain subscribe", plain.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`.plain"}}`, "1"))

	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	binary := []byte{0xff, 0x00, 0x80}
	produceMessages(t, topic,
		kafka.Message{Key: []byte("key-1"), Value: binary, Time: ts,
			Headers: []kafka.Header{{Key: "h1", Value: []byte("one")}, {Key: "h2", Value: []byte("two")}}},
		kafka.Message{Key: []byte("key-2"), Value: []byte("text ü"), Time: ts.Add(time.Second),
			Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}},
	)

	raws := meta.elements(2)
	if len(raws) != 2 {
		t.Fatalf("got %d notifications, want 2", len(raws))
	}
	withEnc := []string{"enc", "h", "id", "k", "offset", "p", "part", "t", "topic", "ts"}
	if got := keysOf(t, raws[0]); !slices.Equal(got, withEnc) {
		t.Fatalf("binary record's members: got %v, want %v", got, withEnc)
	}
	if got, want := keysOf(t, raws[1]), slices.DeleteFunc(slices.Clone(withEnc), func(k string) bool { return k == "enc" }); !slices.Equal(got, want) {
		t.Fatalf("text record's members: got %v, want %v", got, want)
	}
	els := decodeElements(t, raws)
	tests := []struct {
		name string
		got  element
		want element
	}{
		{"binary value", els[0], element{T: "notif", P: ptr(b64(binary)), Topic: topic, Part: 0, Offset: 0, K: ptr(b64([]byte("key-1"))),
			H: map[string]string{"h1": b64([]byte("one")), "h2": b64([]byte("two"))}, TS: ts.UnixMilli(), Enc: "base64"}},
		{"text value", els[1], element{T: "notif", P: ptr("text ü"), Topic: topic, Part: 0, Offset: 1, K: ptr("key-2"),
			H: map[string]string{"h": "v"}, TS: ts.Add(time.Second).UnixMilli()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.ID = tt.got.ID
			if got, want := fmt.Sprintf("%+v", deref(tt.got)), fmt.Sprintf("%+v", deref(tt.want)); got != want {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}

	t.Run("without meta", func(t *testing.T) {
		raws := plain.elements(2)
		if len(raws) != 2 {
			t.Fatalf("got %d notifications, want 2", len(raws))
		}
		for _, raw := range raws {
			if !plainElement.Match(raw) {
				t.Errorf("got element %s, want {\"id\":N,\"t\":\"notif\",\"p\":…} and nothing else", raw)
			}
		}
		if els := decodeElements(t, raws); *els[1].P != "text ü" {
			t.Fatalf("got p %q, want %q", *els[1].P, "text ü")
		}
	})
}

// deref makes an element printable with its pointers' values.
func deref(e element) string {
	s := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return fmt.Sprintf("%q", *p)
	}
	h := make([]string, 0, len(e.H))
	for k, v := range e.H {
		h = append(h, k+"="+v)
	}
	slices.Sort(h)
	return fmt.Sprintf("id %d t %s p %s topic %s part %d offset %d k %s h %v ts %d enc %q",
		e.ID, e.T, s(e.P), e.Topic, e.Part, e.Offset, s(e.K), h, e.TS, e.Enc)
}

func TestSubscribeStartPositions(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	tests := []struct {
		name    string
		records []kafka.Message
		options string // members added to the subscribe's p; %s is the topic
		want    []string
	}{
		{
			name:    "from earliest",
			records: []kafka.Message{{Value: []byte("old-1")}, {Value: []byte("old-2")}},
			options: `"from":"earliest"`,
			want:    []string{"old-1", "old-2"},
		},
		{
			name:    "from a timestamp",
			records: []kafka.Message{{Value: []byte("early"), Time: base}, {Value: []byte("late"), Time: base.Add(4 * time.Second)}},
			options: fmt.Sprintf(`"from":%d`, base.Add(2*time.Second).UnixMilli()),
			want:    []string{"late"},
		},
		{
			name: "seek",
			records: []kafka.Message{{Value: []byte("0")}, {Value: []byte("1")}, {Value: []byte("2")},
				{Value: []byte("3")}, {Value: []byte("4")}},
			options: `"seek":{"%s":{"0":3}}`,
			want:    []string{"3", "4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := topicName(t)
			createTopicPartitions(t, 1, topic)
			produceMessages(t, topic, tt.records...)
			waitRecords(t, topic, int64(len(tt.records)))
			c := dial(t, srv.url)
			options := tt.options
			if strings.Contains(options, "%s") {
				options = fmt.Sprintf(options, topic)
			}
			succeeded(t, "subscribe", c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`",`+options+`}}`, "1"))
			if got := c.receive(len(tt.want)); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			c.quiet(300 * time.Millisecond)
		})
	}
}

func TestClientAcknowledgedDelivery(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0, "commit_interval": 0}}})
	tests := []struct {
		name string
		ack  func(topic string, els []element) string // the ack frame
		want []string                                 // delivered to the group's next member
	}{
		{"by id", func(_ string, els []element) string {
			return fmt.Sprintf(`{"id":2,"t":"notif","a":"ack","p":{"id":%d}}`, els[2].ID)
		}, []string{"3", "4"}},
		{"by offset", func(topic string, els []element) string {
			return fmt.Sprintf(`{"id":2,"t":"notif","a":"ack","p":{"t":"%s","part":%d,"offset":%d}}`, topic, els[1].Part, els[1].Offset)
		}, []string{"2", "3", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := topicName(t)
			createTopicPartitions(t, 1, topic)
			sub := `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + topic + `"],"consumer_group":"` + topic + `","commit":"client","meta":true}}`
			c := dial(t, srv.url)
			succeeded(t, "subscribe", c.request(sub, "1"))
			produce(t, topic, "0", "1", "2", "3", "4")
			els := decodeElements(t, c.elements(5))
			if got, want := values(els), []string{"0", "1", "2", "3", "4"}; !slices.Equal(got, want) {
				t.Fatalf("got %q, want %q", got, want)
			}
			c.send(tt.ack(topic, els))
			acked := int64(5 - len(tt.want))
			waitCommitted(t, topic, topic, acked)
			c.conn.Close()

			next := dial(t, srv.url)
			succeeded(t, "subscribe again", next.request(sub, "1"))
			got := decodeElements(t, next.elements(len(tt.want)))
			if !slices.Equal(values(got), tt.want) || got[0].Offset != acked {
				t.Fatalf("next member got %q from offset %d, want %q from offset %d", values(got), got[0].Offset, tt.want, acked)
			}
			next.quiet(500 * time.Millisecond)
		})
	}

	t.Run("ack without a client-commit subscription", func(t *testing.T) {
		topic := topicName(t)
		createTopic(t, topic)
		tests := []struct{ name, subscribe string }{
			{"no subscription", ""},
			{"auto commit", `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + topic + `"],"consumer_group":"` + topic + `"}}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, srv.url)
				if tt.subscribe != "" {
					succeeded(t, "subscribe", c.request(tt.subscribe, "1"))
				}
				failedWith(t, "ack", c.request(`{"id":2,"t":"notif","a":"ack","p":{"id":1}}`, "2"), "invalid_payload")
			})
		}
	})
}

func TestMaxUnackedBoundsDelivery(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{
		"mq_interval": 0, "commit_interval": 0, "max_unacked": 2,
	}}})
	topic := topicName(t)
	createTopicPartitions(t, 1, topic)
	c := dial(t, srv.url)
	succeeded(t, "subscribe", c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`","commit":"client","meta":true}}`, "1"))
	produce(t, topic, "0", "1", "2", "3", "4")

	for i, want := range [][]string{{"0", "1"}, {"2", "3"}, {"4"}} {
		els := decodeElements(t, c.elements(len(want)))
		if got := values(els); !slices.Equal(got, want) {
			t.Fatalf("round %d: got %q, want %q (max_unacked 2)", i, got, want)
		}
		if len(want) == 2 {
			c.quiet(500 * time.Millisecond)
		}
		c.send(fmt.Sprintf(`{"id":%d,"t":"notif","a":"ack","p":{"id":%d}}`, 10+i, els[len(els)-1].ID))
	}
	waitCommitted(t, topic, topic, 5)
}

func TestSubscriptionBatchingOptions(t *testing.T) {
	tests := []struct {
		name     string
		consumer map[string]any
		options  string // members added to the subscribe's p
		control  bool   // a subscription without the options gets nothing in the meantime
	}{
		{"mq_interval 0 under an hour's route", map[string]any{"mq_interval": "1h", "mq_limit": 1000}, `"mq_interval":0`, true},
		{"mq_limit 1 under an hour's route", map[string]any{"mq_interval": "1h", "mq_limit": 1000}, `"mq_limit":1`, true},
		{"mq_interval capped by the route's 0", map[string]any{"mq_interval": 0}, `"mq_interval":3600000`, false},
		{"mq_limit capped by the route's 1", map[string]any{"mq_interval": "1h", "mq_limit": 1}, `"mq_limit":1000`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, consumerOptions(tt.consumer))
			topic := topicName(t)
			createTopic(t, topic)
			c, control := dial(t, srv.url), dial(t, srv.url)
			succeeded(t, "subscribe", c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`",`+tt.options+`}}`, "1"))
			if tt.control {
				succeeded(t, "control subscribe", control.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`.control"}}`, "1"))
			}
			produce(t, topic, "prompt")
			if got := c.receive(1); got[0] != "prompt" {
				t.Fatalf("got %q, want prompt", got)
			}
			if tt.control {
				control.quiet(500 * time.Millisecond)
			}
		})
	}
}

func TestPartialUnsubscribe(t *testing.T) {
	for _, mode := range []string{"group", "broadcast"} {
		t.Run(mode, func(t *testing.T) {
			// A server of its own: health must list this socket alone.
			srv := startServer(t, serverOptions{handler: map[string]any{"consumer": map[string]any{"mq_interval": 0}}})
			a, b := topicName(t)+".a", topicName(t)+".b"
			createTopicPartitions(t, 1, a, b)
			c := dial(t, srv.url)
			group := `,"consumer_group":"` + a + `"`
			if mode == "broadcast" {
				group = ""
			}
			succeeded(t, "subscribe", c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+a+`","`+b+`"],"mode":"`+mode+`"`+group+`}}`, "1"))

			r := c.request(`{"id":2,"t":"topic","a":"unsubscribe","p":{"t":["`+a+`"]}}`, "2")
			succeeded(t, "unsubscribe from a", r)
			if want := `["` + b + `"]`; string(r.P) != want {
				t.Fatalf("unsubscribe from a: got p %s, want %s", r.P, want)
			}
			produce(t, a, "to a")
			produce(t, b, "to b")
			if got := c.receive(1); got[0] != "to b" {
				t.Fatalf("got %q, want to b", got)
			}
			c.quiet(300 * time.Millisecond)
			if got := subscribedTopics(t, c); !slices.Equal(got, []string{b}) {
				t.Fatalf("health: got topics %v, want %v", got, []string{b})
			}

			r = c.request(`{"id":4,"t":"topic","a":"unsubscribe"}`, "4")
			succeeded(t, "unsubscribe", r)
			if r.P != nil {
				t.Fatalf("unsubscribe: got p %s, want none", r.P)
			}
			if got := subscribedTopics(t, c); len(got) != 0 {
				t.Fatalf("health after unsubscribe: got topics %v, want none", got)
			}
		})
	}
}

// subscribedTopics asks health for the topics of the one socket open on the server.
func subscribedTopics(t *testing.T, c *client) []string {
	t.Helper()
	r := c.request(`{"id":"h","t":"health"}`, `"h"`)
	var health struct {
		Consumers []struct {
			Topics []string `json:"topics"`
		} `json:"consumers"`
	}
	if err := json.Unmarshal(r.P, &health); err != nil || len(health.Consumers) != 1 {
		t.Fatalf("health: got %s (%v), want one socket", r.P, err)
	}
	return health.Consumers[0].Topics
}

// sharedCluster returns the one set of Kafka clients the pool holds.
func sharedCluster(t *testing.T) *cluster {
	t.Helper()
	var clusters []*cluster
	pool.Range(func(_, value any) bool {
		if c, ok := value.(*cluster); ok {
			clusters = append(clusters, c)
		}
		return true
	})
	if len(clusters) != 1 {
		t.Fatalf("got %d clusters in the pool, want 1", len(clusters))
	}
	return clusters[0]
}

// broadcastDelivery is what one broadcast subscriber received, or why it did not.
type broadcastDelivery struct {
	els []element
	err error
}

// subscribeBroadcast dials n sockets, at most workers at a time, subscribes each with frame and reads on each
// until want notifications arrived; each socket's outcome is sent on the returned channel.
func subscribeBroadcast(t *testing.T, url, frame string, n, workers, want int) <-chan broadcastDelivery {
	t.Helper()
	dialer := websocket.Dialer{HandshakeTimeout: waitLimit, ReadBufferSize: 1024, WriteBufferSize: 1024}
	var mu sync.Mutex
	var conns []*websocket.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	out := make(chan broadcastDelivery, n)
	jobs := make(chan int)
	var subscribed sync.WaitGroup
	for range workers {
		subscribed.Go(func() {
			for range jobs {
				conn, _, err := dialer.Dial(url, nil)
				if err != nil {
					out <- broadcastDelivery{err: fmt.Errorf("dialing: %w", err)}
					continue
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
				conn.SetReadDeadline(time.Now().Add(3 * waitLimit))
				if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
					out <- broadcastDelivery{err: fmt.Errorf("subscribing: %w", err)}
					continue
				}
				var r reply
				if _, f, err := conn.ReadMessage(); err != nil || json.Unmarshal(f, &r) != nil || r.S == nil || *r.S != 0 {
					out <- broadcastDelivery{err: fmt.Errorf("subscribe reply: got %s (%v), want s 0", f, err)}
					continue
				}
				go func() { out <- readBroadcast(conn, want) }()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	subscribed.Wait()
	return out
}

// readBroadcast reads notifications until want arrived, or the read deadline passed.
func readBroadcast(conn *websocket.Conn, want int) broadcastDelivery {
	var d broadcastDelivery
	for len(d.els) < want {
		_, f, err := conn.ReadMessage()
		if err != nil {
			d.err = fmt.Errorf("after %d of %d notifications: %w", len(d.els), want, err)
			return d
		}
		var batch []element
		if err := json.Unmarshal(f, &batch); err != nil {
			d.err = fmt.Errorf("frame %s: %w", f, err)
			return d
		}
		d.els = append(d.els, batch...)
	}
	return d
}

// checkBroadcast checks that els are exactly the values want, with each partition's offsets increasing.
func checkBroadcast(els []element, want []string) error {
	got := values(els)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("got values %q, want %q", got, want)
	}
	last := map[int]int64{}
	for _, e := range els {
		if prev, ok := last[e.Part]; ok && e.Offset <= prev {
			return fmt.Errorf("partition %d: got offset %d after %d, want increasing offsets", e.Part, e.Offset, prev)
		}
		last[e.Part] = e.Offset
	}
	return nil
}

func TestBroadcastReadsTopicOnceForAllSockets(t *testing.T) {
	const sockets, records, partitions = 500, 20, 3
	// Every socket comes from 127.0.0.1: lift the per-client connection limit.
	srv := startServer(t, serverOptions{handler: map[string]any{"limits": map[string]any{"max_connections_per_client": -1}}})
	topic := topicName(t)
	createTopicPartitions(t, partitions, topic)
	broadcaster := sharedCluster(t).broadcaster
	before := broadcaster.ReadersStarted()

	sub := `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + topic + `"],"mode":"broadcast","meta":true}}`
	start := time.Now()
	deliveries := subscribeBroadcast(t, srv.url, sub, sockets, 8, records)
	t.Logf("%d sockets subscribed in %v", sockets, time.Since(start))

	want := make([]string, records)
	for i := range want {
		want[i] = fmt.Sprintf("r%02d", i)
	}
	produce(t, topic, want...)
	for i := range sockets {
		d := <-deliveries // each reader gives up at its read deadline
		if d.err == nil {
			d.err = checkBroadcast(d.els, want)
		}
		if d.err != nil {
			t.Fatalf("socket %d of %d: %v", i+1, sockets, d.err)
		}
	}
	t.Logf("%d records reached %d sockets %v after the first subscribe", records, sockets, time.Since(start))
	if got := broadcaster.ReadersStarted() - before; got != partitions {
		t.Fatalf("partition readers started: got %v, want %v", got, partitions)
	}

	t.Run("a later subscriber gets records from then on", func(t *testing.T) {
		late := dial(t, srv.url)
		succeeded(t, "subscribe", late.request(sub, "1"))
		produce(t, topic, "late")
		if got := values(decodeElements(t, late.elements(1))); !slices.Equal(got, []string{"late"}) {
			t.Fatalf("got %q, want %q", got, []string{"late"})
		}
		late.quiet(300 * time.Millisecond)
		if got := broadcaster.ReadersStarted() - before; got != partitions {
			t.Fatalf("partition readers started: got %v, want %v (the shared stream)", got, partitions)
		}
	})

	t.Run("from earliest", func(t *testing.T) {
		early := dial(t, srv.url)
		succeeded(t, "subscribe", early.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"mode":"broadcast","meta":true,"from":"earliest"}}`, "1"))
		all := append(slices.Clone(want), "late")
		slices.Sort(all)
		els := decodeElements(t, early.elements(len(all)))
		if err := checkBroadcast(els, all); err != nil {
			t.Fatal(err)
		}
		early.quiet(300 * time.Millisecond)
	})
}

func TestCreateTopicsWithSettings(t *testing.T) {
	srv := startServer(t, serverOptions{})
	c := dial(t, srv.url)
	n1, n2 := topicName(t)+".1", topicName(t)+".2"
	r := c.request(`{"id":1,"t":"topic","a":"create","p":[{"name":"`+n1+`","partitions":2,"configs":{"cleanup.policy":"compact"}},"`+n2+`"]}`, "1")
	succeeded(t, "create", r)
	if want := `[{"name":"` + n1 + `","s":0},{"name":"` + n2 + `","s":0}]`; string(r.P) != want {
		t.Fatalf("create: got p %s, want %s", r.P, want)
	}
	// A real Kafka answers NOT_LEADER_OR_FOLLOWER for a moment after a create, and describe does not retry.
	waitTopicReady(t, n1, 2)
	if got := describePartitions(t, c, n1); len(got) != 2 {
		t.Fatalf("%s: got %d partitions, want 2", n1, len(got))
	}
	if got := topicConfig(t, n1, "cleanup.policy"); got != "compact" {
		t.Fatalf("%s cleanup.policy: got %v, want compact", n1, got)
	}

	t.Run("one topic refused by Kafka", func(t *testing.T) {
		bad, good := topicName(t)+".bad", topicName(t)+".good"
		r := c.request(`{"id":2,"t":"topic","a":"create","p":[{"name":"`+bad+`","replication":100},"`+good+`"]}`, "2")
		failedWith(t, "create", r, "kafka_error")
		var p struct {
			Topics []struct {
				Name  string `json:"name"`
				S     int    `json:"s"`
				Error *struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			} `json:"topics"`
		}
		if err := json.Unmarshal(r.P, &p); err != nil || len(p.Topics) != 2 {
			t.Fatalf("create: got p %s (%v), want two per-topic results", r.P, err)
		}
		if got := p.Topics[0]; got.Name != bad || got.S != 1 || got.Error == nil || got.Error.Code != "kafka_error" || got.Error.Message == "" {
			t.Fatalf("refused topic: got %v, want %s with s 1 and a kafka_error", fmt.Sprint(got.Name, " s ", got.S, " error ", got.Error), bad)
		}
		if got := p.Topics[1]; got.Name != good || got.S != 0 || got.Error != nil {
			t.Fatalf("accepted topic: got %v, want %s with s 0", fmt.Sprint(got.Name, " s ", got.S, " error ", got.Error), good)
		}
		waitTopicReady(t, good, len(leaders(t, good)))
		describePartitions(t, c, good)
		failedWith(t, "describe the refused topic", c.request(`{"id":3,"t":"topic","a":"describe","p":["`+bad+`"]}`, "3"), "unknown_topic")
	})
}

// partition is one partition of a describe reply.
type partition struct {
	Partition int    `json:"partition"`
	Leader    int    `json:"leader"`
	Low       int64  `json:"low"`
	High      int64  `json:"high"`
	Committed *int64 `json:"committed"`
	Lag       *int64 `json:"lag"`
}

func (p partition) String() string {
	s := fmt.Sprintf("partition %d leader %d [%d, %d)", p.Partition, p.Leader, p.Low, p.High)
	if p.Committed != nil {
		s += fmt.Sprintf(" committed %d", *p.Committed)
	}
	if p.Lag != nil {
		s += fmt.Sprintf(" lag %d", *p.Lag)
	}
	return s
}

// describePartitions describes one topic over the socket and returns its partitions.
func describePartitions(t *testing.T, c *client, topic string) []partition {
	t.Helper()
	r := c.request(`{"id":"d","t":"topic","a":"describe","p":["`+topic+`"]}`, `"d"`)
	succeeded(t, "describe "+topic, r)
	var desc []struct {
		Topic      string      `json:"topic"`
		Partitions []partition `json:"partitions"`
	}
	if err := json.Unmarshal(r.P, &desc); err != nil || len(desc) != 1 || desc[0].Topic != topic {
		t.Fatalf("describe %s: got %s (%v)", topic, r.P, err)
	}
	return desc[0].Partitions
}

// topicConfig reads one config of a topic straight from the broker.
func topicConfig(t *testing.T, topic, name string) string {
	t.Helper()
	transport := &kafka.Transport{} // fresh metadata: the default transport's cache can predate the topic
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport, Timeout: waitLimit}
	res, err := client.DescribeConfigs(t.Context(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{name}},
	}})
	if err != nil || len(res.Resources) != 1 || res.Resources[0].Error != nil {
		t.Fatalf("describing configs of %s: %v %+v", topic, err, res)
	}
	for _, e := range res.Resources[0].ConfigEntries {
		if e.ConfigName == name {
			return e.ConfigValue
		}
	}
	return ""
}

// leaders returns the leader broker of each partition of topic, straight from the broker.
func leaders(t *testing.T, topic string) map[int]int {
	t.Helper()
	transport := &kafka.Transport{} // fresh metadata: the default transport's cache can predate the topic
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport, Timeout: waitLimit}
	meta, err := client.Metadata(t.Context(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(meta.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	out := map[int]int{}
	for _, p := range meta.Topics[0].Partitions {
		out[p.ID] = p.Leader.ID
	}
	return out
}

func TestDescribeTopics(t *testing.T) {
	srv := startServer(t, serverOptions{handler: map[string]any{
		"producer": map[string]any{"mq_interval": 0},
		"consumer": map[string]any{"mq_interval": 0, "commit_interval": 0},
	}})
	topic := topicName(t)
	createTopicPartitions(t, 2, topic)
	c := dial(t, srv.url)
	publish := func(id string, part int) {
		t.Helper()
		decodeReceipt(t, c.request(fmt.Sprintf(`{"id":%s,"t":"notif","ack":true,"p":{"t":"%s","m":"m%s","part":%d}}`, id, topic, id, part), id))
	}
	for i, part := range []int{0, 0, 0, 1} {
		publish(fmt.Sprint(10+i), part)
	}
	leader := leaders(t, topic)
	i64 := func(v int64) *int64 { return &v }
	describe := func(t *testing.T, frame string) string {
		t.Helper()
		r := c.request(frame, "1")
		succeeded(t, "describe", r)
		var desc []struct {
			Topic      string      `json:"topic"`
			Partitions []partition `json:"partitions"`
		}
		if err := json.Unmarshal(r.P, &desc); err != nil || len(desc) != 1 || desc[0].Topic != topic {
			t.Fatalf("describe: got %s (%v), want %s only", r.P, err, topic)
		}
		return fmt.Sprint(desc[0].Partitions)
	}

	tests := []struct {
		name, frame string
		want        []partition
	}{
		{"names", `{"id":1,"t":"topic","a":"describe","p":["` + topic + `"]}`, []partition{
			{Partition: 0, Leader: leader[0], Low: 0, High: 3}, {Partition: 1, Leader: leader[1], Low: 0, High: 1},
		}},
		{"a group without offsets", `{"id":1,"t":"topic","a":"describe","p":{"t":["` + topic + `"],"consumer_group":"` + topic + `.none"}}`, []partition{
			{Partition: 0, Leader: leader[0], Low: 0, High: 3}, {Partition: 1, Leader: leader[1], Low: 0, High: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := describe(t, tt.frame), fmt.Sprint(tt.want); got != want {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}

	t.Run("a group's offsets and lag", func(t *testing.T) {
		group := topic + ".g"
		consumer := dial(t, srv.url)
		succeeded(t, "subscribe", consumer.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+group+`","from":"earliest"}}`, "1"))
		consumer.receive(4)
		waitCommitted(t, group, topic, 4)
		succeeded(t, "unsubscribe", consumer.request(`{"id":2,"t":"topic","a":"unsubscribe"}`, "2"))
		publish("20", 0)
		publish("21", 0)
		want := []partition{
			{Partition: 0, Leader: leader[0], Low: 0, High: 5, Committed: i64(3), Lag: i64(2)},
			{Partition: 1, Leader: leader[1], Low: 0, High: 1, Committed: i64(1), Lag: i64(0)},
		}
		frame := `{"id":1,"t":"topic","a":"describe","p":{"t":["` + topic + `"],"consumer_group":"` + group + `"}}`
		if got := describe(t, frame); got != fmt.Sprint(want) {
			t.Fatalf("got %v, want %v", got, fmt.Sprint(want))
		}
	})

	t.Run("a missing topic", func(t *testing.T) {
		missing := topicName(t)
		failedWith(t, "describe", c.request(`{"id":2,"t":"topic","a":"describe","p":["`+missing+`"]}`, "2"), "unknown_topic")
		failedWith(t, "describe", c.request(`{"id":3,"t":"topic","a":"describe","p":["`+topic+`","`+missing+`"]}`, "3"), "unknown_topic")
	})
}

// listed reports whether a topic list over the socket shows topic.
func listed(t *testing.T, c *client, topic string) bool {
	t.Helper()
	r := c.request(`{"id":"l","t":"topic","a":"list"}`, `"l"`)
	succeeded(t, "list", r)
	var list []struct {
		Topic string `json:"topic"`
	}
	if err := json.Unmarshal(r.P, &list); err != nil {
		t.Fatalf("list: got %s (%v)", r.P, err)
	}
	return slices.ContainsFunc(list, func(e struct {
		Topic string `json:"topic"`
	}) bool {
		return e.Topic == topic
	})
}

func TestDeleteTopics(t *testing.T) {
	t.Run("disabled by default", func(t *testing.T) {
		srv := startServer(t, serverOptions{})
		topic := topicName(t)
		createTopic(t, topic)
		c := dial(t, srv.url)
		failedWith(t, "delete", c.request(`{"id":1,"t":"topic","a":"delete","p":["`+topic+`"]}`, "1"), "forbidden")
		if !listed(t, c, topic) {
			t.Fatalf("list after a refused delete: got no %s, want it listed", topic)
		}
	})

	t.Run("allowed", func(t *testing.T) {
		srv := startServer(t, serverOptions{handler: map[string]any{"topics": map[string]any{"allow_delete": true}}})
		topic := topicName(t)
		createTopic(t, topic)
		c := dial(t, srv.url)
		if !listed(t, c, topic) {
			t.Fatalf("list: got no %s, want it listed", topic)
		}
		r := c.request(`{"id":1,"t":"topic","a":"delete","p":"`+topic+`"}`, "1")
		succeeded(t, "delete", r)
		if want := `["` + topic + `"]`; string(r.P) != want {
			t.Fatalf("delete: got p %s, want %s", r.P, want)
		}
		deadline := time.Now().Add(waitLimit)
		for listed(t, c, topic) {
			if time.Now().After(deadline) {
				t.Fatalf("list %v after the delete: got %s, want it gone", waitLimit, topic)
			}
			time.Sleep(50 * time.Millisecond)
		}
		failedWith(t, "delete again", c.request(`{"id":2,"t":"topic","a":"delete","p":["`+topic+`"]}`, "2"), "unknown_topic")
	})
}
