package protocol

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// readmeRequests are the client frames of original-README.md, as printed there.
var readmeRequests = []string{
	`{
  "id":1, 
  "t":"topic",
  "a":"create", 
  "p":["topic1", "topic2", "topicN"]
}`,
	`{
  "id":23, 
  "t":"topic",
  "a":"list"
}`,
	`{
    "id":1000,
    "t":"topic",
    "a":"subscribe",
    "p":
      {
        "t":["topic1","topic2"],
        "consumer_group":"ingestion_1"
      }
}`,
	`{
    "id":1300,
    "t":"topic",
    "a":"unsubscribe"
}`,
	`{"id":1320,"t":"notif","a":"create","p":{"t":"topic1", "m":"{custom_message:'msg'}"}}`,
	`{
    "id":1500,
    "t":"health"
}`,
}

// readmeOthers are the README's other JSON blocks: the generic structure (with its comments, so not JSON), the
// server's replies and a notification frame. They seed the fuzzer alongside the requests.
var readmeOthers = []string{
	`{
  "id":"any_id",
  "refid":"id of orignial message", //returned by server to keep track of messages
  "t":"message type",
  "a":"action",
  "s":"success", //0 or 1
  "p":"payload"
}`,
	`{"id":1,"refid":1,"t":"topic","a":"create","s":0,"p":["topic1","topic2","topicN"]}`,
	`{
  "id":6,
  "refid":23,
  "t":"topic",
  "a":"list",
  "s":0,
  "p":
  [{"topic":"topic2","partition":0},{"topic":"topic2","partition":1},{"topic":"topic2","partition":2},{"topic":"topic1","partition":0},{"topic":"topic1","partition":1},{"topic":"topic1","partition":2},{"topic":"topicN","partition":0},{"topic":"topicN","partition":1},{"topic":"topicN","partition":2}]}`,
	`{"id":0,"refid":1000,"t":"topic","a":"subscribe","p":["topic1","topic2"],"s":0}`,
	`{"id":567,"refid":1300,"t":"topic","a":"unsubscribe","s":0}`,
	`[{"id":3,"t":"notif","p":"hello"}]`,
	`{"id":5,"refid":1500,"t":"health","s":0,"p":{"consumers":[{"ws":1,"topics":["topic1","topic2"]}]}}`,
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Request
	}{
		{"readme create", readmeRequests[0], Request{ID: raw(`1`), Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"topic1", "topic2", "topicN"}}},
		{"readme list", readmeRequests[1], Request{ID: raw(`23`), Type: "topic", Action: "list", Op: OpListTopics}},
		{"readme subscribe", readmeRequests[2], Request{ID: raw(`1000`), Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"topic1", "topic2"}, Group: "ingestion_1"}},
		{"readme unsubscribe", readmeRequests[3], Request{ID: raw(`1300`), Type: "topic", Action: "unsubscribe", Op: OpUnsubscribe}},
		{"readme publish", readmeRequests[4], Request{ID: raw(`1320`), Type: "notif", Action: "create", Op: OpPublish, Publish: Publish{Topic: "topic1", Value: []byte("{custom_message:'msg'}")}}},
		{"readme health", readmeRequests[5], Request{ID: raw(`1500`), Type: "health", Op: OpHealth}},

		{"create single name is wrapped", `{"t":"topic","a":"create","p":"topic1"}`, Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"topic1"}}},
		{"create drops repeats keeping order", `{"t":"topic","a":"create","p":["b","a","b","c","a"]}`, Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"b", "a", "c"}}},
		{"create reads escaped names", `{"t":"topic","a":"create","p":["top\u0069c"]}`, Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"topic"}}},
		{"create accepts every allowed character", `{"t":"topic","a":"create","p":["aZ09._-"]}`, Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"aZ09._-"}}},
		{"list ignores p", `{"t":"topic","a":"list","p":{"x":[1]}}`, Request{Type: "topic", Action: "list", Op: OpListTopics}},
		{"subscribe without group", `{"t":"topic","a":"subscribe","p":{"t":["a"]}}`, Request{Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"a"}}},
		{"subscribe empty group is the default", `{"t":"topic","a":"subscribe","p":{"t":["a"],"consumer_group":""}}`, Request{Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"a"}}},
		{"subscribe null group is the default", `{"t":"topic","a":"subscribe","p":{"t":["a"],"consumer_group":null}}`, Request{Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"a"}}},
		{"subscribe drops repeats", `{"t":"topic","a":"subscribe","p":{"t":["a","b","a"],"consumer_group":"g 1/ü"}}`, Request{Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"a", "b"}, Group: "g 1/ü"}},
		{"subscribe ignores other members of p", `{"t":"topic","a":"subscribe","p":{"x":{"t":5},"t":["a"],"m":1}}`, Request{Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"a"}}},
		{"unsubscribe ignores p", `{"id":"u","t":"topic","a":"unsubscribe","p":5}`, Request{ID: raw(`"u"`), Type: "topic", Action: "unsubscribe", Op: OpUnsubscribe}},
		{"publish without a", `{"t":"notif","p":{"t":"topic1","m":"hello"}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "topic1", Value: []byte("hello")}}},
		{"publish with keys in any order", `{"p":{"m":"hello","t":"topic1"},"a":"create","t":"notif","id":2}`, Request{ID: raw(`2`), Type: "notif", Action: "create", Op: OpPublish, Publish: Publish{Topic: "topic1", Value: []byte("hello")}}},
		{"publish string is its text", `{"t":"notif","p":{"t":"a","m":"a\nb\"\\\/\u00e9\ud83d\ude00"}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte("a\nb\"\\/é😀")}}},
		{"publish lone surrogate is U+FFFD", `{"t":"notif","p":{"t":"a","m":"\ud800x\udc00"}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte("\uFFFDx\uFFFD")}}},
		{"publish invalid UTF-8 is U+FFFD", "{\"t\":\"notif\",\"p\":{\"t\":\"a\",\"m\":\"x\xffy\"}}", Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte("x\uFFFDy")}}},
		{"publish empty string is empty not null", `{"t":"notif","p":{"t":"a","m":""}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte{}}}},
		{"publish null is a null value", `{"t":"notif","p":{"t":"a","m":null}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a"}}},
		{"publish object is its compact JSON", `{"t":"notif","p":{"t":"a","m":{"x": 1, "s" : " a\" b ", "l":[ 1 , true ]}}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte(`{"x":1,"s":" a\" b ","l":[1,true]}`)}}},
		{"publish number is its JSON", `{"t":"notif","p":{"t":"a","m":12345}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte(`12345`)}}},
		{"publish fraction keeps its spelling", `{"t":"notif","p":{"t":"a","m":-1.50e+3}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte(`-1.50e+3`)}}},
		{"publish bool is its JSON", `{"t":"notif","p":{"t":"a","m":false}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte(`false`)}}},
		{"publish array is its compact JSON", "{\"t\":\"notif\",\"p\":{\"t\":\"a\",\"m\":[\n1,\t\"\\\\\" ]}}", Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "a", Value: []byte(`[1,"\\"]`)}}},
		{"health ignores and echoes a", `{"id":1,"t":"health","a":"anything","p":7}`, Request{ID: raw(`1`), Type: "health", Action: "anything", Op: OpHealth}},
		{"health ignores a that is not a string", `{"t":"health","a":5}`, Request{Type: "health", Op: OpHealth}},

		{"unknown keys are ignored", `{"t":"health","x":{"t":"topic"},"s":1,"refid":[2]}`, Request{Type: "health", Op: OpHealth}},
		{"last of duplicate keys wins", `{"t":"topic","id":1,"t":"health","id":2}`, Request{ID: raw(`2`), Type: "health", Op: OpHealth}},
		{"last p wins with its members", `{"t":"notif","p":{"t":"a","m":"1"},"p":{"t":"b","m":"2"}}`, Request{Type: "notif", Op: OpPublish, Publish: Publish{Topic: "b", Value: []byte("2")}}},
		{"keys are case-sensitive", `{"T":"topic","t":"health","ID":1,"A":"x"}`, Request{Type: "health", Op: OpHealth}},
		{"escaped keys are read", `{"\u0074":"health","\u0069d":3}`, Request{ID: raw(`3`), Type: "health", Op: OpHealth}},
		{"whitespace anywhere", " \t\r\n{ \"t\" :\n\"health\" , \"id\" : 4 }\n", Request{ID: raw(`4`), Type: "health", Op: OpHealth}},
		{"escaped type is read", `{"t":"he\u0061lth"}`, Request{Type: "health", Op: OpHealth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.frame))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if want := withSeedDefaults(tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// withSeedDefaults fills in what Decode reads from a frame that uses none of the opt-in fields: the absent markers
// (-1) of a publish's partition and time and of a subscribe's mq_interval, and a create's TopicSpec per name. The
// seed tables above write only what the seed protocol itself carries.
func withSeedDefaults(req Request) Request {
	switch req.Op {
	case OpPublish:
		req.Publish.Partition, req.Publish.Time = -1, -1
	case OpSubscribe:
		req.Subscribe.MQInterval = -1
	case OpCreateTopics:
		for _, name := range req.Topics {
			req.Create = append(req.Create, TopicSpec{Name: name})
		}
	}
	return req
}

func TestDecodeID(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  json.RawMessage
	}{
		{"number", `{"id":1,"t":"health"}`, raw(`1`)},
		{"string", `{"id":"1","t":"health"}`, raw(`"1"`)},
		{"fraction", `{"id":1.5,"t":"health"}`, raw(`1.5`)},
		{"exponent keeps its spelling", `{"id":1E+2,"t":"health"}`, raw(`1E+2`)},
		{"object verbatim", `{"id": {"a": [1, "x"]} ,"t":"health"}`, raw(`{"a": [1, "x"]}`)},
		{"null is present", `{"id":null,"t":"health"}`, raw(`null`)},
		{"absent", `{"t":"health"}`, nil},
		{"invalid UTF-8 becomes an escape", "{\"id\":\"a\xffb\",\"t\":\"health\"}", raw(`"a\ufffdb"`)},
		{"read even when t is wrong", `{"id":[9],"t":"nope"}`, raw(`[9]`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := Decode([]byte(tt.frame))
			if string(got.ID) != string(tt.want) || (got.ID == nil) != (tt.want == nil) {
				t.Errorf("got %q, want %q", got.ID, tt.want)
			}
		})
	}
}

func TestDecodeDoesNotRetainFrame(t *testing.T) {
	frame := []byte(`{"id":"abc","t":"notif","p":{"t":"topic1","m":"hello"}}`)
	req, err := Decode(frame)
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	for i := range frame {
		frame[i] = 'x'
	}
	if string(req.ID) != `"abc"` || req.Publish.Topic != "topic1" || string(req.Publish.Value) != "hello" {
		t.Errorf("got %+v after overwriting the frame, want the values decoded before", req)
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("a", 250)
	tests := []struct {
		name    string
		frame   string
		want    Request // what could be read for the error reply
		code    string
		message string
	}{
		{"empty frame", ``, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"p without a value", `{"p":`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"p.m without a value", `{"p":{"m":`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"truncated object", `{"id":1,"t":"health"`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"trailing data", `{"id":1,"t":"health"} x`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"two objects", `{"t":"health"}{"t":"health"}`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"single quotes", `{'t':'health'}`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"comment", readmeOthers[0], Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"bad number deep inside", `{"id":1,"t":"notif","p":{"t":"a","m":[01]}}`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"control character in string", "{\"t\":\"health\",\"x\":\"a\tb\"}", Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"bad escape", `{"t":"health","x":"\x"}`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"too deep", `{"t":"health","x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, Request{}, CodeInvalidJSON, "frame is not valid JSON"},
		{"array", `[{"t":"health"}]`, Request{}, CodeInvalidFrame, "frame must be a JSON object"},
		{"string", `"health"`, Request{}, CodeInvalidFrame, "frame must be a JSON object"},
		{"number", ` 1 `, Request{}, CodeInvalidFrame, "frame must be a JSON object"},
		{"null", `null`, Request{}, CodeInvalidFrame, "frame must be a JSON object"},

		{"t missing", `{"id":1,"a":"list"}`, Request{ID: raw(`1`), Action: "list"}, CodeUnknownType, "t is missing"},
		{"t not a string", `{"id":1,"t":5}`, Request{ID: raw(`1`)}, CodeUnknownType, "t must be a string"},
		{"t null", `{"t":null}`, Request{}, CodeUnknownType, "t must be a string"},
		{"t unknown", `{"id":"x","t":"Topic","a":"list"}`, Request{ID: raw(`"x"`), Type: "Topic", Action: "list"}, CodeUnknownType, `unknown type "Topic" in t`},
		{"t empty", `{"t":""}`, Request{}, CodeUnknownType, `unknown type "" in t`},

		{"topic a missing", `{"id":1,"t":"topic"}`, Request{ID: raw(`1`), Type: "topic"}, CodeUnknownAction, "a is missing"},
		{"topic a not a string", `{"t":"topic","a":["list"]}`, Request{Type: "topic"}, CodeUnknownAction, "a must be a string"},
		{"topic a unknown", `{"t":"topic","a":"drop"}`, Request{Type: "topic", Action: "drop"}, CodeUnknownAction, `unknown action "drop" for t "topic"`},
		{"topic a empty", `{"t":"topic","a":""}`, Request{Type: "topic"}, CodeUnknownAction, `unknown action "" for t "topic"`},
		{"notif a unknown", `{"id":2,"t":"notif","a":"delete","p":{"t":"a","m":"x"}}`, Request{ID: raw(`2`), Type: "notif", Action: "delete"}, CodeUnknownAction, `unknown action "delete" for t "notif"`},
		{"notif a not a string", `{"t":"notif","a":null,"p":{"t":"a","m":"x"}}`, Request{Type: "notif"}, CodeUnknownAction, "a must be a string"},

		{"create p missing", `{"t":"topic","a":"create"}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p must list at least one topic to create"},
		{"create p null", `{"t":"topic","a":"create","p":null}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p must list at least one topic to create"},
		{"create p empty", `{"t":"topic","a":"create","p":[]}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p must list at least one topic to create"},
		{"create p object", `{"t":"topic","a":"create","p":{"t":["a"]}}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p must be an array of topic names"},
		{"create p number", `{"t":"topic","a":"create","p":1}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p must be an array of topic names"},
		{"create element not a string", `{"t":"topic","a":"create","p":["a","b",3]}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p[2] must be a string"},
		{"create element null", `{"t":"topic","a":"create","p":[null]}`, Request{Type: "topic", Action: "create"}, CodeInvalidPayload, "p[0] must be a string"},
		{"create bad character", `{"t":"topic","a":"create","p":["ok","a b"]}`, Request{Type: "topic", Action: "create"}, CodeInvalidTopic, `p[1]: topic name "a b" contains ' ': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"create empty name", `{"t":"topic","a":"create","p":[""]}`, Request{Type: "topic", Action: "create"}, CodeInvalidTopic, "p[0]: topic name is empty"},
		{"create dot", `{"t":"topic","a":"create","p":".."}`, Request{Type: "topic", Action: "create"}, CodeInvalidTopic, `p: topic name ".." is not allowed: Kafka reserves "." and ".."`},
		{"create single name too long", `{"t":"topic","a":"create","p":"` + long + `"}`, Request{Type: "topic", Action: "create"}, CodeInvalidTopic, "p: topic name is longer than 249 characters"},

		{"subscribe p missing", `{"id":1,"t":"topic","a":"subscribe"}`, Request{ID: raw(`1`), Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p is missing"},
		{"subscribe p array", `{"t":"topic","a":"subscribe","p":["a"]}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p must be an object"},
		{"subscribe p.t missing", `{"t":"topic","a":"subscribe","p":{"consumer_group":"g"}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p.t is missing"},
		{"subscribe p.t a string", `{"t":"topic","a":"subscribe","p":{"t":"topic1"}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p.t must be an array of topic names"},
		{"subscribe p.t null", `{"t":"topic","a":"subscribe","p":{"t":null}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p.t must be an array of topic names"},
		{"subscribe p.t empty", `{"t":"topic","a":"subscribe","p":{"t":[]}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p.t must list at least one topic"},
		{"subscribe element not a string", `{"t":"topic","a":"subscribe","p":{"t":["a",{}]}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p.t[1] must be a string"},
		{"subscribe bad name", `{"t":"topic","a":"subscribe","p":{"t":["."]}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidTopic, `p.t[0]: topic name "." is not allowed: Kafka reserves "." and ".."`},
		{"subscribe group not a string", `{"t":"topic","a":"subscribe","p":{"t":["a"],"consumer_group":1}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidPayload, "p.consumer_group must be a string"},
		{"subscribe group too long", `{"t":"topic","a":"subscribe","p":{"t":["a"],"consumer_group":"` + strings.Repeat("g", 256) + `"}}`, Request{Type: "topic", Action: "subscribe"}, CodeInvalidTopic, "p.consumer_group: consumer group name is longer than 255 characters"},

		{"publish p missing", `{"id":1320,"t":"notif","a":"create"}`, Request{ID: raw(`1320`), Type: "notif", Action: "create"}, CodeInvalidPayload, "p is missing"},
		{"publish p a string", `{"t":"notif","p":"hello"}`, Request{Type: "notif"}, CodeInvalidPayload, "p must be an object"},
		{"publish p null", `{"t":"notif","p":null}`, Request{Type: "notif"}, CodeInvalidPayload, "p must be an object"},
		{"publish p.t missing", `{"t":"notif","p":{"m":"hello"}}`, Request{Type: "notif"}, CodeInvalidPayload, "p.t is missing"},
		{"publish p.t not a string", `{"t":"notif","p":{"t":["a"],"m":"hello"}}`, Request{Type: "notif"}, CodeInvalidPayload, "p.t must be a string"},
		{"publish bad topic", `{"t":"notif","p":{"t":"a/b","m":"hello"}}`, Request{Type: "notif"}, CodeInvalidTopic, `p.t: topic name "a/b" contains '/': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"publish p.m missing", `{"t":"notif","p":{"t":"a"}}`, Request{Type: "notif"}, CodeInvalidPayload, "p.m is missing"},
		{"publish members of an earlier p do not count", `{"t":"notif","p":{"t":"a","m":"x"},"p":{"t":"b"}}`, Request{Type: "notif"}, CodeInvalidPayload, "p.m is missing"},
		{"publish members of a nested object do not count", `{"t":"notif","p":{"x":{"t":"a","m":"x"}}}`, Request{Type: "notif"}, CodeInvalidPayload, "p.t is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.frame))
			if err == nil {
				t.Fatalf("got %+v and no error, want %s", got, tt.code)
			}
			if err.Code != tt.code || err.Message != tt.message {
				t.Errorf("got %s %q, want %s %q", err.Code, err.Message, tt.code, tt.message)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestErrorError(t *testing.T) {
	err := &Error{Code: CodeInvalidPayload, Message: "p is missing"}
	if got, want := err.Error(), "invalid_payload: p is missing"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// One connection's Decoder remembers the last topic published to; every frame still decodes as it would alone,
// the topic's name checked whenever its bytes differ from the remembered one.
func TestDecoderTopics(t *testing.T) {
	publish := func(topic string) string { return `{"t":"notif","p":{"t":"` + topic + `","m":"x"}}` }
	var d Decoder
	for i, tt := range []struct {
		frame     string
		wantTopic string
		wantCode  string
	}{
		{publish("orders"), "orders", ""},
		{publish("orders"), "orders", ""},
		{publish(`\u006frders`), "orders", ""}, // escaped: other bytes, the same name
		{publish(""), "", CodeInvalidTopic},
		{publish("orders"), "orders", ""},
		{publish("bad topic"), "", CodeInvalidTopic},
		{publish("bad topic"), "", CodeInvalidTopic}, // an invalid name is never remembered
		{publish("payments"), "payments", ""},
		{`{"t":"notif","p":{"t":"orders"}}`, "", CodeInvalidPayload},
		{`{"t":"notif","p":{"t":"orders","m":"x"}}`, "orders", ""},
	} {
		req, err := d.Decode([]byte(tt.frame))
		alone, aloneErr := Decode([]byte(tt.frame))
		if !reflect.DeepEqual(req, alone) || !reflect.DeepEqual(err, aloneErr) {
			t.Fatalf("frame %d %s: got %+v, %v; decoded alone: %+v, %v", i, tt.frame, req, err, alone, aloneErr)
		}
		if gotCode := codeOf(err); gotCode != tt.wantCode || req.Publish.Topic != tt.wantTopic {
			t.Fatalf("frame %d %s: got topic %q, code %q; want %q, %q", i, tt.frame, req.Publish.Topic, gotCode, tt.wantTopic, tt.wantCode)
		}
	}
}

func codeOf(err *Error) string {
	if err == nil {
		return ""
	}
	return err.Code
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func BenchmarkDecodePublish(b *testing.B) {
	for _, bc := range []struct {
		name  string
		value string // 100 bytes, as they arrive in p.m
	}{
		{"json", strings.ReplaceAll(string(benchValue), `"`, `\"`)}, // a JSON document sent as a string: escapes every few bytes
		{"text", strings.Repeat("lorem ipsum ", 9)[:100]},
	} {
		b.Run(bc.name, func(b *testing.B) {
			frame := []byte(`{"id":1320,"t":"notif","a":"create","p":{"t":"topic1","m":"` + bc.value + `"}}`)
			req, err := Decode(frame)
			if err != nil || len(req.Publish.Value) != 100 {
				b.Fatalf("got %d bytes and error %v, want 100 bytes", len(req.Publish.Value), err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				Decode(frame)
			}
		})
	}
}

// A request listing more than MaxTopics names is refused while decoding, before every name is built.
func TestDecodeTopicCountBound(t *testing.T) {
	names := make([]string, MaxTopics+1)
	for i := range names {
		names[i] = fmt.Sprintf(`"t%d"`, i)
	}
	list := "[" + strings.Join(names, ",") + "]"
	for _, frame := range []string{
		`{"id":1,"t":"topic","a":"create","p":` + list + `}`,
		`{"id":1,"t":"topic","a":"subscribe","p":{"t":` + list + `}}`,
		`{"id":1,"t":"topic","a":"unsubscribe","p":{"t":` + list + `}}`,
		`{"id":1,"t":"topic","a":"describe","p":` + list + `}`,
	} {
		_, err := Decode([]byte(frame))
		if err == nil || err.Code != CodeInvalidPayload || !strings.Contains(err.Message, "more than 1000 topics") {
			t.Errorf("%.40s…: got %v, want invalid_payload naming the bound", frame, err)
		}
	}
	ok := `{"id":1,"t":"topic","a":"create","p":[` + strings.Join(names[:MaxTopics], ",") + `]}`
	if _, err := Decode([]byte(ok)); err != nil {
		t.Errorf("exactly %d names: got %v, want none", MaxTopics, err)
	}
}
