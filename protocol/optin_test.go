package protocol

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// pub is a publish request to topic "a" with the absent markers set, for the tables below.
func pub(p Publish) Request {
	if p.Topic == "" {
		p.Topic = "a"
	}
	return Request{Type: "notif", Op: OpPublish, Publish: p}
}

func TestDecodeOptInAccepts(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Request
	}{
		// Publish.
		{"publish key header partition time", `{"t":"notif","p":{"t":"a","m":"v","k":"k1","h":{"x":"1","y":"é"},"part":3,"ts":1700000000000}}`,
			pub(Publish{Value: []byte("v"), Key: []byte("k1"), Headers: []Header{{"x", []byte("1")}, {"y", []byte("é")}}, Partition: 3, Time: 1700000000000})},
		{"publish null key and header object are absent", `{"t":"notif","p":{"t":"a","m":"v","k":null,"h":null,"part":null,"ts":null,"enc":null,"ack":null}}`,
			pub(Publish{Value: []byte("v"), Partition: -1, Time: -1})},
		{"publish empty key is not null", `{"t":"notif","p":{"t":"a","m":"v","k":""}}`, pub(Publish{Value: []byte("v"), Key: []byte{}, Partition: -1, Time: -1})},
		{"publish tombstone", `{"t":"notif","p":{"t":"a","m":null,"k":"gone"}}`, pub(Publish{Key: []byte("gone"), Partition: -1, Time: -1})},
		{"publish empty headers are none", `{"t":"notif","p":{"t":"a","m":"v","h":{}}}`, pub(Publish{Value: []byte("v"), Partition: -1, Time: -1})},
		{"publish repeated header keys are kept in order", `{"t":"notif","p":{"t":"a","m":"v","h":{"x":"1","x":"2","\u0079":"3"}}}`,
			pub(Publish{Value: []byte("v"), Headers: []Header{{"x", []byte("1")}, {"x", []byte("2")}, {"y", []byte("3")}}, Partition: -1, Time: -1})},
		{"publish key is unescaped", `{"t":"notif","p":{"t":"a","m":"v","k":"a\nb\u00e9"}}`, pub(Publish{Value: []byte("v"), Key: []byte("a\nbé"), Partition: -1, Time: -1})},
		{"publish partition and time limits", `{"t":"notif","p":{"t":"a","m":"v","part":2147483647,"ts":9223372036854775807}}`,
			pub(Publish{Value: []byte("v"), Partition: 2147483647, Time: 9223372036854775807})},
		{"publish zero and minus zero", `{"t":"notif","p":{"t":"a","m":"v","part":0,"ts":-0}}`, pub(Publish{Value: []byte("v"), Partition: 0, Time: 0})},
		{"publish base64", `{"t":"notif","p":{"t":"a","m":"AP8=","k":"a2V5","h":{"x":"/w=="},"enc":"base64"}}`,
			pub(Publish{Value: []byte{0, 0xff}, Key: []byte("key"), Headers: []Header{{"x", []byte{0xff}}}, Partition: -1, Time: -1})},
		{"publish base64 unpadded", `{"t":"notif","p":{"t":"a","m":"AP8","k":"a2V5MQ","enc":"base64"}}`,
			pub(Publish{Value: []byte{0, 0xff}, Key: []byte("key1"), Partition: -1, Time: -1})},
		{"publish base64 escaped", `{"t":"notif","p":{"t":"a","m":"a\/8=","enc":"b\u0061se64"}}`, pub(Publish{Value: []byte{0x6b, 0xff}, Partition: -1, Time: -1})},
		{"publish base64 empty is empty", `{"t":"notif","p":{"t":"a","m":"","enc":"base64"}}`, pub(Publish{Value: []byte{}, Partition: -1, Time: -1})},
		{"publish base64 null", `{"t":"notif","p":{"t":"a","m":null,"enc":"base64"}}`, pub(Publish{Partition: -1, Time: -1})},
		{"publish ack at the top", `{"t":"notif","ack":true,"p":{"t":"a","m":"v"}}`, withAck(pub(Publish{Value: []byte("v"), Partition: -1, Time: -1}))},
		{"publish ack in p", `{"t":"notif","p":{"t":"a","m":"v","ack":true}}`, withAck(pub(Publish{Value: []byte("v"), Partition: -1, Time: -1}))},
		{"publish either ack", `{"t":"notif","ack":false,"p":{"t":"a","m":"v","ack":true}}`, withAck(pub(Publish{Value: []byte("v"), Partition: -1, Time: -1}))},
		{"publish ack false", `{"t":"notif","ack":false,"p":{"t":"a","m":"v","ack":false}}`, pub(Publish{Value: []byte("v"), Partition: -1, Time: -1})},
		{"publish members of an earlier p are dropped", `{"t":"notif","p":{"t":"a","m":"v","k":"x","part":1},"p":{"t":"a","m":"v"}}`, pub(Publish{Value: []byte("v"), Partition: -1, Time: -1})},

		// Create.
		{"create objects and strings", `{"t":"topic","a":"create","p":["a",{"name":"b","partitions":3,"replication":2,"configs":{"retention.ms":"1000","x":"1","x":"2"},"other":1},{"name":"c","partitions":null}]}`,
			Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"a", "b", "c"}, Detailed: true,
				Create: []TopicSpec{{Name: "a"}, {Name: "b", Partitions: 3, Replication: 2, Configs: map[string]string{"retention.ms": "1000", "x": "2"}}, {Name: "c"}}}},
		{"create keeps the first of a name", `{"t":"topic","a":"create","p":[{"name":"a","partitions":1},"a",{"name":"a","partitions":2}]}`,
			Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"a"}, Detailed: true, Create: []TopicSpec{{Name: "a", Partitions: 1}}}},
		{"create empty configs are none", `{"t":"topic","a":"create","p":[{"name":"a","configs":{}}]}`,
			Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"a"}, Detailed: true, Create: []TopicSpec{{Name: "a"}}}},
		{"create replication limit", `{"t":"topic","a":"create","p":[{"name":"a","replication":32767,"partitions":2147483647}]}`,
			Request{Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"a"}, Detailed: true, Create: []TopicSpec{{Name: "a", Partitions: 2147483647, Replication: 32767}}}},

		// Delete and describe.
		{"delete names", `{"id":1,"t":"topic","a":"delete","p":["a","b","a"]}`, Request{ID: raw(`1`), Type: "topic", Action: "delete", Op: OpDeleteTopics, Topics: []string{"a", "b"}}},
		{"delete one name", `{"t":"topic","a":"delete","p":"a"}`, Request{Type: "topic", Action: "delete", Op: OpDeleteTopics, Topics: []string{"a"}}},
		{"describe names", `{"t":"topic","a":"describe","p":["a","b"]}`, Request{Type: "topic", Action: "describe", Op: OpDescribeTopics, Topics: []string{"a", "b"}}},
		{"describe one name", `{"t":"topic","a":"describe","p":"a"}`, Request{Type: "topic", Action: "describe", Op: OpDescribeTopics, Topics: []string{"a"}}},
		{"describe with group", `{"t":"topic","a":"describe","p":{"t":["a"],"consumer_group":"g"}}`, Request{Type: "topic", Action: "describe", Op: OpDescribeTopics, Topics: []string{"a"}, Group: "g"}},
		{"describe without group", `{"t":"topic","a":"describe","p":{"t":["a"],"consumer_group":null}}`, Request{Type: "topic", Action: "describe", Op: OpDescribeTopics, Topics: []string{"a"}}},

		// Unsubscribe.
		{"unsubscribe some topics", `{"t":"topic","a":"unsubscribe","p":{"t":["a","b","a"]}}`, Request{Type: "topic", Action: "unsubscribe", Op: OpUnsubscribe, Topics: []string{"a", "b"}}},
		{"unsubscribe p without t is all", `{"t":"topic","a":"unsubscribe","p":{}}`, Request{Type: "topic", Action: "unsubscribe", Op: OpUnsubscribe}},
		{"unsubscribe null t is all", `{"t":"topic","a":"unsubscribe","p":{"t":null}}`, Request{Type: "topic", Action: "unsubscribe", Op: OpUnsubscribe}},

		// Ack.
		{"ack by id", `{"id":7,"t":"notif","a":"ack","p":{"id":18446744073709551615}}`, Request{ID: raw(`7`), Type: "notif", Action: "ack", Op: OpAck, AckOf: AckTarget{ByID: true, ID: 18446744073709551615}}},
		{"ack by offset", `{"t":"notif","a":"ack","p":{"t":"a","part":2,"offset":42}}`, Request{Type: "notif", Action: "ack", Op: OpAck, AckOf: AckTarget{Topic: "a", Partition: 2, Offset: 42}}},
		{"ack null members are absent", `{"t":"notif","a":"ack","p":{"id":3,"t":null,"part":null,"offset":null}}`, Request{Type: "notif", Action: "ack", Op: OpAck, AckOf: AckTarget{ByID: true, ID: 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.frame))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func withAck(req Request) Request {
	req.Ack = true
	return req
}

func TestDecodeSubscribeOptions(t *testing.T) {
	tests := []struct {
		name  string
		p     string // members of p after "t":["a","b"]
		group string
		want  Subscribe
	}{
		{"none", ``, "", Subscribe{MQInterval: -1}},
		{"nulls are absent", `,"mode":null,"meta":null,"from":null,"seek":null,"commit":null,"mq_limit":null,"mq_interval":null`, "", Subscribe{MQInterval: -1}},
		{"group mode", `,"mode":"group","commit":"auto","consumer_group":"g"`, "g", Subscribe{MQInterval: -1}},
		{"broadcast", `,"mode":"broadcast","from":"earliest","meta":true`, "", Subscribe{Broadcast: true, Meta: true, From: From{Kind: FromEarliest}, MQInterval: -1}},
		{"broadcast with the default group", `,"mode":"broadcast","consumer_group":""`, "", Subscribe{Broadcast: true, MQInterval: -1}},
		{"latest", `,"from":"latest","meta":false`, "", Subscribe{From: From{Kind: FromLatest}, MQInterval: -1}},
		{"from a time", `,"from":1700000000000`, "", Subscribe{From: From{Kind: FromTime, Time: 1700000000000}, MQInterval: -1}},
		{"seek", `,"seek":{"a":{"0":42,"1":17,"2147483647":0},"b":{}},"commit":"client"`, "",
			Subscribe{Seek: map[string]map[int32]int64{"a": {0: 42, 1: 17, 2147483647: 0}}, ClientCommit: true, MQInterval: -1}},
		{"seek last of a repeated topic wins", `,"seek":{"a":{"0":1},"a":{"1":2}}`, "", Subscribe{Seek: map[string]map[int32]int64{"a": {1: 2}}, MQInterval: -1}},
		{"seek empty is none", `,"seek":{}`, "", Subscribe{MQInterval: -1}},
		{"mq", `,"mq_limit":1,"mq_interval":0`, "", Subscribe{MQLimit: 1, MQInterval: 0}},
		{"mq large", `,"mq_limit":5000,"mq_interval":200`, "", Subscribe{MQLimit: 5000, MQInterval: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := `{"t":"topic","a":"subscribe","p":{"t":["a","b"]` + tt.p + `}}`
			got, err := Decode([]byte(frame))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			want := Request{Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"a", "b"}, Group: tt.group, Subscribe: tt.want}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecodeOptInRejects(t *testing.T) {
	const notif = `{"id":1,"t":"notif","p":{"t":"a","m":"v",`
	const sub = `{"id":1,"t":"topic","a":"subscribe","p":{"t":["a"],`
	const create = `{"id":1,"t":"topic","a":"create","p":[`
	const ack = `{"id":1,"t":"notif","a":"ack","p":`
	tests := []struct {
		name    string
		frame   string
		code    string
		message string
	}{
		{"publish enc unknown", notif + `"enc":"hex"}}`, CodeInvalidPayload, `p.enc must be "base64"`},
		{"publish enc not a string", notif + `"enc":1}}`, CodeInvalidPayload, `p.enc must be "base64"`},
		{"publish base64 bad m", notif + `"enc":"base64","m":"a*b="}}`, CodeInvalidPayload, "p.m is not valid base64: illegal base64 data at input byte 1"},
		{"publish base64 m not a string", notif + `"enc":"base64","m":{"x":1}}}`, CodeInvalidPayload, `p.m must be a string or null when p.enc is "base64"`},
		{"publish base64 bad padding", notif + `"enc":"base64","m":"QQ="}}`, CodeInvalidPayload, "p.m is not valid base64: illegal base64 data at input byte 3"},
		{"publish base64 bad k", notif + `"enc":"base64","m":"QQ==","k":"!"}}`, CodeInvalidPayload, "p.k is not valid base64: illegal base64 data at input byte 0"},
		{"publish base64 bad header", notif + `"enc":"base64","m":"QQ==","h":{"x":"QQ=="},"h":{"y":"QQ","z":"Q"}}}`, CodeInvalidPayload, "p.h.z is not valid base64: illegal base64 data at input byte 0"},
		{"publish k a number", notif + `"k":1}}`, CodeInvalidPayload, "p.k must be a string or null"},
		{"publish k an object", notif + `"k":{}}}`, CodeInvalidPayload, "p.k must be a string or null"},
		{"publish h an array", notif + `"h":["x"]}}`, CodeInvalidPayload, "p.h must be an object of strings"},
		{"publish h a string", notif + `"h":"x"}}`, CodeInvalidPayload, "p.h must be an object of strings"},
		{"publish header value a number", notif + `"h":{"ok":"1","bad":2}}}`, CodeInvalidPayload, "p.h.bad must be a string"},
		{"publish header value null", notif + `"h":{"bad":null}}}`, CodeInvalidPayload, "p.h.bad must be a string"},
		{"publish part negative", notif + `"part":-1}}`, CodeInvalidPayload, "p.part must be a partition number ≥ 0"},
		{"publish part too large", notif + `"part":2147483648}}`, CodeInvalidPayload, "p.part must be a partition number ≥ 0"},
		{"publish part fraction", notif + `"part":1.0}}`, CodeInvalidPayload, "p.part must be a partition number ≥ 0"},
		{"publish part exponent", notif + `"part":1e2}}`, CodeInvalidPayload, "p.part must be a partition number ≥ 0"},
		{"publish part a string", notif + `"part":"1"}}`, CodeInvalidPayload, "p.part must be a partition number ≥ 0"},
		{"publish ts negative", notif + `"ts":-5}}`, CodeInvalidPayload, "p.ts must be a timestamp in ms ≥ 0"},
		{"publish ts too large", notif + `"ts":9223372036854775808}}`, CodeInvalidPayload, "p.ts must be a timestamp in ms ≥ 0"},
		{"publish ts a string", notif + `"ts":"now"}}`, CodeInvalidPayload, "p.ts must be a timestamp in ms ≥ 0"},
		{"publish p.ack not a boolean", notif + `"ack":1}}`, CodeInvalidPayload, "p.ack must be a boolean"},
		{"publish ack not a boolean", `{"id":1,"t":"notif","ack":"yes","p":{"t":"a","m":"v"}}`, CodeInvalidPayload, "ack must be a boolean"},

		{"create element a number", create + `{"name":"a"},5]}`, CodeInvalidPayload, "p[1] must be a string"},
		{"create name missing", create + `"a",{"partitions":1}]}`, CodeInvalidPayload, "p[1].name is missing"},
		{"create name null", create + `{"name":null}]}`, CodeInvalidPayload, "p[0].name is missing"},
		{"create name not a string", create + `{"name":["a"]}]}`, CodeInvalidPayload, "p[0].name must be a string"},
		{"create name invalid", create + `{"name":"a b"}]}`, CodeInvalidTopic, `p[0].name: topic name "a b" contains ' ': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"create partitions zero", create + `{"name":"a","partitions":0}]}`, CodeInvalidPayload, "p[0].partitions must be an integer > 0"},
		{"create partitions negative", create + `{"name":"a","partitions":-3}]}`, CodeInvalidPayload, "p[0].partitions must be an integer > 0"},
		{"create partitions a string", create + `{"name":"a","partitions":"3"}]}`, CodeInvalidPayload, "p[0].partitions must be an integer > 0"},
		{"create partitions too large", create + `{"name":"a","partitions":2147483648}]}`, CodeInvalidPayload, "p[0].partitions must be an integer > 0"},
		{"create replication zero", create + `{"name":"a","replication":0}]}`, CodeInvalidPayload, "p[0].replication must be an integer from 1 to 32767"},
		{"create replication too large", create + `{"name":"a","replication":32768}]}`, CodeInvalidPayload, "p[0].replication must be an integer from 1 to 32767"},
		{"create configs an array", create + `{"name":"a","configs":[]}]}`, CodeInvalidPayload, "p[0].configs must be an object of strings"},
		{"create config value a number", create + `{"name":"a","configs":{"retention.ms":1000}}]}`, CodeInvalidPayload, "p[0].configs.retention.ms must be a string"},
		{"create repeated name still validated", create + `{"name":"a"},{"name":"a","partitions":0}]}`, CodeInvalidPayload, "p[1].partitions must be an integer > 0"},

		{"delete p missing", `{"id":1,"t":"topic","a":"delete"}`, CodeInvalidPayload, "p must list at least one topic to delete"},
		{"delete p empty", `{"id":1,"t":"topic","a":"delete","p":[]}`, CodeInvalidPayload, "p must list at least one topic to delete"},
		{"delete p an object", `{"id":1,"t":"topic","a":"delete","p":{"t":["a"]}}`, CodeInvalidPayload, "p must be an array of topic names"},
		{"delete element an object", `{"id":1,"t":"topic","a":"delete","p":[{"name":"a"}]}`, CodeInvalidPayload, "p[0] must be a string"},
		{"delete bad name", `{"id":1,"t":"topic","a":"delete","p":"a/b"}`, CodeInvalidTopic, `p: topic name "a/b" contains '/': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},

		{"describe p missing", `{"id":1,"t":"topic","a":"describe"}`, CodeInvalidPayload, "p must list at least one topic to describe"},
		{"describe p empty", `{"id":1,"t":"topic","a":"describe","p":[]}`, CodeInvalidPayload, "p must list at least one topic to describe"},
		{"describe p a number", `{"id":1,"t":"topic","a":"describe","p":1}`, CodeInvalidPayload, "p must be an array of topic names"},
		{"describe p.t missing", `{"id":1,"t":"topic","a":"describe","p":{"consumer_group":"g"}}`, CodeInvalidPayload, "p.t is missing"},
		{"describe p.t empty", `{"id":1,"t":"topic","a":"describe","p":{"t":[]}}`, CodeInvalidPayload, "p.t must list at least one topic"},
		{"describe p.t a string", `{"id":1,"t":"topic","a":"describe","p":{"t":"a"}}`, CodeInvalidPayload, "p.t must be an array of topic names"},
		{"describe group not a string", `{"id":1,"t":"topic","a":"describe","p":{"t":["a"],"consumer_group":5}}`, CodeInvalidPayload, "p.consumer_group must be a string"},

		{"unsubscribe p.t empty", `{"id":1,"t":"topic","a":"unsubscribe","p":{"t":[]}}`, CodeInvalidPayload, "p.t must list at least one topic"},
		{"unsubscribe p.t a string", `{"id":1,"t":"topic","a":"unsubscribe","p":{"t":"a"}}`, CodeInvalidPayload, "p.t must be an array of topic names"},
		{"unsubscribe bad name", `{"id":1,"t":"topic","a":"unsubscribe","p":{"t":["a","."]}}`, CodeInvalidTopic, `p.t[1]: topic name "." is not allowed: Kafka reserves "." and ".."`},

		{"subscribe mode unknown", sub + `"mode":"fanout"}}`, CodeInvalidPayload, `p.mode must be "group" or "broadcast"`},
		{"subscribe meta not a boolean", sub + `"meta":"true"}}`, CodeInvalidPayload, "p.meta must be a boolean"},
		{"subscribe from unknown", sub + `"from":"start"}}`, CodeInvalidPayload, `p.from must be "earliest", "latest" or a timestamp in ms`},
		{"subscribe from negative", sub + `"from":-1}}`, CodeInvalidPayload, `p.from must be "earliest", "latest" or a timestamp in ms`},
		{"subscribe from fraction", sub + `"from":1.5}}`, CodeInvalidPayload, `p.from must be "earliest", "latest" or a timestamp in ms`},
		{"subscribe seek an array", sub + `"seek":[]}}`, CodeInvalidPayload, "p.seek must be an object of topics"},
		{"subscribe seek other topic", sub + `"seek":{"b":{"0":1}}}}`, CodeInvalidPayload, "p.seek.b names a topic that is not in p.t"},
		{"subscribe seek topic not an object", sub + `"seek":{"a":5}}}`, CodeInvalidPayload, "p.seek.a must be an object of partitions to offsets"},
		{"subscribe seek partition not a number", sub + `"seek":{"a":{"x":1}}}}`, CodeInvalidPayload, `p.seek.a: partition "x" must be a decimal integer from 0 to 2147483647`},
		{"subscribe seek partition negative", sub + `"seek":{"a":{"-1":1}}}}`, CodeInvalidPayload, `p.seek.a: partition "-1" must be a decimal integer from 0 to 2147483647`},
		{"subscribe seek partition leading zero", sub + `"seek":{"a":{"01":1}}}}`, CodeInvalidPayload, `p.seek.a: partition "01" must be a decimal integer from 0 to 2147483647`},
		{"subscribe seek partition too large", sub + `"seek":{"a":{"2147483648":1}}}}`, CodeInvalidPayload, `p.seek.a: partition "2147483648" must be a decimal integer from 0 to 2147483647`},
		{"subscribe seek partition empty", sub + `"seek":{"a":{"":1}}}}`, CodeInvalidPayload, `p.seek.a: partition "" must be a decimal integer from 0 to 2147483647`},
		{"subscribe seek offset negative", sub + `"seek":{"a":{"0":-1}}}}`, CodeInvalidPayload, "p.seek.a.0 must be an offset ≥ 0"},
		{"subscribe seek offset a string", sub + `"seek":{"a":{"3":"42"}}}}`, CodeInvalidPayload, "p.seek.a.3 must be an offset ≥ 0"},
		{"subscribe seek offset null", sub + `"seek":{"a":{"3":null}}}}`, CodeInvalidPayload, "p.seek.a.3 must be an offset ≥ 0"},
		{"subscribe commit unknown", sub + `"commit":"manual"}}`, CodeInvalidPayload, `p.commit must be "auto" or "client"`},
		{"subscribe mq_limit zero", sub + `"mq_limit":0}}`, CodeInvalidPayload, "p.mq_limit must be an integer ≥ 1"},
		{"subscribe mq_limit a string", sub + `"mq_limit":"5"}}`, CodeInvalidPayload, "p.mq_limit must be an integer ≥ 1"},
		{"subscribe mq_interval negative", sub + `"mq_interval":-1}}`, CodeInvalidPayload, "p.mq_interval must be an integer number of ms ≥ 0"},
		{"subscribe mq_interval beyond a Duration", sub + `"mq_interval":9223372036855}}`, CodeInvalidPayload, "p.mq_interval must be an integer number of ms ≥ 0"},
		{"subscribe broadcast with a group", sub + `"mode":"broadcast","consumer_group":"g"}}`, CodeInvalidPayload, `p.consumer_group cannot be used with p.mode "broadcast": a broadcast subscription joins no group`},
		{"subscribe broadcast with client commit", sub + `"mode":"broadcast","commit":"client"}}`, CodeInvalidPayload, `p.commit "client" cannot be used with p.mode "broadcast": a broadcast subscription has no group to commit offsets to`},
		{"subscribe t checked before options", `{"id":1,"t":"topic","a":"subscribe","p":{"mode":"x"}}`, CodeInvalidPayload, "p.t is missing"},

		{"ack p missing", `{"id":1,"t":"notif","a":"ack"}`, CodeInvalidPayload, "p is missing"},
		{"ack p an array", ack + `[1]}`, CodeInvalidPayload, "p must be an object"},
		{"ack neither form", ack + `{}}`, CodeInvalidPayload, `p must give either "id" or "t", "part" and "offset"`},
		{"ack both forms", ack + `{"id":1,"offset":2}}`, CodeInvalidPayload, `p must give either "id" or "t", "part" and "offset", not both`},
		{"ack id negative", ack + `{"id":-1}}`, CodeInvalidPayload, "p.id must be a notification id (an integer ≥ 0)"},
		{"ack id too large", ack + `{"id":18446744073709551616}}`, CodeInvalidPayload, "p.id must be a notification id (an integer ≥ 0)"},
		{"ack id a string", ack + `{"id":"1"}}`, CodeInvalidPayload, "p.id must be a notification id (an integer ≥ 0)"},
		{"ack t missing", ack + `{"part":1,"offset":2}}`, CodeInvalidPayload, "p.t is missing"},
		{"ack t not a string", ack + `{"t":["a"],"part":1,"offset":2}}`, CodeInvalidPayload, "p.t must be a string"},
		{"ack t invalid", ack + `{"t":"","part":1,"offset":2}}`, CodeInvalidTopic, "p.t: topic name is empty"},
		{"ack part missing", ack + `{"t":"a","offset":2}}`, CodeInvalidPayload, "p.part is missing"},
		{"ack part negative", ack + `{"t":"a","part":-1,"offset":2}}`, CodeInvalidPayload, "p.part must be a partition number ≥ 0"},
		{"ack offset missing", ack + `{"t":"a","part":1}}`, CodeInvalidPayload, "p.offset is missing"},
		{"ack offset a fraction", ack + `{"t":"a","part":1,"offset":2.5}}`, CodeInvalidPayload, "p.offset must be an offset ≥ 0"},
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
			// Only what the error reply needs survives an error.
			want := Request{ID: raw(`1`), Type: got.Type, Action: got.Action}
			if !reflect.DeepEqual(got, want) || got.Type == "" {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// frameResult is one call of DecodeFrame's each.
type frameResult struct {
	req Request
	err *Error
}

func decodeAll(frame string) []frameResult {
	var got []frameResult
	DecodeFrame([]byte(frame), func(req Request, err *Error) { got = append(got, frameResult{req, err}) })
	return got
}

func TestDecodeFrame(t *testing.T) {
	single := func(frame string) frameResult {
		req, err := Decode([]byte(frame))
		return frameResult{req, err}
	}
	health := `{"id":1,"t":"health"}`
	publish := `{"id":"x","t":"notif","p":{"t":"a","m":"v","k":"k"}}`
	bad := `{"id":3,"t":"topic","a":"nope"}`
	tests := []struct {
		name  string
		frame string
		want  []frameResult
	}{
		{"object is Decode", health, []frameResult{single(health)}},
		{"object error is Decode's", bad, []frameResult{single(bad)}},
		{"not JSON", `[{"t":"health"}`, []frameResult{{Request{}, &Error{CodeInvalidJSON, "frame is not valid JSON"}}}},
		{"not JSON after the array", `[{"t":"health"}] x`, []frameResult{{Request{}, &Error{CodeInvalidJSON, "frame is not valid JSON"}}}},
		{"scalar", `5`, []frameResult{{Request{}, &Error{CodeInvalidFrame, "frame must be a JSON object"}}}},
		{"empty array", ` [ ] `, []frameResult{{Request{}, &Error{CodeInvalidFrame, "frame is an empty array of requests"}}}},
		{"array in order", " [" + health + ",\n" + publish + " , " + bad + "]", []frameResult{single(health), single(publish), single(bad)}},
		{"array of non-objects", `[1,{"t":"health"},[2],null]`, []frameResult{
			{Request{}, &Error{CodeInvalidFrame, "frame[0] must be a JSON object"}},
			single(`{"t":"health"}`),
			{Request{}, &Error{CodeInvalidFrame, "frame[2] must be a JSON object"}},
			{Request{}, &Error{CodeInvalidFrame, "frame[3] must be a JSON object"}},
		}},
		{"too deep as a whole", `[` + `{"t":"health","x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}]`,
			[]frameResult{{Request{}, &Error{CodeInvalidJSON, "frame is not valid JSON"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decodeAll(tt.frame); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeFrameBatchLimit(t *testing.T) {
	batch := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(`{"t":"health"},`, n), ",") + "]"
	}
	if got := decodeAll(batch(MaxBatch)); len(got) != MaxBatch || got[MaxBatch-1].err != nil {
		t.Errorf("got %d results, want %d requests", len(got), MaxBatch)
	}
	got := decodeAll(batch(MaxBatch + 1))
	want := []frameResult{{Request{}, &Error{CodeInvalidFrame, fmt.Sprintf("frame is an array of %d requests: at most 1000 are allowed", MaxBatch+1)}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestSeedConversation is the README's conversation end to end: its requests decode to the values they always
// did, and the replies built from them are the README's replies byte for byte (the README's server ids aside,
// which were random).
func TestSeedConversation(t *testing.T) {
	tests := []struct {
		frame   string
		want    Request
		id      uint64
		payload any
		reply   string
	}{
		{readmeRequests[0], Request{ID: raw(`1`), Type: "topic", Action: "create", Op: OpCreateTopics, Topics: []string{"topic1", "topic2", "topicN"},
			Create: []TopicSpec{{Name: "topic1"}, {Name: "topic2"}, {Name: "topicN"}}},
			1, []string{"topic1", "topic2", "topicN"}, `{"id":1,"refid":1,"t":"topic","a":"create","s":0,"p":["topic1","topic2","topicN"]}`},
		{readmeRequests[1], Request{ID: raw(`23`), Type: "topic", Action: "list", Op: OpListTopics},
			6, []TopicPartition{{"topic2", 0}, {"topic2", 1}}, `{"id":6,"refid":23,"t":"topic","a":"list","s":0,"p":[{"topic":"topic2","partition":0},{"topic":"topic2","partition":1}]}`},
		{readmeRequests[2], Request{ID: raw(`1000`), Type: "topic", Action: "subscribe", Op: OpSubscribe, Topics: []string{"topic1", "topic2"}, Group: "ingestion_1",
			Subscribe: Subscribe{MQInterval: -1}},
			0, []string{"topic1", "topic2"}, `{"id":0,"refid":1000,"t":"topic","a":"subscribe","s":0,"p":["topic1","topic2"]}`},
		{readmeRequests[3], Request{ID: raw(`1300`), Type: "topic", Action: "unsubscribe", Op: OpUnsubscribe},
			567, nil, `{"id":567,"refid":1300,"t":"topic","a":"unsubscribe","s":0}`},
		{readmeRequests[4], Request{ID: raw(`1320`), Type: "notif", Action: "create", Op: OpPublish,
			Publish: Publish{Topic: "topic1", Value: []byte("{custom_message:'msg'}"), Partition: -1, Time: -1}},
			0, nil, ""}, // no reply
		{readmeRequests[5], Request{ID: raw(`1500`), Type: "health", Op: OpHealth},
			5, Health{Consumers: []Consumer{{WS: 1, Topics: []string{"topic1", "topic2"}}}}, `{"id":5,"refid":1500,"t":"health","s":0,"p":{"consumers":[{"ws":1,"topics":["topic1","topic2"]}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.want.Type+" "+tt.want.Action, func(t *testing.T) {
			got := decodeAll(tt.frame)
			if len(got) != 1 || got[0].err != nil || !reflect.DeepEqual(got[0].req, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if tt.reply == "" {
				return
			}
			if reply := string(Reply(tt.id, &got[0].req, tt.payload)); reply != tt.reply {
				t.Errorf("got %s, want %s", reply, tt.reply)
			}
		})
	}
	// The README's notification frame.
	if got, want := string(AppendNotifications(nil, []Notification{{ID: 3, Value: []byte("hello")}})), `[{"id":3,"t":"notif","p":"hello"}]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func BenchmarkDecodePublishFull(b *testing.B) {
	frame := []byte(`{"id":1320,"t":"notif","a":"create","p":{"t":"topic1","m":"` +
		strings.ReplaceAll(string(benchValue), `"`, `\"`) + `","k":"sensor-t-1700","h":{"trace":"4bf92f3577b34da6a3ce929d0e0e4736","src":"ws"},"part":3,"ts":1767323045000}}`)
	req, err := Decode(frame)
	if err != nil || len(req.Publish.Value) != 100 || len(req.Publish.Headers) != 2 || req.Publish.Partition != 3 {
		b.Fatalf("got %+v and error %v, want a 100-byte value with 2 headers to partition 3", req.Publish, err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		Decode(frame)
	}
}
