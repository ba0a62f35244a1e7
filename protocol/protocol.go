package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Op identifies what a request asks for.
type Op int

const (
	OpCreateTopics   Op = iota + 1 // t:"topic", a:"create"
	OpListTopics                   // t:"topic", a:"list"
	OpSubscribe                    // t:"topic", a:"subscribe"
	OpUnsubscribe                  // t:"topic", a:"unsubscribe"
	OpPublish                      // t:"notif", a:"create" or no a
	OpHealth                       // t:"health" (a, if any, is ignored but echoed)
	OpDescribeTopics               // t:"topic", a:"describe"
	OpDeleteTopics                 // t:"topic", a:"delete"
	OpAck                          // t:"notif", a:"ack"
	OpPing                         // t:"ping": answered at once, for a client's own heartbeat
)

// The codes of failure replies. Clients match on them, so a released code never changes meaning.
const (
	// CodeInvalidJSON: the frame is not JSON.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidFrame: the frame is JSON but not an object, an array element is not an object, or an array of
	// requests is empty or longer than MaxBatch.
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
	// CodeForbidden: the route's configuration does not allow this request, such as a topic delete on a route that
	// does not enable it (reported by the bridge).
	CodeForbidden = "forbidden"
	// CodeRateLimited: the socket publishes faster than the route allows; the publish was not sent (reported by
	// the bridge).
	CodeRateLimited = "rate_limited"
	// CodeCancelled: a later request on the same socket replaced this one before it completed (a subscribe
	// still joining its group when another subscribe or an unsubscribe arrived).
	CodeCancelled = "cancelled"
)

// MaxBatch is the most requests one array frame may hold; DecodeFrame answers a longer array with a single
// invalid_frame error, so that one frame cannot queue unbounded work.
const MaxBatch = 1000

// Request is one decoded and validated client request. It shares no memory with the frame it came from, so the
// caller may reuse the frame's buffer. ID keeps the id's JSON text, spacing included, except that a byte that is
// not UTF-8 (only possible inside a string) becomes the escape \ufffd, so that echoing it keeps the reply UTF-8.
//
// Optional members that are JSON null count as absent throughout, as the original treated a null consumer_group.
type Request struct {
	ID     json.RawMessage // the request's "id" exactly as sent (any JSON type); nil when absent
	Type   string          // "t" as sent
	Action string          // "a" as sent; "" when absent
	Op     Op
	// Topics is deduplicated with the order kept. OpCreateTopics, OpDeleteTopics, OpDescribeTopics: the topics
	// named; OpSubscribe: p.t; OpUnsubscribe: p.t, the topics to leave, or nil to leave every one.
	Topics []string
	// Group is "consumer_group" of OpSubscribe and OpDescribeTopics; "" means the route's default for a subscribe,
	// and no group offsets for a describe.
	Group   string
	Publish Publish // OpPublish

	Ack       bool        // OpPublish: "ack": true at the top level or in p asks for a Receipt
	Create    []TopicSpec // OpCreateTopics: one per name of Topics, in the same order
	Detailed  bool        // OpCreateTopics: some element of p was an object, so the reply lists per-topic results
	Subscribe Subscribe   // OpSubscribe: the opt-in options
	AckOf     AckTarget   // OpAck
	// Kafka is OpHealth's opt-in "p": {"kafka": true}: the reply also says whether the brokers answer.
	Kafka bool
}

// TopicSpec is one topic of a create: a string element is {Name}; an object element is
// {"name": string (required), "partitions": int > 0, "replication": int > 0, "configs": {string: string}}.
type TopicSpec struct {
	Name        string
	Partitions  int               // 0: the route's default
	Replication int               // 0: the route's default
	Configs     map[string]string // nil when absent or empty
}

