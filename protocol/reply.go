package protocol

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"
)

// TopicPartition is one entry of a topic list reply.
type TopicPartition struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
}

// Health is the payload of a health reply.
type Health struct {
	Consumers []Consumer `json:"consumers"`
	// Kafka is there only when the request asked for it ("p": {"kafka": true}).
	Kafka *KafkaHealth `json:"kafka,omitempty"`
}

// KafkaHealth says whether the route's Kafka cluster answers a metadata request.
type KafkaHealth struct {
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// Consumer is one open connection in a health reply.
type Consumer struct {
	WS     uint64   `json:"ws"`
	Topics []string `json:"topics"` // encodes as [] never null
}

// MarshalJSON encodes Consumers as [] rather than null when there are none, so a client can always iterate it.
func (h Health) MarshalJSON() ([]byte, error) {
	type plain Health
	if h.Consumers == nil {
		h.Consumers = []Consumer{}
	}
	return json.Marshal(plain(h))
}

// MarshalJSON encodes Topics as [] when the connection has no subscription, as the original did.
func (c Consumer) MarshalJSON() ([]byte, error) {
	type plain Consumer
	if c.Topics == nil {
		c.Topics = []string{}
	}
	return json.Marshal(plain(c))
}

// Receipt is the payload of the reply to a publish that asked for one with "ack": true: where Kafka stored it.
type Receipt struct {
	Topic     string `json:"t"`
	Partition int32  `json:"part"`
	Offset    int64  `json:"offset"`
	Time      int64  `json:"ts"` // the record's timestamp, ms since the epoch
}

// TopicResult is the outcome for one topic of a create (or delete) that lists per-topic results: S is 0 or 1 as
// the reply's s, and Error says why when S is 1.
type TopicResult struct {
	Name  string        `json:"name"`
	S     int           `json:"s"`
	Error *ErrorPayload `json:"error,omitempty"`
}

// ErrorPayload is a failure's p, {"code", "message"}, as a value to nest inside other payloads.
type ErrorPayload struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// TopicDescription is one topic of a describe reply.
type TopicDescription struct {
	Topic      string                 `json:"topic"`
	Partitions []PartitionDescription `json:"partitions"` // encodes as [] never null
}

// MarshalJSON encodes Partitions as [] rather than null, so that a client can always iterate it.
func (d TopicDescription) MarshalJSON() ([]byte, error) {
	type plain TopicDescription
	if d.Partitions == nil {
		d.Partitions = []PartitionDescription{}
	}
	return json.Marshal(plain(d))
}

// PartitionDescription is one partition of a describe reply: its leader broker, its low and high watermarks and,
// when the request named a consumer group, the group's committed offset and lag (nil: left out).
type PartitionDescription struct {
	Partition int32  `json:"partition"`
	Leader    int32  `json:"leader"`
	Low       int64  `json:"low"`
	High      int64  `json:"high"`
	Committed *int64 `json:"committed,omitempty"`
	Lag       *int64 `json:"lag,omitempty"`
}

// Reply encodes a success reply: {"id":id,"refid":<req.ID verbatim>,"t":req.Type,"a":req.Action,"s":0,"p":payload}
// in exactly that key order. refid is left out when req.ID is nil, a when req.Action is "", p when payload is nil.
// Payloads are this package's types and slices of strings; one that encoding/json cannot encode is a bug in the
// caller, and Reply panics.
func Reply(id uint64, req *Request, payload any) []byte {
	var p []byte
	if payload != nil {
		var err error
		if p, err = json.Marshal(payload); err != nil {
			panic(fmt.Sprintf("protocol: encoding reply payload %T: %v", payload, err))
		}
	}
	b := make([]byte, 0, envelopeSize(req)+len(p))
	b = appendEnvelope(b, id, req, req.Type, '0')
	if p != nil {
		b = append(b, `,"p":`...)
		b = append(b, p...)
	}
	return append(b, '}')
}

// ErrorReply encodes a failure reply: same envelope, "s":1, "p":{"code":…,"message":…}. When req.Type is ""
// (the frame could not be parsed as an object with a string t) the reply's t is "error".
func ErrorReply(id uint64, req *Request, err *Error) []byte {
	return ErrorReplyWith(id, req, err, nil)
}

// ErrorReplyWith encodes a failure reply whose p carries, after code and message, the members of extra in the
// order of their keys, each value encoded by encoding/json: {"code":…,"message":…,"topics":[…]}. With no extra
// it is ErrorReply. A key "code" or "message", or a value encoding/json cannot encode, is a bug in the caller, and
// ErrorReplyWith panics.
func ErrorReplyWith(id uint64, req *Request, err *Error, extra map[string]any) []byte {
	t := req.Type
	if t == "" {
		t = "error"
	}
	b := make([]byte, 0, envelopeSize(req)+len(err.Code)+len(err.Message)+32)
	b = appendEnvelope(b, id, req, t, '1')
	b = append(b, `,"p":{"code":`...)
	b = appendString(b, err.Code)
	b = append(b, `,"message":`...)
	b = appendString(b, err.Message)
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if k == "code" || k == "message" {
			panic(fmt.Sprintf("protocol: error reply member %q would repeat the error's own", k))
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, merr := json.Marshal(extra[k])
		if merr != nil {
			panic(fmt.Sprintf("protocol: encoding error reply member %q of type %T: %v", k, extra[k], merr))
		}
		b = append(b, ',')
		b = appendString(b, k)
		b = append(b, ':')
		b = append(b, v...)
	}
	return append(b, "}}"...)
}

// envelopeSize is room for the envelope of a reply to req, so that building one allocates once.
func envelopeSize(req *Request) int {
	return len(`{"id":,"refid":,"t":"","a":"","s":0,"p":}`) + 20 + len(req.ID) + len(req.Type) + len(req.Action)
}

// appendEnvelope appends a reply's members up to and including s, leaving the object open for p.
func appendEnvelope(b []byte, id uint64, req *Request, t string, s byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	if req.ID != nil {
		b = append(b, `,"refid":`...)
		b = append(b, req.ID...)
	}
	b = append(b, `,"t":`...)
	b = appendString(b, t)
	if req.Action != "" {
		b = append(b, `,"a":`...)
		b = appendString(b, req.Action)
	}
	b = append(b, `,"s":`...)
	return append(b, s)
}

// Assigned encodes the frame that tells a subscription with p.assignments which partitions the socket now reads
// and the offset each starts from (the next one it delivers):
//
//	{"id":id,"t":"topic","a":"assigned","s":0,"p":{"<topic>":{"<partition>":<offset>,…},…}}
//
// It answers no request, so it has no refid. Partitions not listed are not read by the socket (any more).
func Assigned(id uint64, starts map[string]map[int32]int64) []byte {
	p, err := json.Marshal(starts)
	if err != nil {
		panic(fmt.Sprintf("protocol: encoding assignments: %v", err))
	}
	b := appendEnvelope(make([]byte, 0, 64+len(p)), id, &Request{Action: "assigned"}, "topic", '0')
	b = append(b, `,"p":`...)
	b = append(b, p...)
	return append(b, '}')
}

// Notification is one consumed record to deliver. With Meta false only ID and Value are sent, exactly as the
// original sent them; with Meta (a subscribe's p.meta) the record's topic, partition, offset, key, headers and
// timestamp follow.
type Notification struct {
	ID        uint64
	Value     []byte // nil encodes as "p":null
	Meta      bool
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte   // nil encodes as "k":null
	Headers   []Header // nil encodes as "h":{}
	Time      int64    // ms since the epoch
}

// notificationSize is the most one notification adds besides its value's bytes, when nothing needs escaping.
const notificationSize = len(`,{"id":,"t":"notif","p":""}`) + 20

// metaSize is the most the metadata of one notification adds besides its topic, key and headers.
const metaSize = len(`,"topic":"","part":,"offset":,"k":null,"h":{},"ts":,"enc":"base64"`) + 11 + 20 + 20

// AppendNotifications appends one frame: a JSON array [{"id":N,"t":"notif","p":"<value as a JSON string>"},…].
// The value is never parsed: it is always a JSON string (or null), as the original sent it. A notification with
// Meta is
//
//	{"id":N,"t":"notif","p":<value>,"topic":"…","part":P,"offset":O,"k":<key or null>,"h":{"key":<value>,…},"ts":T}
//
// where the headers keep their order (repeated keys included); when the value, the key or a header value is not
// UTF-8, which a JSON string cannot carry, all three are standard base64 instead (RFC 4648 §4) and the element
// ends with "enc":"base64", the same marker a publish uses.
func AppendNotifications(dst []byte, ns []Notification) []byte {
	n := 2
	for i := range ns {
		x := &ns[i]
		n += notificationSize + len(x.Value)
		if x.Meta {
			// Room for base64, which is the longer form: 4 bytes for every 3.
			n += metaSize + len(x.Value)/3 + len(x.Topic) + len(x.Key)*4/3 + 4
			for _, h := range x.Headers {
				n += len(h.Key) + len(h.Value)*4/3 + 10
			}
		}
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, '[')
	for i := range ns {
		x := &ns[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendUint(dst, x.ID, 10)
		dst = append(dst, `,"t":"notif","p":`...)
		if x.Meta {
			dst = appendMeta(dst, x)
			continue
		}
		if x.Value == nil {
			dst = append(dst, "null"...)
		} else {
			dst = appendString(dst, x.Value)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendMeta appends a Meta notification from its p on, closing the object.
func appendMeta(dst []byte, x *Notification) []byte {
	b64 := !utf8.Valid(x.Value) || !utf8.Valid(x.Key)
	for i := 0; i < len(x.Headers) && !b64; i++ {
		b64 = !utf8.Valid(x.Headers[i].Value)
	}
	dst = appendBytes(dst, x.Value, b64)
	dst = append(dst, `,"topic":`...)
	dst = appendString(dst, x.Topic)
	dst = append(dst, `,"part":`...)
	dst = strconv.AppendInt(dst, int64(x.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, x.Offset, 10)
	dst = append(dst, `,"k":`...)
	dst = appendBytes(dst, x.Key, b64)
	dst = append(dst, `,"h":{`...)
	for i, h := range x.Headers {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, h.Key)
		dst = append(dst, ':')
		dst = appendBytes(dst, h.Value, b64)
	}
	dst = append(dst, `},"ts":`...)
	dst = strconv.AppendInt(dst, x.Time, 10)
	if b64 {
		dst = append(dst, `,"enc":"base64"`...)
	}
	return append(dst, '}')
}

// appendBytes appends b as a JSON string of its text, or with b64 of its standard base64; nil is null.
func appendBytes(dst, b []byte, b64 bool) []byte {
	switch {
	case b == nil:
		return append(dst, "null"...)
	case b64:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"')
	default:
		return appendString(dst, b)
	}
}

// strSafe marks the ASCII bytes a JSON string may carry as they are.
var strSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as an encoding/json Encoder with SetEscapeHTML(false) writes
// it: short escapes for \b \f \n \r \t, \u00XX for other control characters, \ufffd for each byte that is not
// UTF-8, and \u2028 and \u2029 escaped so that the text is also a JavaScript literal before ES2019. <, > and &
// stay as they are: these frames are never embedded in HTML, and the original (JSON.stringify) left them too.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most values are long runs of plain ASCII: find the next byte that is not, eight bytes at a time while
		// there are eight.
		if len(s)-i >= 8 {
			m := special8(load8(s, i))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) / 8
		} else if c := s[i]; c < utf8.RuneSelf && strSafe[c] {
			i++
			continue
		}
		if c := s[i]; c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// lsb and msb are words with the lowest and the highest bit of each byte set.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// load8 reads s[i:i+8] as a little-endian word; the compiler merges the byte loads into one.
func load8[S string | []byte](s S, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// special8 returns a word whose lowest set bit lies in the first of the eight bytes of x that does not go into a
// JSON string as it is: a control character, '"', '\\' or a byte from 0x80 up; 0 when there is none.
// (v-lsb)&^v&msb marks the bytes of v that are zero and (v-n*lsb)&^v&msb those below n (n <= 0x80); a borrow can
// mark a byte wrongly, but only above one rightly marked, so the lowest mark is exact.
func special8(x uint64) uint64 {
	q := x ^ lsb*'"'
	b := x ^ lsb*'\\'
	return ((x-lsb*0x20)&^x | (q-lsb)&^q | (b-lsb)&^b | x) & msb
}
