package protocol

import (
	"bytes"
	"encoding/json"
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
		if err != nil || req.Op != OpPublish {
			return
		}
		var p map[string]json.RawMessage
		if err := json.Unmarshal(sent["p"], &p); err != nil {
			t.Fatal(err)
		}
		if s, _ := stringMember(p, "t"); s != req.Publish.Topic {
			t.Fatalf("got p.t %q, want %q", req.Publish.Topic, s)
		}
		var want []byte
		if s, ok := stringMember(p, "m"); ok {
			want = []byte(s)
		} else if string(p["m"]) != "null" {
			var b bytes.Buffer
			if err := json.Compact(&b, p["m"]); err != nil {
				t.Fatal(err)
			}
			want = b.Bytes()
		}
		if !bytes.Equal(req.Publish.Value, want) || (req.Publish.Value == nil) != (want == nil) {
			t.Fatalf("got p.m %q, want %q", req.Publish.Value, want)
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