// Publish is one record a client asks to send.
type Publish struct {
	Topic     string
	Value     []byte   // nil when p.m is JSON null (a tombstone when Key is set)
	Key       []byte   // p.k; nil when absent or null
	Headers   []Header // p.h: string → string, in the order sent, repeats kept; nil when absent or empty
	Partition int32    // p.part: ≥ 0; -1 when absent
	Time      int64    // p.ts: milliseconds since the epoch; -1 when absent
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Subscribe holds the opt-in options of a subscribe (p.t and p.consumer_group are Request.Topics and Group).
type Subscribe struct {
	Broadcast    bool                       // p.mode: "group" (default) or "broadcast"
	Meta         bool                       // p.meta: true adds delivery metadata to every notification
	From         From                       // p.from: "earliest", "latest" or a timestamp in ms
	Seek         map[string]map[int32]int64 // p.seek: {"topic": {"0": 42}}: start offsets; nil when absent or empty
	ClientCommit bool                       // p.commit: "auto" (default) or "client"
	Assignments  bool                       // p.assignments: true sends the partitions read and their start offsets
	MQLimit      int                        // p.mq_limit: ≥ 1; 0 when absent
	MQInterval   int64                      // p.mq_interval: ms ≥ 0; -1 when absent
}

// From is where a subscription starts reading partitions that have no committed offset (or every partition, for a
// broadcast), unless Seek names one.
type From struct {
	Kind FromKind
	Time int64 // FromTime: ms since the epoch
}

// FromKind says which form of p.from a subscribe gave.
type FromKind int

const (
	FromDefault  FromKind = iota // p.from absent: the route's configured start
	FromEarliest                 // "earliest"
	FromLatest                   // "latest"
	FromTime                     // a timestamp: the first offset at or after From.Time
)

// AckTarget is what a notif/ack acknowledges: everything delivered on this socket up to and including the
// notification with id ID ({"id": N}), or up to and including offset Offset of one partition
// ({"t": topic, "part": P, "offset": O}). Exactly one form is given.
type AckTarget struct {
	ByID      bool
	ID        uint64
	Topic     string
	Partition int32
	Offset    int64
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

// Decoder decodes the frames of one connection. It remembers the topic of the last publish, so that a client
// publishing to one topic over and over costs neither a new string nor a new check of the name per message. What
// it returns does not depend on what it decoded before. The zero Decoder is ready for use; it is not safe for
// concurrent use.
type Decoder struct {
	topic string // the last valid topic name published to

	namespace       Namespace
	nsTopic, nsFull string // the last topic published to in the namespace, and its Kafka name
}

// SetNamespace makes the decoder put ns before every topic and group name it decodes (see Namespace).
func (d *Decoder) SetNamespace(ns Namespace) { d.namespace = ns }

// Decode parses and validates one text frame holding one request, a JSON object. On failure it returns the
// *Error and a Request filled as far as the frame could be read (ID, Type, Action), so the error reply can still
// carry refid, t and a; Op and the payload fields are then unset. A frame that is not JSON yields an empty
// Request: nothing in it can be trusted. DecodeFrame also accepts an array of requests.
func Decode(frame []byte) (Request, *Error) {
	var d Decoder
	return d.Decode(frame)
}

// Decode is the package's Decode, for one connection's frames.
func (d *Decoder) Decode(frame []byte) (req Request, err *Error) {
	var env envelope
	object, valid := env.scan(frame)
	if !valid {
		return Request{}, errorf(CodeInvalidJSON, "frame is not valid JSON")
	}
	if !object {
		return Request{}, errorf(CodeInvalidFrame, "frame must be a JSON object")
	}

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
			err = decodeCreate(frame, &env, &req)
		case "list":
			op = OpListTopics
		case "subscribe":
			op = OpSubscribe
			err = decodeSubscribe(frame, &env, &req)
		case "unsubscribe":
			op = OpUnsubscribe
			err = decodeUnsubscribe(frame, &env, &req)
		case "describe":
			op = OpDescribeTopics
			err = decodeDescribe(frame, &env, &req)
		case "delete":
			op = OpDeleteTopics
			req.Topics, err = topicList(frame, env.p, "delete")
		default:
			return req, errorf(CodeUnknownAction, "unknown action %q for t %q", req.Action, req.Type)
		}
	case "notif":
		// The original published whatever a said; only "create" (or none) publishes here, so that later actions
		// under t:"notif" can mean something else, as "ack" does.
		switch {
		case !env.a.present() || aIsString && req.Action == "create":
			op = OpPublish
			err = d.decodePublish(frame, &env, &req)
		case !aIsString:
			return req, errorf(CodeUnknownAction, "a must be a string")
		case req.Action == "ack":
			op = OpAck
			err = decodeAck(frame, &env, &req)
		default:
			return req, errorf(CodeUnknownAction, "unknown action %q for t %q", req.Action, req.Type)
		}
	case "health":
		op = OpHealth
		err = decodeHealth(frame, &env, &req)
	case "ping":
		op = OpPing
	default:
		return req, errorf(CodeUnknownType, "unknown type %q in t", req.Type)
	}
	if err == nil && !d.namespace.IsZero() {
		err = d.applyNamespace(op, &req)
	}
	if err != nil {
		return Request{ID: req.ID, Type: req.Type, Action: req.Action}, err
	}
	req.Op = op
	return req, nil
}

