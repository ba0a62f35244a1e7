package protocol

import (
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

// Notification is one consumed record to deliver.
type Notification struct {
	ID    uint64
	Value []byte // nil encodes as "p":null
}

// notificationSize is the most one notification adds besides its value's bytes, when nothing needs escaping.
const notificationSize = len(`,{"id":,"t":"notif","p":""}`) + 20

// AppendNotifications appends one frame: a JSON array [{"id":N,"t":"notif","p":"<value as a JSON string>"},…].
// The value is never parsed: it is always a JSON string (or null), as the original sent it.
func AppendNotifications(dst []byte, ns []Notification) []byte {
	n := 2
	for _, x := range ns {
		n += notificationSize + len(x.Value)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, '[')
	for i, x := range ns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendUint(dst, x.ID, 10)
		dst = append(dst, `,"t":"notif","p":`...)
		if x.Value == nil {
			dst = append(dst, "null"...)
		} else {
			dst = appendString(dst, x.Value)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
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
