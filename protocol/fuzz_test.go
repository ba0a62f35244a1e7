package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecode checks that no frame panics Decode, that every frame gets a reply that is JSON in UTF-8 carrying the
// request's id, and that what Decode reads agrees with encoding/json reading the same frame.
func FuzzDecode(f *testing.F) {
	for _, s := range readmeRequests {
		f.Add([]byte(s))
	}
	for _, s := range readmeOthers {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"id":null,"t":"topic","a":"create","p":"a"}`))
	f.Add([]byte(`{"t":"notif","p":{"t":"a","m":{"x": [1, "\u00e9"]}}}`))
	f.Add([]byte(`{"t":"topic","a":"subscribe","p":{"t":["a","a"],"consumer_group":""}}`))
	for _, s := range optInSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, err := Decode(frame)
		if got, want := err != nil && err.Code == CodeInvalidJSON, !json.Valid(frame); got != want {
			t.Fatalf("got invalid_json %v, want %v (err %v)", got, want, err)
		}

		var reply []byte
		if err != nil {
			reply = ErrorReply(1, &req, err)
		} else {
			reply = Reply(1, &req, payloadFor(&req))
		}
		if !json.Valid(reply) || !utf8.Valid(reply) {
			t.Fatalf("got reply %q, want valid JSON in UTF-8", reply)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(reply, &members); err != nil {
			t.Fatal(err)
		}
		if refid, ok := members["refid"]; ok != (req.ID != nil) || !bytes.Equal(refid, req.ID) {
			t.Fatalf("got refid %q, want %q", refid, req.ID)
		}

		// encoding/json decoding into a map reads keys exactly and lets the last duplicate win, as Decode does.
		var sent map[string]json.RawMessage
		if json.Unmarshal(frame, &sent) != nil {
			return
		}
		if id, ok := sent["id"]; ok != (req.ID != nil) || ok && utf8.Valid(id) && !bytes.Equal(id, req.ID) {
			t.Fatalf("got id %q, want %q", req.ID, id)
		}
		if s, ok := stringMember(sent, "t"); ok && s != req.Type {
			t.Fatalf("got t %q, want %q", req.Type, s)
		}
		if s, ok := stringMember(sent, "a"); ok && s != req.Action {
			t.Fatalf("got a %q, want %q", req.Action, s)
		}
		if s, _ := stringMember(sent, "t"); s != "notif" {
			return
		}
		if a, ok := sent["a"]; ok && !bytes.Equal(a, []byte(`"create"`)) {
			if s, _ := stringMember(sent, "a"); s != "create" {
				return
			}
		}
		// A publish: encoding/json, following the rules of the protocol, must read the same record, and accept
		// exactly the frames Decode accepts.
		want, wantAck, ok := referencePublish(sent)
		if ok != (err == nil) {
			t.Fatalf("got error %v, want accepted %v (%+v)", err, ok, want)
		}
		if !ok {
			return
		}
		got := req.Publish
		switch {
		case got.Topic != want.Topic:
			t.Fatalf("got p.t %q, want %q", got.Topic, want.Topic)
		case !sameBytes(got.Value, want.Value):
			t.Fatalf("got p.m %q, want %q", got.Value, want.Value)
		case !sameBytes(got.Key, want.Key):
			t.Fatalf("got p.k %q, want %q", got.Key, want.Key)
		case !reflect.DeepEqual(got.Headers, want.Headers):
			t.Fatalf("got p.h %q, want %q", got.Headers, want.Headers)
		case got.Partition != want.Partition:
			t.Fatalf("got p.part %d, want %d", got.Partition, want.Partition)
		case got.Time != want.Time:
			t.Fatalf("got p.ts %d, want %d", got.Time, want.Time)
		case req.Ack != wantAck:
			t.Fatalf("got ack %v, want %v", req.Ack, wantAck)
		}
	})
}

// optInSeeds exercise the opt-in members of every request.
var optInSeeds = []string{
	`{"id":1,"t":"notif","ack":true,"p":{"t":"a","m":"v","k":"k","h":{"x":"1","x":"2"},"part":0,"ts":1700000000000,"ack":false}}`,
	`{"t":"notif","p":{"t":"a","m":"AP8=","k":"a2V5","h":{"x":"/w"},"enc":"base64","part":-0,"ts":null}}`,
	`{"t":"notif","p":{"t":"a","m":1.5,"k":null,"enc":null,"part":1e2,"ts":-1}}`,
	`{"id":2,"t":"topic","a":"create","p":["a",{"name":"b","partitions":3,"replication":1,"configs":{"c":"1"}}]}`,
	`{"id":3,"t":"topic","a":"subscribe","p":{"t":["a"],"mode":"broadcast","meta":true,"from":"earliest","mq_limit":5,"mq_interval":0}}`,
	`{"id":4,"t":"topic","a":"subscribe","p":{"t":["a"],"from":1700000000000,"seek":{"a":{"0":42}},"commit":"client"}}`,
	`{"id":5,"t":"topic","a":"unsubscribe","p":{"t":["a"]}}`,
	`{"id":6,"t":"topic","a":"describe","p":{"t":["a"],"consumer_group":"g"}}`,
	`{"id":7,"t":"topic","a":"delete","p":["a"]}`,
	`{"id":8,"t":"notif","a":"ack","p":{"id":3}}`,
	`{"id":9,"t":"notif","a":"ack","p":{"t":"a","part":0,"offset":42}}`,
	`[{"id":1,"t":"health"},{"id":2,"t":"notif","p":{"t":"a","m":"v"}},5]`,
}

// referencePublish reads the publish frame sent with encoding/json by the protocol's rules, independently of the
// scanner: ok is false when the frame must be refused.
func referencePublish(sent map[string]json.RawMessage) (pub Publish, ack, ok bool) {
	given := func(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
		v, ok := m[key]
		return v, ok && string(v) != "null"
	}
	var p map[string]json.RawMessage
	if raw, ok := sent["p"]; !ok || raw[0] != '{' || json.Unmarshal(raw, &p) != nil {
		return pub, false, false
	}
	topic, isString := stringMember(p, "t")
	if !isString || ValidTopicName(topic) != nil {
		return pub, false, false
	}
	pub = Publish{Topic: topic, Partition: -1, Time: -1}
	m, ok := p["m"]
	if !ok {
		return pub, false, false
	}
	b64 := false
	if _, ok := given(p, "enc"); ok {
		if s, _ := stringMember(p, "enc"); s != "base64" {
			return pub, false, false
		}
		b64 = true
	}
	bytesOf := func(raw json.RawMessage) ([]byte, bool) {
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		if !b64 {
			return []byte(s), true
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil && !bytes.Contains([]byte(s), []byte("=")) {
			b, err = base64.RawStdEncoding.DecodeString(s)
		}
		if b == nil {
			b = []byte{}
		}
		return b, err == nil
	}
	switch {
	case string(m) == "null":
	case m[0] == '"' || b64:
		if pub.Value, ok = bytesOf(m); !ok {
			return pub, false, false
		}
	default:
		var b bytes.Buffer
		if json.Compact(&b, m) != nil {
			return pub, false, false
		}
		pub.Value = b.Bytes()
	}
	if k, ok := given(p, "k"); ok {
		if pub.Key, ok = bytesOf(k); !ok {
			return pub, false, false
		}
	}
	if h, ok := given(p, "h"); ok {
		if h[0] != '{' {
			return pub, false, false
		}
		// A decoder rather than a map: headers keep their order and their repeated keys.
		dec := json.NewDecoder(bytes.NewReader(h))
		dec.Token()
		for dec.More() {
			key, _ := dec.Token()
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				return pub, false, false
			}
			value, ok := bytesOf(v)
			if !ok {
				return pub, false, false
			}
			pub.Headers = append(pub.Headers, Header{Key: key.(string), Value: value})
		}
	}
	if v, ok := given(p, "part"); ok {
		if json.Unmarshal(v, &pub.Partition) != nil || pub.Partition < 0 {
			return pub, false, false
		}
	}
	if v, ok := given(p, "ts"); ok {
		if json.Unmarshal(v, &pub.Time) != nil || pub.Time < 0 {
			return pub, false, false
		}
	}
	for _, m := range []map[string]json.RawMessage{p, sent} {
		if v, ok := given(m, "ack"); ok {
			var b bool
			if json.Unmarshal(v, &b) != nil {
				return pub, false, false
			}
			ack = ack || b
		}
	}
	return pub, ack, true
}

// sameBytes reports whether a and b hold the same bytes and are both nil or both not.
func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) }

// FuzzDecodeFrame checks that every frame gets one result per request, that an array's elements decode exactly as
// they would alone, and that every result makes a reply that is JSON carrying the request's id.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range readmeRequests {
		f.Add([]byte(s))
	}
	for _, s := range optInSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[]`))
	f.Add([]byte(` [ {"t":"health"} , 1 , [ ] ] `))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var got []frameResult
		DecodeFrame(frame, func(req Request, err *Error) { got = append(got, frameResult{req, err}) })
		for _, r := range got {
			var reply []byte
			if r.err != nil {
				reply = ErrorReply(1, &r.req, r.err)
			} else {
				reply = Reply(1, &r.req, payloadFor(&r.req))
			}
			var members map[string]json.RawMessage
			if !utf8.Valid(reply) || json.Unmarshal(reply, &members) != nil {
				t.Fatalf("got reply %q, want a JSON object in UTF-8", reply)
			}
			if refid, ok := members["refid"]; ok != (r.req.ID != nil) || !bytes.Equal(refid, r.req.ID) {
				t.Fatalf("got refid %q, want %q", refid, r.req.ID)
			}
		}
		one := func(code, message string) {
			want := []frameResult{{Request{}, &Error{code, message}}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		}
		var elements []json.RawMessage
		switch {
		case !json.Valid(frame):
			one(CodeInvalidJSON, "frame is not valid JSON")
		case bytes.TrimLeft(frame, " \t\r\n")[0] != '[' || json.Unmarshal(frame, &elements) != nil:
			req, err := Decode(frame)
			if want := []frameResult{{req, err}}; !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		case len(elements) == 0:
			one(CodeInvalidFrame, "frame is an empty array of requests")
		case len(elements) > MaxBatch:
			if len(got) != 1 || got[0].err == nil || got[0].err.Code != CodeInvalidFrame {
				t.Fatalf("got %+v, want one invalid_frame", got)
			}
		default:
			if len(got) != len(elements) {
				t.Fatalf("got %d results, want %d", len(got), len(elements))
			}
			for i, el := range elements {
				var want frameResult
				if el[0] == '{' {
					want.req, want.err = Decode(el)
				} else if got[i].err == nil || got[i].err.Code != CodeInvalidFrame || got[i].req.ID != nil {
					t.Fatalf("got %+v for element %d, want invalid_frame without refid", got[i], i)
				} else {
					continue
				}
				if !reflect.DeepEqual(got[i], want) {
					t.Fatalf("got %+v for element %d, want %+v", got[i], i, want)
				}
			}
		}
	})
}