// DecodeFrame decodes one text frame holding either one request (a JSON object) or an array of them, calling each
// once per request in the order sent, with what Decode returns for it: an element of an array is decoded exactly
// as if it had been sent alone. An element that is not an object gets an invalid_frame error (with an empty
// Request: no refid). A frame that is not JSON, an empty array and an array of more than MaxBatch elements each get
// a single error.
func DecodeFrame(frame []byte, each func(req Request, err *Error)) {
	var d Decoder
	d.DecodeFrame(frame, each)
}

// DecodeFrame is the package's DecodeFrame, for one connection's frames.
func (d *Decoder) DecodeFrame(frame []byte, each func(req Request, err *Error)) {
	s := scanner{data: frame}
	s.space()
	if s.i >= len(frame) || frame[s.i] != '[' {
		each(d.Decode(frame))
		return
	}
	arr := span{start: s.i}
	n := 0
	// One validating pass over the array, counting its elements, before any of them is acted on: a frame that is
	// not JSON must get one invalid_json and nothing else.
	valid := s.array(func() { n++ })
	arr.end = s.i
	s.space()
	switch {
	case !valid || s.i != len(frame):
		each(Request{}, errorf(CodeInvalidJSON, "frame is not valid JSON"))
	case n == 0:
		each(Request{}, errorf(CodeInvalidFrame, "frame is an empty array of requests"))
	case n > MaxBatch:
		each(Request{}, errorf(CodeInvalidFrame, "frame is an array of %d requests: at most %d are allowed", n, MaxBatch))
	default:
		for i, el := range elements(frame, arr) {
			if frame[el.start] != '{' {
				each(Request{}, errorf(CodeInvalidFrame, "frame[%d] must be a JSON object", i))
				continue
			}
			each(d.Decode(frame[el.start:el.end]))
		}
	}
}

// decodeCreate reads p of a topic create: an array whose elements are names or objects (see TopicSpec), or one
// name on its own as the original accepted.
func decodeCreate(frame []byte, env *envelope, req *Request) *Error {
	p := env.p
	if !p.present() || frame[p.start] == 'n' {
		return errorf(CodeInvalidPayload, "p must list at least one topic to create")
	}
	switch frame[p.start] {
	case '"':
		name := text(frame, p)
		if err := ValidTopicName(name); err != nil {
			return errorf(CodeInvalidTopic, "p: %v", err)
		}
		req.Topics, req.Create = []string{name}, []TopicSpec{{Name: name}}
		return nil
	case '[':
	default:
		return errorf(CodeInvalidPayload, "p must be an array of topic names")
	}
	seen := make(map[string]struct{})
	for i, el := range elements(frame, p) {
		if i == MaxTopics {
			return tooManyTopics("p")
		}
		var spec TopicSpec
		switch frame[el.start] {
		case '"':
			spec.Name = text(frame, el)
			if err := ValidTopicName(spec.Name); err != nil {
				return errorf(CodeInvalidTopic, "p[%d]: %v", i, err)
			}
		case '{':
			req.Detailed = true
			var err *Error
			if spec, err = topicSpec(frame, el, fmt.Sprintf("p[%d]", i)); err != nil {
				return err
			}
		default:
			return errorf(CodeInvalidPayload, "p[%d] must be a string", i)
		}
		// The first spec of a name is the one created: a repeat is dropped as a repeated name always was.
		if _, ok := seen[spec.Name]; !ok {
			seen[spec.Name] = struct{}{}
			req.Topics = append(req.Topics, spec.Name)
			req.Create = append(req.Create, spec)
		}
	}
	if len(req.Topics) == 0 {
		return errorf(CodeInvalidPayload, "p must list at least one topic to create")
	}
	return nil
}

// maxReplication is Kafka's limit: CreateTopics carries the replication factor as an int16.
const maxReplication = math.MaxInt16

