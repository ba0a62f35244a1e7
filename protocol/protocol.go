package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Op identifies what a request asks for.
type Op int

const (
	OpCreateTopics Op = iota + 1 // t:"topic", a:"create"
	OpListTopics                 // t:"topic", a:"list"
	OpSubscribe                  // t:"topic", a:"subscribe"
	OpUnsubscribe                // t:"topic", a:"unsubscribe"
	OpPublish                    // t:"notif", a:"create" or no a
	OpHealth                     // t:"health" (a, if any, is ignored but echoed)
)

// The codes of failure replies. Clients match on them, so a released code never changes meaning.
const (
	// CodeInvalidJSON: the frame is not JSON.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidFrame: the frame is JSON but not an object.
	CodeInvalidFrame = "invalid_frame"
	// CodeUnknownType: t is missing, not a string, or not a known type.
	CodeUnknownType = "unknown_type"
	// CodeUnknownAction: a is missing where the type requires it, not a string, or not known for that t.
	CodeUnknownAction = "unknown_action"
	// CodeInvalidPayload: p, or a field of it, is missing or of the wrong type.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidTopic: a topic or consumer group name that Kafka would refuse.
	CodeInvalidTopic = "invalid_topic"
	// CodeUnknownTopic: a subscription names a topic that does not exist (reported by the bridge).
	CodeUnknownTopic = "unknown_topic"
	// CodeKafkaUnavailable: no broker could be reached in time (reported by the bridge).
	CodeKafkaUnavailable = "kafka_unavailable"
	// CodeKafkaTimeout: Kafka did not answer a request in time (reported by the bridge).
	CodeKafkaTimeout = "kafka_timeout"
	// CodeKafkaError: Kafka answered with an error, which the message repeats (reported by the bridge).
	CodeKafkaError = "kafka_error"
	// CodeShuttingDown: the server is stopping and takes no new work (reported by the bridge).
	CodeShuttingDown = "shutting_down"
	// CodeCancelled: a later request on the same socket replaced this one before it completed (a subscribe
	// still joining its group when another subscribe or an unsubscribe arrived).
	CodeCancelled = "cancelled"
)

// Request is one decoded and validated client request. It shares no memory with the frame it came from, so the
// caller may reuse the frame's buffer. ID keeps the id's JSON text, spacing included, except that a byte that is
// not UTF-8 (only possible inside a string) becomes the escape \ufffd, so that echoing it keeps the reply UTF-8.
type Request struct {
	ID      json.RawMessage // the request's "id" exactly as sent (any JSON type); nil when absent
	Type    string          // "t" as sent
	Action  string          // "a" as sent; "" when absent
	Op      Op
	Topics  []string // OpCreateTopics: names to create; OpSubscribe: topics (deduplicated, order kept)
	Group   string   // OpSubscribe: "consumer_group"; "" means the route's default
	Publish Publish  // OpPublish
}

// Publish is one record a client asks to send.
type Publish struct {
	Topic string
	Value []byte // nil when p.m is JSON null
}

// Error is a request the protocol rejects. Code is a stable snake_case word; Message says what was wrong,
// naming the field (e.g. `p.t must be an array of topic names`).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Decode parses and validates one text frame. On failure it returns the *Error and a Request filled as far as
// the frame could be read (ID, Type, Action), so the error reply can still carry refid, t and a; Op and the
// payload fields are then unset. A frame that is not JSON yields an empty Request: nothing in it can be trusted.
func Decode(frame []byte) (Request, *Error) {
	var env envelope
	object, valid := env.scan(frame)
	if !valid {
		return Request{}, errorf(CodeInvalidJSON, "frame is not valid JSON")
	}
	if !object {
		return Request{}, errorf(CodeInvalidFrame, "frame must be a JSON object")
	}

	var req Request
	if env.id.present() {
		// An id of null is still an id: the reply's refid echoes null.
		req.ID = appendEchoable(make(json.RawMessage, 0, env.id.end-env.id.start), frame[env.id.start:env.id.end])
	}
	aIsString := env.a.present() && frame[env.a.start] == '"'
	if aIsString {
		req.Action = word(frame, env.a)
	}
	switch {
	case !env.t.present():
		return req, errorf(CodeUnknownType, "t is missing")
	case frame[env.t.start] != '"':
		return req, errorf(CodeUnknownType, "t must be a string")
	}
	req.Type = word(frame, env.t)

	var op Op
	var err *Error
	switch req.Type {
	case "topic":
		switch {
		case !env.a.present():
			return req, errorf(CodeUnknownAction, "a is missing")
		case !aIsString:
			return req, errorf(CodeUnknownAction, "a must be a string")
		}
		switch req.Action {
		case "create":
			op = OpCreateTopics
			req.Topics, err = decodeCreate(frame, &env)
		case "list":
			op = OpListTopics
		case "subscribe":
			op = OpSubscribe
			req.Topics, req.Group, err = decodeSubscribe(frame, &env)
		case "unsubscribe":
			op = OpUnsubscribe
		default:
			return req, errorf(CodeUnknownAction, "unknown action %q for t %q", req.Action, req.Type)
		}
	case "notif":
		// The original published whatever a said; only "create" (or none) publishes here, so that later actions
		// under t:"notif" can mean something else.
		switch {
		case !env.a.present():
		case !aIsString:
			return req, errorf(CodeUnknownAction, "a must be a string")
		case req.Action != "create":
			return req, errorf(CodeUnknownAction, "unknown action %q for t %q", req.Action, req.Type)
		}
		op = OpPublish
		req.Publish, err = decodePublish(frame, &env)
	case "health":
		op = OpHealth
	default:
		return req, errorf(CodeUnknownType, "unknown type %q in t", req.Type)
	}
	if err != nil {
		return req, err
	}
	req.Op = op
	return req, nil
}