// FuzzDecoder checks that what a Decoder returns for a frame does not depend on the frame it decoded before.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(`{"t":"notif","p":{"t":"orders","m":"a"}}`), []byte(`{"t":"notif","p":{"t":"orders","m":"b"}}`))
	f.Add([]byte(`{"t":"notif","p":{"t":"orders","m":"a"}}`), []byte(`{"t":"notif","p":{"t":"\u006frders","m":"b"}}`))
	f.Add([]byte(`{"t":"notif","p":{"t":"orders","m":"a"}}`), []byte(`{"t":"notif","p":{"t":"","m":"b"}}`))
	f.Add([]byte(`{"t":"notif","p":{"t":"a b","m":"a"}}`), []byte(`{"t":"notif","p":{"t":"a b","m":"b"}}`))
	f.Fuzz(func(t *testing.T, before, frame []byte) {
		var d Decoder
		d.Decode(before)
		gotReq, gotErr := d.Decode(frame)
		wantReq, wantErr := Decode(frame)
		if !reflect.DeepEqual(gotReq, wantReq) || !reflect.DeepEqual(gotErr, wantErr) {
			t.Fatalf("after %q: got %+v, %v; alone: %+v, %v", before, gotReq, gotErr, wantReq, wantErr)
		}
	})
}