// topicSpec reads the object element at v of a create, named field in messages. Members other than name,
// partitions, replication and configs are ignored, as unknown members are everywhere.
func topicSpec(frame []byte, v span, field string) (TopicSpec, *Error) {
	var spec TopicSpec
	m := memberMap(frame, v)
	name, ok := given(frame, m, "name")
	switch {
	case !ok:
		return spec, errorf(CodeInvalidPayload, "%s.name is missing", field)
	case frame[name.start] != '"':
		return spec, errorf(CodeInvalidPayload, "%s.name must be a string", field)
	}
	spec.Name = text(frame, name)
	if err := ValidTopicName(spec.Name); err != nil {
		return spec, errorf(CodeInvalidTopic, "%s.name: %v", field, err)
	}
	if v, ok := given(frame, m, "partitions"); ok {
		n, ok := integer(frame, v, math.MaxInt32)
		if !ok || n == 0 {
			return spec, errorf(CodeInvalidPayload, "%s.partitions must be an integer > 0", field)
		}
		spec.Partitions = int(n)
	}
	if v, ok := given(frame, m, "replication"); ok {
		n, ok := integer(frame, v, maxReplication)
		if !ok || n == 0 {
			return spec, errorf(CodeInvalidPayload, "%s.replication must be an integer from 1 to %d", field, maxReplication)
		}
		spec.Replication = int(n)
	}
	if v, ok := given(frame, m, "configs"); ok {
		if frame[v.start] != '{' {
			return spec, errorf(CodeInvalidPayload, "%s.configs must be an object of strings", field)
		}
		for key, el := range objectMembers(frame, v) {
			if frame[el.start] != '"' {
				return spec, errorf(CodeInvalidPayload, "%s.configs.%s must be a string", field, key)
			}
			if spec.Configs == nil {
				spec.Configs = make(map[string]string)
			}
			spec.Configs[key] = text(frame, el)
		}
	}
	return spec, nil
}

// topicList reads p of a delete (and the array or string forms of a describe's): an array of names, or one name.
func topicList(frame []byte, p span, verb string) ([]string, *Error) {
	if !p.present() || frame[p.start] == 'n' {
		return nil, errorf(CodeInvalidPayload, "p must list at least one topic to %s", verb)
	}
	switch frame[p.start] {
	case '"':
		name := text(frame, p)
		if err := ValidTopicName(name); err != nil {
			return nil, errorf(CodeInvalidTopic, "p: %v", err)
		}
		return []string{name}, nil
	case '[':
		names, err := topicNames(frame, p, "p")
		if err == nil && len(names) == 0 {
			err = errorf(CodeInvalidPayload, "p must list at least one topic to %s", verb)
		}
		return names, err
	default:
		return nil, errorf(CodeInvalidPayload, "p must be an array of topic names")
	}
}

// decodeDescribe reads p of a describe: an array of names (or one name), or {"t": [names…], "consumer_group":
// name} to also ask for the group's committed offsets and lag.
func decodeDescribe(frame []byte, env *envelope, req *Request) *Error {
	p := env.p
	if !p.present() || frame[p.start] != '{' {
		var err *Error
		req.Topics, err = topicList(frame, p, "describe")
		return err
	}
	var err *Error
	if req.Topics, err = topicArray(frame, env.pm.t); err != nil {
		return err
	}
	req.Group, err = groupName(frame, env.pm.group)
	return err
}

