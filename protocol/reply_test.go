package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReply(t *testing.T) {
	tests := []struct {
		name    string
		id      uint64
		req     Request
		payload any
		want    string
	}{
		{"create", 1, Request{ID: raw(`1`), Type: "topic", Action: "create"}, []string{"topic1"},
			`{"id":1,"refid":1,"t":"topic","a":"create","s":0,"p":["topic1"]}`},
		{"list", 6, Request{ID: raw(`23`), Type: "topic", Action: "list"}, []TopicPartition{{"topic1", 0}, {"topic1", 1}},
			`{"id":6,"refid":23,"t":"topic","a":"list","s":0,"p":[{"topic":"topic1","partition":0},{"topic":"topic1","partition":1}]}`},
		{"unsubscribe has no p", 567, Request{ID: raw(`1300`), Type: "topic", Action: "unsubscribe"}, nil,
			`{"id":567,"refid":1300,"t":"topic","a":"unsubscribe","s":0}`},
		{"health", 5, Request{ID: raw(`1500`), Type: "health"}, Health{Consumers: []Consumer{{WS: 1, Topics: []string{"topic1", "topic2"}}}},
			`{"id":5,"refid":1500,"t":"health","s":0,"p":{"consumers":[{"ws":1,"topics":["topic1","topic2"]}]}}`},
		{"health without subscriptions lists []", 5, Request{Type: "health"}, Health{Consumers: []Consumer{{WS: 2}}},
			`{"id":5,"t":"health","s":0,"p":{"consumers":[{"ws":2,"topics":[]}]}}`},
		{"health without consumers lists []", 5, Request{Type: "health"}, Health{},
			`{"id":5,"t":"health","s":0,"p":{"consumers":[]}}`},
		{"no id no refid", 18446744073709551615, Request{Type: "topic", Action: "list"}, []TopicPartition{},
			`{"id":18446744073709551615,"t":"topic","a":"list","s":0,"p":[]}`},
		{"string refid", 2, Request{ID: raw(`"1"`), Type: "health"}, nil, `{"id":2,"refid":"1","t":"health","s":0}`},
		{"object refid", 2, Request{ID: raw(`{"a": 1}`), Type: "health"}, nil, `{"id":2,"refid":{"a": 1},"t":"health","s":0}`},
		{"null refid", 2, Request{ID: raw(`null`), Type: "health"}, nil, `{"id":2,"refid":null,"t":"health","s":0}`},
		{"echoed a is escaped", 3, Request{Type: "health", Action: "\"<x>\"\n"}, nil, `{"id":3,"t":"health","a":"\"<x>\"\n","s":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Reply(tt.id, &tt.req, tt.payload)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestReplyPanicsOnUnencodablePayload(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Errorf("got no panic, want one")
		}
	}()
	Reply(1, &Request{Type: "health"}, make(chan int))
}

func TestErrorReply(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		err  *Error
		want string
	}{
		{"with refid, t and a", Request{ID: raw(`1`), Type: "topic", Action: "delete"}, &Error{CodeUnknownAction, `unknown action "delete" for t "topic"`},
			`{"id":9,"refid":1,"t":"topic","a":"delete","s":1,"p":{"code":"unknown_action","message":"unknown action \"delete\" for t \"topic\""}}`},
		{"unparsed frame is t error", Request{}, &Error{CodeInvalidJSON, "frame is not valid JSON"},
			`{"id":9,"t":"error","s":1,"p":{"code":"invalid_json","message":"frame is not valid JSON"}}`},
		{"no t but an id", Request{ID: raw(`"x"`), Action: "list"}, &Error{CodeUnknownType, "t is missing"},
			`{"id":9,"refid":"x","t":"error","a":"list","s":1,"p":{"code":"unknown_type","message":"t is missing"}}`},
		{"null refid", Request{ID: raw(`null`), Type: "notif"}, &Error{CodeInvalidPayload, "p is missing"},
			`{"id":9,"refid":null,"t":"notif","s":1,"p":{"code":"invalid_payload","message":"p is missing"}}`},
		{"unknown t is echoed escaped", Request{Type: "a\u2028\x01\xff"}, &Error{CodeUnknownType, "x"},
			`{"id":9,"t":"a\u2028\u0001\ufffd","s":1,"p":{"code":"unknown_type","message":"x"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ErrorReply(9, &tt.req, tt.err)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRefidThroughDecode follows an id from a frame to both kinds of reply: refid is the id as sent, type and
// spelling included.
func TestRefidThroughDecode(t *testing.T) {
	tests := []struct {
		name, id, want string // want is the reply's members before "t"
	}{
		{"number", `1`, `{"id":7,"refid":1,`},
		{"string", `"1"`, `{"id":7,"refid":"1",`},
		{"fraction", `1.5`, `{"id":7,"refid":1.5,`},
		{"object", `{"k": [true]}`, `{"id":7,"refid":{"k": [true]},`},
		{"null", `null`, `{"id":7,"refid":null,`},
		{"absent", ``, `{"id":7,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			member := ""
			if tt.id != "" {
				member = `"id":` + tt.id + `,`
			}
			ok, _ := Decode([]byte(`{` + member + `"t":"health"}`))
			if got := string(Reply(7, &ok, nil)); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %s, want it to start %s", got, tt.want)
			}
			bad, err := Decode([]byte(`{` + member + `"t":"topic","a":"nope"}`))
			if got := string(ErrorReply(7, &bad, err)); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %s, want it to start %s", got, tt.want)
			}
		})
	}
}

// escapeCases are strings whose encoding differs from their bytes.
var escapeCases = []string{
	"",
	"hello",
	`{"custom_message":"msg"}`,
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x20\x7f",
	`quote " backslash \ slash /`,
	"<script>&amp;</script>",
	"line\u2028para\u2029end",
	"\xff",
	"a\xc3",
	"\xed\xa0\x80",        // an encoded surrogate is not UTF-8
	"\xf4\x90\x80\x80",    // beyond U+10FFFF
	"é€😀\U0010FFFF\uFFFD", // valid multi-byte text stays as it is
	strings.Repeat("x\"y\n", 64),
}

// encodingJSON is how encoding/json writes s as a JSON string with HTML escaping off.
func encodingJSON(t testing.TB, s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestAppendNotificationsMatchesEncodingJSON(t *testing.T) {
	for _, s := range escapeCases {
		t.Run(strings.ToValidUTF8(s, "?"), func(t *testing.T) {
			got := string(AppendNotifications(nil, []Notification{{ID: 3, Value: []byte(s)}}))
			want := `[{"id":3,"t":"notif","p":` + encodingJSON(t, s) + `}]`
			if got != want {
				t.Errorf("got %s, want %s", got, want)
			}
			if !json.Valid([]byte(got)) || !utf8.ValidString(got) {
				t.Errorf("got %q, want valid JSON in UTF-8", got)
			}
		})
	}
}

// TestAppendStringEveryByte puts each byte value, and characters of every UTF-8 length, at each place in and
// across the eight-byte words appendString skips, and holds the result to encoding/json's.
func TestAppendStringEveryByte(t *testing.T) {
	var specials []string
	for c := range 256 {
		specials = append(specials, string([]byte{byte(c)}))
	}
	specials = append(specials, "é", "\u2028", "\u2029", "😀", "\xed\xa0\x80", "\xf0\x9f\x98")
	for _, sp := range specials {
		for at := range 10 {
			s := strings.Repeat("a", at) + sp + strings.Repeat("b", 17)
			if got, want := string(appendString(nil, s)), encodingJSON(t, s); got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		}
	}
}

func TestAppendNotifications(t *testing.T) {
	tests := []struct {
		name string
		dst  string
		ns   []Notification
		want string
	}{
		{"none", "", nil, `[]`},
		{"null value", "", []Notification{{ID: 1}}, `[{"id":1,"t":"notif","p":null}]`},
		{"empty value", "", []Notification{{ID: 1, Value: []byte{}}}, `[{"id":1,"t":"notif","p":""}]`},
		{"JSON value stays a string", "", []Notification{{ID: 3, Value: []byte(`{"x":1}`)}}, `[{"id":3,"t":"notif","p":"{\"x\":1}"}]`},
		{"several", "", []Notification{{ID: 1, Value: []byte("a")}, {ID: 2}, {ID: 18446744073709551615, Value: []byte("c")}},
			`[{"id":1,"t":"notif","p":"a"},{"id":2,"t":"notif","p":null},{"id":18446744073709551615,"t":"notif","p":"c"}]`},
		{"appends to dst", "prefix", []Notification{{ID: 1, Value: []byte("a")}}, `prefix[{"id":1,"t":"notif","p":"a"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendNotifications([]byte(tt.dst), tt.ns)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// benchValue is 100 bytes of the kind of text clients publish: JSON, whose quotes need escaping.
var benchValue = []byte(`{"sensor":"t-1700","reading":21.5,"unit":"C","at":"2026-01-02T03:04:05Z","tags":["a","b"],"ok":true}`)

func BenchmarkAppendNotifications(b *testing.B) {
	for _, bc := range []struct {
		name  string
		value []byte
	}{
		{"json", benchValue},
		{"plain", bytes.Repeat([]byte("abcdefghij"), 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if len(bc.value) != 100 {
				b.Fatalf("got a %d-byte value, want 100", len(bc.value))
			}
			ns := make([]Notification, 1000)
			for i := range ns {
				ns[i] = Notification{ID: uint64(i + 1), Value: bc.value}
			}
			var buf []byte
			b.SetBytes(int64(len(ns) * len(bc.value)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendNotifications(buf[:0], ns)
			}
		})
	}
}

func TestAppendNotificationsMeta(t *testing.T) {
	meta := func(n Notification) Notification {
		n.Meta, n.Topic, n.Partition, n.Offset, n.Time = true, "topic1", 2, 42, 1700000000000
		return n
	}
	tests := []struct {
		name string
		ns   []Notification
		want string
	}{
		{"text", []Notification{meta(Notification{ID: 1, Value: []byte(`{"x":1}`), Key: []byte("k1"), Headers: []Header{{"trace", []byte("abc")}, {"trace", []byte("é")}}})},
			`[{"id":1,"t":"notif","p":"{\"x\":1}","topic":"topic1","part":2,"offset":42,"k":"k1","h":{"trace":"abc","trace":"é"},"ts":1700000000000}]`},
		{"null value and key, no headers", []Notification{meta(Notification{ID: 2})},
			`[{"id":2,"t":"notif","p":null,"topic":"topic1","part":2,"offset":42,"k":null,"h":{},"ts":1700000000000}]`},
		{"empty value and key, null header value", []Notification{meta(Notification{ID: 2, Value: []byte{}, Key: []byte{}, Headers: []Header{{"n", nil}}})},
			`[{"id":2,"t":"notif","p":"","topic":"topic1","part":2,"offset":42,"k":"","h":{"n":null},"ts":1700000000000}]`},
		{"binary value is base64 with key and headers", []Notification{meta(Notification{ID: 3, Value: []byte{0, 0xff}, Key: []byte("key"), Headers: []Header{{"x", []byte("1")}}})},
			`[{"id":3,"t":"notif","p":"AP8=","topic":"topic1","part":2,"offset":42,"k":"a2V5","h":{"x":"MQ=="},"ts":1700000000000,"enc":"base64"}]`},
		{"binary key", []Notification{meta(Notification{ID: 4, Value: []byte("v"), Key: []byte{0xc3}})},
			`[{"id":4,"t":"notif","p":"dg==","topic":"topic1","part":2,"offset":42,"k":"ww==","h":{},"ts":1700000000000,"enc":"base64"}]`},
		{"invalid UTF-8 in a header", []Notification{meta(Notification{ID: 5, Value: []byte("v"), Headers: []Header{{"ok", []byte("a")}, {"bad\xff", []byte("\xed\xa0\x80")}}})},
			`[{"id":5,"t":"notif","p":"dg==","topic":"topic1","part":2,"offset":42,"k":null,"h":{"ok":"YQ==","bad\ufffd":"7aCA"},"ts":1700000000000,"enc":"base64"}]`},
		{"meta beside plain", []Notification{{ID: 6, Value: []byte("a")}, meta(Notification{ID: 7, Value: []byte("b\n")})},
			`[{"id":6,"t":"notif","p":"a"},{"id":7,"t":"notif","p":"b\n","topic":"topic1","part":2,"offset":42,"k":null,"h":{},"ts":1700000000000}]`},
		{"fields ignored without meta", []Notification{{ID: 8, Value: []byte{0xff}, Topic: "x", Key: []byte("k"), Offset: 9}},
			`[{"id":8,"t":"notif","p":"\ufffd"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendNotifications(nil, tt.ns)
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if !json.Valid(got) || !utf8.Valid(got) {
				t.Errorf("got %q, want valid JSON in UTF-8", got)
			}
		})
	}
}

func TestAppendNotificationsDoesNotAllocate(t *testing.T) {
	ns := []Notification{{ID: 1, Value: benchValue}, {ID: 2}}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendNotifications(buf[:0], ns) }); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
	ns = []Notification{{ID: 1, Value: benchValue, Meta: true, Topic: "t", Key: []byte{0xff}, Headers: []Header{{"h", []byte("v")}}}}
	if n := testing.AllocsPerRun(100, func() { buf = AppendNotifications(buf[:0], ns) }); n != 0 {
		t.Errorf("got %v allocations with meta into a large enough buffer, want 0", n)
	}
}

func TestErrorReplyWith(t *testing.T) {
	req := Request{ID: raw(`4`), Type: "topic", Action: "create"}
	err := &Error{CodeKafkaError, "some topics were not created"}
	results := []TopicResult{{Name: "a", S: 0}, {Name: "b", S: 1, Error: &ErrorPayload{CodeKafkaError, "TOPIC_ALREADY_EXISTS"}}}
	tests := []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"topics", map[string]any{"topics": results},
			`{"id":9,"refid":4,"t":"topic","a":"create","s":1,"p":{"code":"kafka_error","message":"some topics were not created","topics":[{"name":"a","s":0},{"name":"b","s":1,"error":{"code":"kafka_error","message":"TOPIC_ALREADY_EXISTS"}}]}}`},
		{"keys in order", map[string]any{"z": 1, "a": "x"},
			`{"id":9,"refid":4,"t":"topic","a":"create","s":1,"p":{"code":"kafka_error","message":"some topics were not created","a":"x","z":1}}`},
		{"none is ErrorReply", nil, string(ErrorReply(9, &req, err))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ErrorReplyWith(9, &req, err, tt.extra)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	for _, extra := range []map[string]any{{"code": "x"}, {"message": "x"}, {"c": make(chan int)}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("got no panic for %v, want one", extra)
				}
			}()
			ErrorReplyWith(9, &req, err, extra)
		}()
	}
}

func TestReplyPayloads(t *testing.T) {
	committed, lag := int64(40), int64(2)
	tests := []struct {
		name    string
		req     Request
		payload any
		want    string
	}{
		{"receipt", Request{ID: raw(`1`), Type: "notif", Action: "create"}, Receipt{Topic: "a", Partition: 1, Offset: 42, Time: 1700000000000},
			`{"id":2,"refid":1,"t":"notif","a":"create","s":0,"p":{"t":"a","part":1,"offset":42,"ts":1700000000000}}`},
		{"detailed create", Request{ID: raw(`1`), Type: "topic", Action: "create"}, []TopicResult{{Name: "a"}, {Name: "b"}},
			`{"id":2,"refid":1,"t":"topic","a":"create","s":0,"p":[{"name":"a","s":0},{"name":"b","s":0}]}`},
		{"describe", Request{Type: "topic", Action: "describe"}, []TopicDescription{
			{Topic: "a", Partitions: []PartitionDescription{{Partition: 0, Leader: 1, Low: 0, High: 42, Committed: &committed, Lag: &lag}, {Partition: 1, Leader: 2, Low: 5, High: 5}}},
			{Topic: "b"}},
			`{"id":2,"t":"topic","a":"describe","s":0,"p":[{"topic":"a","partitions":[{"partition":0,"leader":1,"low":0,"high":42,"committed":40,"lag":2},{"partition":1,"leader":2,"low":5,"high":5}]},{"topic":"b","partitions":[]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Reply(2, &tt.req, tt.payload)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func BenchmarkAppendNotificationsMeta(b *testing.B) {
	ns := make([]Notification, 1000)
	for i := range ns {
		ns[i] = Notification{ID: uint64(i + 1), Value: benchValue, Meta: true, Topic: "topic1", Partition: 3, Offset: int64(i), Key: []byte("sensor-t-1700"),
			Headers: []Header{{"trace", []byte("4bf92f3577b34da6a3ce929d0e0e4736")}}, Time: 1767323045000}
	}
	var buf []byte
	b.SetBytes(int64(len(ns) * len(benchValue)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendNotifications(buf[:0], ns)
	}
}

func TestHealthKafkaOptIn(t *testing.T) {
	tests := []struct {
		name, frame string
		want        bool
		code        string
	}{
		{"seed form", `{"id":1,"t":"health"}`, false, ""},
		{"asked", `{"id":1,"t":"health","p":{"kafka":true}}`, true, ""},
		{"declined", `{"id":1,"t":"health","p":{"kafka":false}}`, false, ""},
		{"p not an object is ignored", `{"id":1,"t":"health","p":"x"}`, false, ""},
		{"wrong type", `{"id":1,"t":"health","p":{"kafka":"yes"}}`, false, CodeInvalidPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := Decode([]byte(tt.frame))
			if tt.code != "" {
				if err == nil || err.Code != tt.code || !strings.Contains(err.Message, "p.kafka") {
					t.Fatalf("got %v, want %s naming p.kafka", err, tt.code)
				}
				return
			}
			if err != nil || req.Kafka != tt.want {
				t.Fatalf("got kafka %v err %v, want %v", req.Kafka, err, tt.want)
			}
		})
	}
	got := string(Reply(5, &Request{ID: []byte("1"), Type: "health"}, Health{Kafka: &KafkaHealth{Reachable: true}}))
	if want := `{"id":5,"refid":1,"t":"health","s":0,"p":{"consumers":[],"kafka":{"reachable":true}}}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