// FuzzAppendNotificationsMeta checks that a notification with metadata is always JSON in UTF-8 from which the
// record's bytes can be read back: as text when they are UTF-8, as base64 otherwise.
func FuzzAppendNotificationsMeta(f *testing.F) {
	f.Add([]byte("v"), []byte("k"), "h", []byte("hv"), "topic1", int64(42))
	f.Add([]byte{0xff}, []byte(nil), "hÿ", []byte(" "), "", int64(-1))
	f.Fuzz(func(t *testing.T, value, key []byte, hkey string, hvalue []byte, topic string, offset int64) {
		n := Notification{ID: 1, Value: value, Meta: true, Topic: topic, Partition: 1, Offset: offset, Key: key,
			Headers: []Header{{hkey, hvalue}}, Time: offset}
		frame := AppendNotifications(nil, []Notification{n})
		var got []struct {
			P      *string           `json:"p"`
			Offset int64             `json:"offset"`
			K      *string           `json:"k"`
			H      map[string]string `json:"h"`
			Enc    string            `json:"enc"`
		}
		if !utf8.Valid(frame) || json.Unmarshal(frame, &got) != nil || len(got) != 1 {
			t.Fatalf("got %q, want a JSON array of one notification in UTF-8", frame)
		}
		b64 := !utf8.Valid(value) || !utf8.Valid(key) || !utf8.Valid(hvalue)
		if (got[0].Enc == "base64") != b64 || got[0].Offset != offset {
			t.Fatalf("got %s, want base64 %v", frame, b64)
		}
		read := func(s *string) []byte {
			if s == nil {
				return nil
			}
			if !b64 {
				return []byte(*s)
			}
			b, err := base64.StdEncoding.DecodeString(*s)
			if err != nil {
				t.Fatalf("got %s: %v", frame, err)
			}
			return b
		}
		if v := read(got[0].P); !bytes.Equal(v, value) || (v == nil) != (value == nil) {
			t.Fatalf("got p %q, want %q", v, value)
		}
		if k := read(got[0].K); !bytes.Equal(k, key) || (k == nil) != (key == nil) {
			t.Fatalf("got k %q, want %q", k, key)
		}
		if utf8.ValidString(hkey) {
			if h, ok := got[0].H[hkey]; !ok || !bytes.Equal(read(&h), hvalue) {
				t.Fatalf("got h %q, want %q: %q", got[0].H, hkey, hvalue)
			}
		}
	})
}

// payloadFor is a payload of the shape the bridge replies to req with.
func payloadFor(req *Request) any {
	switch req.Op {
	case OpCreateTopics, OpSubscribe:
		return req.Topics
	case OpListTopics:
		return []TopicPartition{{Topic: "topic1", Partition: 0}}
	case OpHealth:
		return Health{Consumers: []Consumer{{WS: 1, Topics: req.Topics}}}
	default:
		return nil
	}
}

// stringMember returns the member key of m when it is a string, as encoding/json decodes it.
func stringMember(m map[string]json.RawMessage, key string) (string, bool) {
	v, ok := m[key]
	if !ok || len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// FuzzAppendNotifications holds the hand-written string escaping to encoding/json's, byte for byte.
func FuzzAppendNotifications(f *testing.F) {
	for _, s := range escapeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendNotifications(nil, []Notification{{ID: 1, Value: []byte(s)}})
		want := `[{"id":1,"t":"notif","p":` + encodingJSON(t, s) + `}]`
		if string(got) != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
}