// decodeSubscribe reads p of a subscribe: {"t": [names…], "consumer_group": name} and the options of Subscribe.
// Unlike create, a single name for p.t is refused, as the original refused it.
func decodeSubscribe(frame []byte, env *envelope, req *Request) *Error {
	switch {
	case !env.p.present():
		return errorf(CodeInvalidPayload, "p is missing")
	case frame[env.p.start] != '{':
		return errorf(CodeInvalidPayload, "p must be an object")
	}
	var err *Error
	if req.Topics, err = topicArray(frame, env.pm.t); err != nil {
		return err
	}
	if req.Group, err = groupName(frame, env.pm.group); err != nil {
		return err
	}

	sub := Subscribe{MQInterval: -1}
	m := memberMap(frame, env.p)
	if v, ok := given(frame, m, "mode"); ok {
		switch {
		case isText(frame, v, "group"):
		case isText(frame, v, "broadcast"):
			sub.Broadcast = true
		default:
			return errorf(CodeInvalidPayload, `p.mode must be "group" or "broadcast"`)
		}
	}
	if v, ok := given(frame, m, "meta"); ok {
		if sub.Meta, ok = boolean(frame, v); !ok {
			return errorf(CodeInvalidPayload, "p.meta must be a boolean")
		}
	}
	if v, ok := given(frame, m, "assignments"); ok {
		if sub.Assignments, ok = boolean(frame, v); !ok {
			return errorf(CodeInvalidPayload, "p.assignments must be a boolean")
		}
	}
	if v, ok := given(frame, m, "from"); ok {
		switch {
		case isText(frame, v, "earliest"):
			sub.From.Kind = FromEarliest
		case isText(frame, v, "latest"):
			sub.From.Kind = FromLatest
		default:
			n, ok := integer(frame, v, math.MaxInt64)
			if !ok {
				return errorf(CodeInvalidPayload, `p.from must be "earliest", "latest" or a timestamp in ms`)
			}
			sub.From = From{Kind: FromTime, Time: int64(n)}
		}
	}
	seek, seekGiven := given(frame, m, "seek")
	if seekGiven {
		if sub.Seek, err = seekOffsets(frame, seek, req.Topics); err != nil {
			return err
		}
	}
	if v, ok := given(frame, m, "commit"); ok {
		switch {
		case isText(frame, v, "auto"):
		case isText(frame, v, "client"):
			sub.ClientCommit = true
		default:
			return errorf(CodeInvalidPayload, `p.commit must be "auto" or "client"`)
		}
	}
	if v, ok := given(frame, m, "mq_limit"); ok {
		n, ok := integer(frame, v, math.MaxInt32)
		if !ok || n == 0 {
			return errorf(CodeInvalidPayload, "p.mq_limit must be an integer ≥ 1")
		}
		sub.MQLimit = int(n)
	}
	if v, ok := given(frame, m, "mq_interval"); ok {
		// Capped where milliseconds still fit a time.Duration, so that the bridge can convert it as it is.
		n, ok := integer(frame, v, math.MaxInt64/uint64(time.Millisecond))
		if !ok {
			return errorf(CodeInvalidPayload, "p.mq_interval must be an integer number of ms ≥ 0")
		}
		sub.MQInterval = int64(n)
	}
	if sub.Broadcast {
		// A broadcast subscription reads every partition of its topics outside any consumer group, so nothing
		// that belongs to a group applies to it.
		switch {
		case req.Group != "":
			return errorf(CodeInvalidPayload, `p.consumer_group cannot be used with p.mode "broadcast": a broadcast subscription joins no group`)
		case sub.ClientCommit:
			return errorf(CodeInvalidPayload, `p.commit "client" cannot be used with p.mode "broadcast": a broadcast subscription has no group to commit offsets to`)
		}
	}
	req.Subscribe = sub
	return nil
}

// seekOffsets reads p.seek: {"topic": {"partition": offset, …}, …}, every topic one of topics. A topic given
// twice keeps its last object, as encoding/json would; one left with no partitions is dropped.
func seekOffsets(frame []byte, v span, topics []string) (map[string]map[int32]int64, *Error) {
	if frame[v.start] != '{' {
		return nil, errorf(CodeInvalidPayload, "p.seek must be an object of topics")
	}
	var seek map[string]map[int32]int64
	for topic, tv := range objectMembers(frame, v) {
		if !contains(topics, topic) {
			return nil, errorf(CodeInvalidPayload, "p.seek.%s names a topic that is not in p.t", topic)
		}
		if frame[tv.start] != '{' {
			return nil, errorf(CodeInvalidPayload, "p.seek.%s must be an object of partitions to offsets", topic)
		}
		offsets := make(map[int32]int64)
		for key, ov := range objectMembers(frame, tv) {
			part, ok := partitionKey(key)
			if !ok {
				return nil, errorf(CodeInvalidPayload, "p.seek.%s: partition %q must be a decimal integer from 0 to %d", topic, key, math.MaxInt32)
			}
			off, ok := integer(frame, ov, math.MaxInt64)
			if !ok {
				return nil, errorf(CodeInvalidPayload, "p.seek.%s.%s must be an offset ≥ 0", topic, key)
			}
			offsets[part] = int64(off)
		}
		if seek == nil {
			seek = make(map[string]map[int32]int64)
		}
		seek[topic] = offsets
	}
	for topic, offsets := range seek {
		if len(offsets) == 0 {
			delete(seek, topic)
		}
	}
	if len(seek) == 0 {
		return nil, nil
	}
	return seek, nil
}

