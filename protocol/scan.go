package protocol

import (
	"bytes"
	"encoding/binary"
	"iter"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth mirrors encoding/json's maxNestingDepth, so a frame is invalid_json exactly when json.Valid rejects it.
const maxDepth = 10000

// span is where a value lies in the frame: frame[start:end]. The zero span is an absent member; a present value
// never ends at 0, since at least the frame's '{' comes before it.
type span struct{ start, end int }

func (v span) present() bool { return v.end > 0 }

// envelope holds where the members Decode reads lie in one frame. The members of p are recorded during the same
// pass as id, t, a and p, so a publish frame is read once whatever order its keys come in.
type envelope struct {
	id, t, a, p span
	ack         span // the top-level "ack" of a publish
	pm          payloadMembers
}

// payloadMembers are the members of p that Decode reads, when p is an object: the publish fields, so that a
// publish is read in one pass, and the two members of a subscribe that have always been checked first.
type payloadMembers struct {
	t, m     span // p.t and p.m
	group    span // p.consumer_group
	k, h     span // p.k and p.h
	part, ts span // p.part and p.ts
	enc, ack span // p.enc and p.ack
}

// slot returns where the member key of p is recorded, or nil when Decode does not read it. A switch on the
// length and the first byte, rather than on the key as a string: every member of every publish comes through
// here, and Go compiles a string switch of this many cases into a binary search of string comparisons.
func (pm *payloadMembers) slot(key []byte) *span {
	switch len(key) {
	case 1:
		switch key[0] {
		case 't':
			return &pm.t
		case 'm':
			return &pm.m
		case 'k':
			return &pm.k
		case 'h':
			return &pm.h
		}
	case 2:
		if key[0] == 't' && key[1] == 's' {
			return &pm.ts
		}
	case 3:
		switch string(key) {
		case "enc":
			return &pm.enc
		case "ack":
			return &pm.ack
		}
	case 4:
		if string(key) == "part" {
			return &pm.part
		}
	case len("consumer_group"):
		if string(key) == "consumer_group" {
			return &pm.group
		}
	}
	return nil
}

// scan validates frame as JSON and records the envelope's members (the last of duplicate keys wins, as with
// encoding/json). valid is false when frame is not JSON; object is false when it is JSON but not an object.
func (e *envelope) scan(frame []byte) (object, valid bool) {
	s := scanner{data: frame}
	s.space()
	if s.i < len(frame) && frame[s.i] == '{' {
		object = true
		valid = s.members(func(key []byte) bool {
			start := s.i
			var ok bool
			switch string(key) {
			case "p":
				// A later p replaces an earlier one wholesale, members included.
				if e.p.present() {
					e.pm = payloadMembers{}
				}
				if start < len(frame) && frame[start] == '{' {
					ok = s.members(func(key []byte) bool {
						start := s.i
						ok := s.value()
						if v := e.pm.slot(key); v != nil {
							*v = span{start, s.i}
						}
						return ok
					})
				} else {
					ok = s.value()
				}
				e.p = span{start, s.i}
			default:
				ok = s.value()
				switch string(key) {
				case "id":
					e.id = span{start, s.i}
				case "t":
					e.t = span{start, s.i}
				case "a":
					e.a = span{start, s.i}
				case "ack":
					e.ack = span{start, s.i}
				}
			}
			return ok
		})
	} else {
		valid = s.value()
	}
	s.space()
	return object, valid && s.i == len(frame)
}

// elements yields the index and span of each element of the array at v. The frame scan has already validated
// the array, so the scanner's results need no checking here.
func elements(frame []byte, v span) iter.Seq2[int, span] {
	return func(yield func(int, span) bool) {
		s := scanner{data: frame[:v.end], i: v.start + 1}
		s.space()
		for n := 0; frame[s.i] != ']'; n++ {
			start := s.i
			s.value()
			if !yield(n, span{start, s.i}) {
				return
			}
			s.space()
			if frame[s.i] == ',' {
				s.i++
				s.space()
			}
		}
	}
}

// scanner is a validating JSON reader that only finds where values lie; it accepts exactly what json.Valid
// accepts (RFC 8259, with bytes that are not UTF-8 allowed inside strings as encoding/json allows them).
type scanner struct {
	data  []byte
	i     int
	depth int
}

func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value moves past one value starting at s.i, reporting whether it is well-formed.
func (s *scanner) value() bool {
	if s.i >= len(s.data) {
		return false
	}
	switch s.data[s.i] {
	case '{':
		return s.members(nil)
	case '[':
		return s.array(nil)
	case '"':
		return s.str()
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

// members moves past the object at s.i. For each member it calls member with the key (unescaped) and s.i at the
// start of the value, which member must move past; a nil member skips every value.
func (s *scanner) members(member func(key []byte) bool) bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++
	s.space()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return false
		}
		start := s.i
		if !s.str() {
			return false
		}
		key := s.data[start+1 : s.i-1]
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return false
		}
		s.i++
		s.space()
		var ok bool
		if member == nil {
			ok = s.value()
		} else {
			ok = member(unquoteKey(key))
		}
		if !ok {
			return false
		}
		s.space()
		if s.i >= len(s.data) {
			return false
		}
		switch s.data[s.i] {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// unquoteKey returns the key a raw, validated key spells: encoding/json matches "\u0074" as "t", and so do we.
func unquoteKey(raw []byte) []byte {
	for _, c := range raw {
		if c == '\\' {
			return appendUnquoted(nil, raw)
		}
	}
	return raw
}

// array moves past the array at s.i, calling element, unless it is nil, after each element.
func (s *scanner) array(element func()) bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++
	s.space()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		if element != nil {
			element()
		}
		s.space()
		if s.i >= len(s.data) {
			return false
		}
		switch s.data[s.i] {
		case ',':
			s.i++
			s.space()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// strPlain marks the bytes that stand for themselves inside a JSON string: everything but control characters,
// the quote and the backslash (RFC 8259 §7). Bytes from 0x80 up are accepted unchecked, as encoding/json does.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Words of eight copies of one byte, for finding a byte in eight at once (Hacker's Delight §6-1; Sean Anderson's
// "Bit Twiddling Hacks", "Determine if a word has a zero byte").
const (
	ones       = 0x0101010101010101
	highBits   = 0x8080808080808080
	quotes     = '"' * ones
	backslashs = '\\' * ones
	controls   = 0x20 * ones
)

// notPlain marks the first byte of w, read little-endian, that strPlain does not: its high bit is the lowest one
// set, and the result is 0 when all eight are plain. Bits above the first mark may be wrong (a borrow runs on
// into the next byte), so only the lowest is read.
func notPlain(w uint64) uint64 {
	q, b := w^quotes, w^backslashs
	return ((q-ones)&^q | (b-ones)&^b | (w-controls)&^w) & highBits
}

// str moves past the string at s.i. It searches eight bytes at a time from the start of the string and after
// every eight plain bytes in a row, one at a time otherwise: text is mostly long runs of plain bytes, while a JSON
// document sent as a string has an escape every few bytes, where a wide search would cost more than it skips.
func (s *scanner) str() bool {
	d := s.data
	i := s.i + 1
	for {
		for len(d)-i >= 8 {
			if m := notPlain(binary.LittleEndian.Uint64(d[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for {
			stop := min(i+8, len(d))
			for i < stop && strPlain[d[i]] {
				i++
			}
			if i == stop {
				break // eight plain bytes in a row, or the end of the data
			}
			switch d[i] {
			case '"':
				s.i = i + 1
				return true
			case '\\':
				if i+1 >= len(d) {
					return false
				}
				switch d[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
				case 'u':
					if i+6 > len(d) || hex4(d[i+2:i+6]) < 0 {
						return false
					}
					i += 6
				default:
					return false
				}
			default: // a control character
				return false
			}
		}
		if i == len(d) {
			return false
		}
	}
}

func (s *scanner) literal(word string) bool {
	if len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// number moves past -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (RFC 8259 §6).
func (s *scanner) number() bool {
	d := s.data
	i := s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return false
	case d[i] == '0':
		i++
	case '1' <= d[i] && d[i] <= '9':
		i = digits(d, i+1)
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		if i++; i >= len(d) || !isDigit(d[i]) {
			return false
		}
		i = digits(d, i)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		if i++; i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return false
		}
		i = digits(d, i)
	}
	s.i = i
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the index of the first byte from i on that is not a digit.
func digits(d []byte, i int) int {
	for i < len(d) && isDigit(d[i]) {
		i++
	}
	return i
}

// hex4 returns the value of four hex digits, or -1 when b is not that.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendUnquoted appends the text of the validated string raw (without its quotes) as encoding/json decodes it:
// a byte that is not UTF-8 and a lone UTF-16 surrogate both become U+FFFD.
func appendUnquoted(dst, raw []byte) []byte {
	// Most strings have nothing to unescape or replace: one vectorised search and one copy then.
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return append(dst, raw...)
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			if raw[i+1] != 'u' {
				dst = append(dst, unescape[raw[i+1]])
				i += 2
				continue
			}
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by an escaped low one is one character; anything else is not text.
				if len(raw)-i >= 6 && raw[i] == '\\' && raw[i+1] == 'u' {
					if pair := utf16.DecodeRune(r, hex4(raw[i+2:])); pair != utf8.RuneError {
						dst = utf8.AppendRune(dst, pair)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		case c < utf8.RuneSelf:
			j := i + 1
			for j < len(raw) && raw[j] < utf8.RuneSelf && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, r)
			} else {
				dst = append(dst, raw[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

// unescape maps the letter after a backslash to the byte it stands for (RFC 8259 §7), \u aside.
var unescape = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// appendCompact appends the validated value v with the whitespace between its tokens removed.
func appendCompact(dst, v []byte) []byte {
	inString := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inString:
			switch c {
			case '\\':
				dst = append(dst, c)
				i++
				c = v[i]
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// appendEchoable appends the validated value v with each byte that is not UTF-8 replaced by the escape \ufffd.
// Such bytes can only sit inside strings, where the escape means what encoding/json would read anyway; without
// it, echoing v would make a text frame that is not UTF-8, which a WebSocket client must fail (RFC 6455 §8.1).
func appendEchoable(dst, v []byte) []byte {
	if utf8.Valid(v) {
		return append(dst, v...)
	}
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, v[i:i+size]...)
		}
		i += size
	}
	return dst
}

// objectMembers yields the key and value of each member of the validated object at v, in the order sent, repeated
// keys included. Keys are read as encoding/json reads them, so a byte that is not UTF-8 becomes U+FFFD: they end up
// in Kafka as strings (header keys, config names) and in messages.
func objectMembers(frame []byte, v span) iter.Seq2[string, span] {
	return func(yield func(string, span) bool) {
		s := scanner{data: frame[:v.end], i: v.start}
		s.members(func(key []byte) bool {
			start := s.i
			s.value()
			return yield(validText(key), span{start, s.i})
		})
	}
}

// validText returns b with each byte that is not UTF-8 replaced by U+FFFD, as appendUnquoted does.
func validText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	dst := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = append(dst, b[i:i+size]...)
		}
		i += size
	}
	return string(dst)
}

// memberMap returns the members of the validated object at v by key, the last of repeated keys winning as with
// encoding/json (and as scan does for the envelope).
func memberMap(frame []byte, v span) map[string]span {
	m := make(map[string]span)
	for k, el := range objectMembers(frame, v) {
		m[k] = el
	}
	return m
}

// integer returns the number at v when it is an integer from 0 to limit written without a fraction or an exponent,
// which is what encoding/json accepts for an unsigned integer field; -0 is 0, as encoding/json reads it.
func integer(frame []byte, v span, limit uint64) (uint64, bool) {
	d := frame[v.start:v.end]
	neg := d[0] == '-'
	if neg {
		d = d[1:]
	}
	if len(d) == 0 || !isDigit(d[0]) {
		return 0, false
	}
	var n uint64
	for _, c := range d {
		if !isDigit(c) {
			return 0, false
		}
		c -= '0'
		if n > (limit-uint64(c))/10 {
			return 0, false
		}
		n = n*10 + uint64(c)
	}
	if neg && n != 0 {
		return 0, false
	}
	return n, true
}