// decodeCreate reads p of a topic create: an array of names, or one name on its own as the original accepted.
func decodeCreate(frame []byte, env *envelope) ([]string, *Error) {
	if !env.p.present() || frame[env.p.start] == 'n' {
		return nil, errorf(CodeInvalidPayload, "p must list at least one topic to create")
	}
	switch frame[env.p.start] {
	case '"':
		name := text(frame, env.p)
		if err := ValidTopicName(name); err != nil {
			return nil, errorf(CodeInvalidTopic, "p: %v", err)
		}
		return []string{name}, nil
	case '[':
		names, err := topicNames(frame, env.p, "p")
		if err == nil && len(names) == 0 {
			err = errorf(CodeInvalidPayload, "p must list at least one topic to create")
		}
		return names, err
	default:
		return nil, errorf(CodeInvalidPayload, "p must be an array of topic names")
	}
}

// decodeSubscribe reads p of a subscribe: {"t": [names…], "consumer_group": name}. Unlike create, a single
// name for p.t is refused, as the original refused it.
func decodeSubscribe(frame []byte, env *envelope) (topics []string, group string, err *Error) {
	switch {
	case !env.p.present():
		return nil, "", errorf(CodeInvalidPayload, "p is missing")
	case frame[env.p.start] != '{':
		return nil, "", errorf(CodeInvalidPayload, "p must be an object")
	case !env.pt.present():
		return nil, "", errorf(CodeInvalidPayload, "p.t is missing")
	case frame[env.pt.start] != '[':
		return nil, "", errorf(CodeInvalidPayload, "p.t must be an array of topic names")
	}
	topics, err = topicNames(frame, env.pt, "p.t")
	if err != nil {
		return nil, "", err
	}
	if len(topics) == 0 {
		return nil, "", errorf(CodeInvalidPayload, "p.t must list at least one topic")
	}
	// null counts as absent: the original fell back to its default group for any falsy consumer_group.
	if g := env.pGroup; g.present() && frame[g.start] != 'n' {
		if frame[g.start] != '"' {
			return nil, "", errorf(CodeInvalidPayload, "p.consumer_group must be a string")
		}
		if group = text(frame, g); group != "" {
			if err := ValidGroupName(group); err != nil {
				return nil, "", errorf(CodeInvalidTopic, "p.consumer_group: %v", err)
			}
		}
	}
	return topics, group, nil
}

// topicNames reads the array of topic names at v, named field in messages, dropping repeats but keeping order.
func topicNames(frame []byte, v span, field string) ([]string, *Error) {
	var names []string
	// A map rather than a scan of names: a frame of many thousands of names must not cost quadratic time.
	seen := make(map[string]struct{})
	for i, el := range elements(frame, v) {
		if frame[el.start] != '"' {
			return nil, errorf(CodeInvalidPayload, "%s[%d] must be a string", field, i)
		}
		name := text(frame, el)
		if err := ValidTopicName(name); err != nil {
			return nil, errorf(CodeInvalidTopic, "%s[%d]: %v", field, i, err)
		}
		if _, ok := seen[name]; !ok {
			seen[name] = struct{}{}
			names = append(names, name)
		}
	}
	return names, nil
}

// decodePublish reads p of a publish: {"t": topic, "m": message}.
func decodePublish(frame []byte, env *envelope) (Publish, *Error) {
	switch {
	case !env.p.present():
		return Publish{}, errorf(CodeInvalidPayload, "p is missing")
	case frame[env.p.start] != '{':
		return Publish{}, errorf(CodeInvalidPayload, "p must be an object")
	case !env.pt.present():
		return Publish{}, errorf(CodeInvalidPayload, "p.t is missing")
	case frame[env.pt.start] != '"':
		return Publish{}, errorf(CodeInvalidPayload, "p.t must be a string")
	}
	pub := Publish{Topic: text(frame, env.pt)}
	if err := ValidTopicName(pub.Topic); err != nil {
		return Publish{}, errorf(CodeInvalidTopic, "p.t: %v", err)
	}
	m := env.pm
	if !m.present() {
		return Publish{}, errorf(CodeInvalidPayload, "p.m is missing")
	}
	switch frame[m.start] {
	case '"':
		// A string is sent as the text it spells, so "a\nb" becomes three bytes. Never nil: "" is an empty
		// value, not a null one.
		pub.Value = appendUnquoted(make([]byte, 0, m.end-m.start-2), frame[m.start+1:m.end-1])
	case 'n':
		// null is sent as a record with a null value.
	default:
		// The original sent toString() of anything else ("[object Object]"); its JSON text is what a client means.
		pub.Value = appendCompact(make([]byte, 0, m.end-m.start), frame[m.start:m.end])
	}
	return pub, nil
}

// text returns the string at v, which is a validated JSON string.
func text(frame []byte, v span) string {
	raw := frame[v.start+1 : v.end-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw)
	}
	return string(appendUnquoted(nil, raw))
}

// words are the values of t and a that nearly every frame carries; word returns these without allocating.
var words = [...]string{"notif", "create", "topic", "list", "subscribe", "unsubscribe", "health"}

// word returns the string at v, which is a validated JSON string, sharing the memory of a known word.
func word(frame []byte, v span) string {
	raw := frame[v.start+1 : v.end-1]
	for _, w := range words {
		if string(raw) == w {
			return w
		}
	}
	return text(frame, v)
}