// partitionKey reads a partition number written as an object key: a decimal integer without a sign or leading
// zeros (so that one partition has one spelling), within int32.
func partitionKey(key string) (int32, bool) {
	if key == "" || len(key) > 1 && key[0] == '0' || len(key) > 10 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(key); i++ {
		if !isDigit(key[i]) {
			return 0, false
		}
		n = n*10 + int64(key[i]-'0')
	}
	if n > math.MaxInt32 {
		return 0, false
	}
	return int32(n), true
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// decodeUnsubscribe reads p of an unsubscribe: absent, or {"t": [names…]} to leave only those topics. A p that
// is not an object is ignored, as the original ignored every p.
func decodeUnsubscribe(frame []byte, env *envelope, req *Request) *Error {
	if !env.p.present() || frame[env.p.start] != '{' {
		return nil
	}
	if t := env.pm.t; !t.present() || frame[t.start] == 'n' {
		return nil
	}
	var err *Error
	req.Topics, err = topicArray(frame, env.pm.t)
	return err
}

// decodeHealth reads the opt-in p.kafka of a health request. Any other p is ignored, as the original ignored it.
func decodeHealth(frame []byte, env *envelope, req *Request) *Error {
	if !env.p.present() || frame[env.p.start] != '{' {
		return nil
	}
	var p struct {
		Kafka json.RawMessage `json:"kafka"`
	}
	if json.Unmarshal(frame[env.p.start:env.p.end], &p) != nil {
		return nil
	}
	switch string(p.Kafka) {
	case "", "null", "false":
	case "true":
		req.Kafka = true
	default:
		return errorf(CodeInvalidPayload, "p.kafka must be a boolean")
	}
	return nil
}

// topicArray reads p.t of a subscribe, an unsubscribe or a describe: a non-empty array of names.
func topicArray(frame []byte, t span) ([]string, *Error) {
	switch {
	case !t.present():
		return nil, errorf(CodeInvalidPayload, "p.t is missing")
	case frame[t.start] != '[':
		return nil, errorf(CodeInvalidPayload, "p.t must be an array of topic names")
	}
	topics, err := topicNames(frame, t, "p.t")
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, errorf(CodeInvalidPayload, "p.t must list at least one topic")
	}
	return topics, nil
}

// groupName reads p.consumer_group. null counts as absent: the original fell back to its default group for any
// falsy consumer_group.
func groupName(frame []byte, g span) (string, *Error) {
	if !g.present() || frame[g.start] == 'n' {
		return "", nil
	}
	if frame[g.start] != '"' {
		return "", errorf(CodeInvalidPayload, "p.consumer_group must be a string")
	}
	group := text(frame, g)
	if group != "" {
		if err := ValidGroupName(group); err != nil {
			return "", errorf(CodeInvalidTopic, "p.consumer_group: %v", err)
		}
	}
	return group, nil
}

// topicNames reads the array of topic names at v, named field in messages, dropping repeats but keeping order.
func topicNames(frame []byte, v span, field string) ([]string, *Error) {
	var names []string
	// A map rather than a scan of names: a frame of many thousands of names must not cost quadratic time.
	seen := make(map[string]struct{})
	for i, el := range elements(frame, v) {
		if i == MaxTopics {
			return nil, tooManyTopics(field)
		}
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

// MaxTopics bounds the topic names one request may list, whatever a route allows (its own limit is usually
// lower), so that decoding a frame of many thousand names stops before it has built them all.
const MaxTopics = 1000

func tooManyTopics(field string) *Error {
	return errorf(CodeInvalidPayload, "%s lists more than %d topics", field, MaxTopics)
}

// decodeAck reads p of a notif/ack: {"id": N}, or {"t": topic, "part": P, "offset": O}.
func decodeAck(frame []byte, env *envelope, req *Request) *Error {
	switch {
	case !env.p.present():
		return errorf(CodeInvalidPayload, "p is missing")
	case frame[env.p.start] != '{':
		return errorf(CodeInvalidPayload, "p must be an object")
	}
	m := memberMap(frame, env.p)
	id, byID := given(frame, m, "id")
	t, hasT := given(frame, m, "t")
	part, hasPart := given(frame, m, "part")
	offset, hasOffset := given(frame, m, "offset")
	byOffset := hasT || hasPart || hasOffset
	switch {
	case byID && byOffset:
		return errorf(CodeInvalidPayload, `p must give either "id" or "t", "part" and "offset", not both`)
	case byID:
		n, ok := integer(frame, id, math.MaxUint64)
		if !ok {
			return errorf(CodeInvalidPayload, "p.id must be a notification id (an integer ≥ 0)")
		}
		req.AckOf = AckTarget{ByID: true, ID: n}
		return nil
	case !byOffset:
		return errorf(CodeInvalidPayload, `p must give either "id" or "t", "part" and "offset"`)
	case !hasT:
		return errorf(CodeInvalidPayload, "p.t is missing")
	case frame[t.start] != '"':
		return errorf(CodeInvalidPayload, "p.t must be a string")
	}
	target := AckTarget{Topic: text(frame, t)}
	if err := ValidTopicName(target.Topic); err != nil {
		return errorf(CodeInvalidTopic, "p.t: %v", err)
	}
	if !hasPart {
		return errorf(CodeInvalidPayload, "p.part is missing")
	}
	p, ok := integer(frame, part, math.MaxInt32)
	if !ok {
		return errorf(CodeInvalidPayload, "p.part must be a partition number ≥ 0")
	}
	if !hasOffset {
		return errorf(CodeInvalidPayload, "p.offset is missing")
	}
	o, ok := integer(frame, offset, math.MaxInt64)
	if !ok {
		return errorf(CodeInvalidPayload, "p.offset must be an offset ≥ 0")
	}
	target.Partition, target.Offset = int32(p), int64(o)
	req.AckOf = target
	return nil
}

// decodePublish reads p of a publish: {"t": topic, "m": message} and the optional k, h, part, ts, enc and ack,
// all from the spans the frame scan recorded: a publish is the one request sent at a high rate.
func (d *Decoder) decodePublish(frame []byte, env *envelope, req *Request) *Error {
	pm := &env.pm
	switch {
	case !env.p.present():
		return errorf(CodeInvalidPayload, "p is missing")
	case frame[env.p.start] != '{':
		return errorf(CodeInvalidPayload, "p must be an object")
	case !pm.t.present():
		return errorf(CodeInvalidPayload, "p.t is missing")
	case frame[pm.t.start] != '"':
		return errorf(CodeInvalidPayload, "p.t must be a string")
	}
	// Filled in place: Decode drops it on an error, and a copy of it would cost on every publish.
	pub := &req.Publish
	*pub = Publish{Topic: d.topic, Partition: -1, Time: -1}
	// A valid name has nothing to unescape: the same bytes are the same topic.
	if string(frame[pm.t.start+1:pm.t.end-1]) != d.topic || d.topic == "" {
		pub.Topic = text(frame, pm.t)
		if err := ValidTopicName(pub.Topic); err != nil {
			return errorf(CodeInvalidTopic, "p.t: %v", err)
		}
		d.topic = pub.Topic
	}
	m := pm.m
	if !m.present() {
		return errorf(CodeInvalidPayload, "p.m is missing")
	}
	b64 := false
	if e := pm.enc; e.present() && frame[e.start] != 'n' {
		if !isText(frame, e, "base64") {
			return errorf(CodeInvalidPayload, `p.enc must be "base64"`)
		}
		b64 = true
	}
	switch c := frame[m.start]; {
	case c == 'n':
		// null is sent as a record with a null value.
	case b64 && c == '"':
		var err *Error
		if pub.Value, err = base64Bytes(frame, m, "p.m", ""); err != nil {
			return err
		}
	case b64:
		return errorf(CodeInvalidPayload, `p.m must be a string or null when p.enc is "base64"`)
	case c == '"':
		// A string is sent as the text it spells, so "a\nb" becomes three bytes. Never nil: "" is an empty
		// value, not a null one.
		pub.Value = appendUnquoted(make([]byte, 0, m.end-m.start-2), frame[m.start+1:m.end-1])
	default:
		// The original sent toString() of anything else ("[object Object]"); its JSON text is what a client means.
		pub.Value = appendCompact(make([]byte, 0, m.end-m.start), frame[m.start:m.end])
	}
	if k := pm.k; k.present() && frame[k.start] != 'n' {
		if frame[k.start] != '"' {
			return errorf(CodeInvalidPayload, "p.k must be a string or null")
		}
		var err *Error
		if pub.Key, err = stringBytes(frame, k, b64, "p.k", ""); err != nil {
			return err
		}
	}
	if h := pm.h; h.present() && frame[h.start] != 'n' {
		if frame[h.start] != '{' {
			return errorf(CodeInvalidPayload, "p.h must be an object of strings")
		}
		// Room for as many headers as there are colons, within reason: one allocation for the usual few.
		pub.Headers = make([]Header, 0, min(bytes.Count(frame[h.start:h.end], []byte{':'}), 16))
		for key, v := range objectMembers(frame, h) {
			if frame[v.start] != '"' {
				return errorf(CodeInvalidPayload, "p.h.%s must be a string", key)
			}
			value, err := stringBytes(frame, v, b64, "p.h.", key)
			if err != nil {
				return err
			}
			pub.Headers = append(pub.Headers, Header{Key: key, Value: value})
		}
		if len(pub.Headers) == 0 {
			pub.Headers = nil
		}
	}
	if v := pm.part; v.present() && frame[v.start] != 'n' {
		n, ok := integer(frame, v, math.MaxInt32)
		if !ok {
			return errorf(CodeInvalidPayload, "p.part must be a partition number ≥ 0")
		}
		pub.Partition = int32(n)
	}
	if v := pm.ts; v.present() && frame[v.start] != 'n' {
		n, ok := integer(frame, v, math.MaxInt64)
		if !ok {
			return errorf(CodeInvalidPayload, "p.ts must be a timestamp in ms ≥ 0")
		}
		pub.Time = int64(n)
	}
	ack, ok := optionalBool(frame, pm.ack)
	if !ok {
		return errorf(CodeInvalidPayload, "p.ack must be a boolean")
	}
	topAck, ok := optionalBool(frame, env.ack)
	if !ok {
		return errorf(CodeInvalidPayload, "ack must be a boolean")
	}
	req.Ack = ack || topAck
	return nil
}

// stringBytes returns the bytes of the string at v: its text, or with b64 the bytes its base64 spells. Messages
// name the field field+key, put together only for a message.
func stringBytes(frame []byte, v span, b64 bool, field, key string) ([]byte, *Error) {
	if b64 {
		return base64Bytes(frame, v, field, key)
	}
	return appendUnquoted(make([]byte, 0, v.end-v.start-2), frame[v.start+1:v.end-1]), nil
}

// base64Bytes decodes the string at v as standard base64, padded or not (RFC 4648 §4, §3.2), named field+key in
// messages. The result is never nil: "" is an empty value.
func base64Bytes(frame []byte, v span, field, key string) ([]byte, *Error) {
	src := frame[v.start+1 : v.end-1]
	if bytes.IndexByte(src, '\\') >= 0 {
		src = appendUnquoted(nil, src)
	}
	dst := make([]byte, base64.RawStdEncoding.DecodedLen(len(src)))
	n, err := base64.StdEncoding.Decode(dst, src)
	if err != nil && bytes.IndexByte(src, '=') < 0 {
		n, err = base64.RawStdEncoding.Decode(dst, src)
	}
	if err != nil {
		return nil, errorf(CodeInvalidPayload, "%s%s is not valid base64: %v", field, key, err)
	}
	return dst[:n], nil
}

// given returns the member key of m unless it is absent or null.
func given(frame []byte, m map[string]span, key string) (span, bool) {
	v, ok := m[key]
	return v, ok && frame[v.start] != 'n'
}

// boolean returns the boolean at v; ok is false when v is not a boolean.
func boolean(frame []byte, v span) (b, ok bool) {
	switch frame[v.start] {
	case 't':
		return true, true
	case 'f':
		return false, true
	}
	return false, false
}

// optionalBool returns the boolean at v, false when v is absent or null; ok is false when v is something else.
func optionalBool(frame []byte, v span) (b, ok bool) {
	if !v.present() || frame[v.start] == 'n' {
		return false, true
	}
	return boolean(frame, v)
}

// isText reports whether the value at v is the string s, however it is escaped.
func isText(frame []byte, v span, s string) bool {
	if frame[v.start] != '"' {
		return false
	}
	raw := frame[v.start+1 : v.end-1]
	return string(raw) == s || bytes.IndexByte(raw, '\\') >= 0 && text(frame, v) == s
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
var words = [...]string{"notif", "create", "topic", "list", "subscribe", "unsubscribe", "health", "ack", "describe", "delete", "ping"}

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
