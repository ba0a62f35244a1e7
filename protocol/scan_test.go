package protocol

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"testing"
)

// TestScanMatchesValid holds the scanner to encoding/json: a frame is invalid_json exactly when json.Valid says
// so.
func TestScanMatchesValid(t *testing.T) {
	frames := []string{
		``, ` `, `{}`, `[]`, `{ }`, `[ ]`, `{"a":1}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:1}`,
		`{`, `[`, `{"a`, `{"a" `, `{"a":1`, `{"a":1,`, `[1`, `[1,`, `"\`, `"\u12`,
		`[1,]`, `[,1]`, `[1 2]`, `[1,,2]`, `{"a":1 "b":2}`, `{"a":[}`, `{"a":{]}`,
		`0`, `-0`, `01`, `-`, `-a`, `1.`, `1.5`, `.5`, `1e`, `1e5`, `1E+5`, `1e-05`, `1.5e`, `1e+`, `+1`, `0x1`,
		`-01`, `123456789012345678901234567890`, `1.0e1.0`,
		`true`, `tru`, `truex`, `false`, `fals`, `null`, `nul`, `NULL`,
		`""`, `"`, `"\"`, `"\\"`, `"\/"`, `"\u00e9"`, `"\u00e"`, `"\u00eg"`, `"\U00e9"`, `"\x"`, `"\'"`,
		"\"\t\"", "\"\x7f\"", "\"\xff\"", "\"\x00\"",
		// Strings as long as a word or more, ending inside or at the end of one: the scanner reads eight bytes at
		// a time.
		`"abcdefgh`, `"abcdefg`, `"abcdefghi`, `"abcdefgh"`, `"abcdefghijklmno"`, `"abcdefghijklmnop"`,
		`"abcdefgh\`, `"abcdefgh\"`, `"abcdefg\"x"`, `"abcdefgh\u004`, `"abcdefgh\u0041"`,
		"\"abcdefg\x1f\"", "\"abcdefgh\x1f\"", "\"\x1fabcdefgh\"", "\"\xa2\xdc\xe0\x80\xff\xfe\x9f\xa0abc\"",
		"\"abcdefghijklmn\x7f\x80\"", "[\"abcdefgh\",\"ijklmnop\"]",
		"\"\\nabcdefgh\x01\"", "\"\\nabcdefghi\x01\"", "\"\\nabcdefgh", "\"\\nabcdefghijklmnop", "\"\\nabcdefg\\\"",
		`"ab\"cd\"efghijklmnopqrstu\"vw\u0041xyz0123456789\\"`, `"ab\"cd\"efghijklmnopqrstu\"vw\u004`,
		"\ufeff{}", "{}\x00", " \t\r\n{}\n", "\v{}", "{}\f",
		`{"a":[1,{"b":[true,false,null,"x"]}],"c":-1.25E-7}`,
		strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
		strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
		strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
		strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
		`{"p":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`,
		`{"p":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`,
		`{"p":{"m":` + strings.Repeat("[", maxDepth-2) + strings.Repeat("]", maxDepth-2) + `}}`,
		`{"p":{"m":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}}`,
	}
	for _, frame := range frames {
		name := frame
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			_, got := new(envelope).scan([]byte(frame))
			if want := json.Valid([]byte(frame)); got != want {
				t.Errorf("got valid %v, want %v", got, want)
			}
		})
	}
}

// TestUnquoteMatchesEncodingJSON holds string decoding to encoding/json's.
func TestUnquoteMatchesEncodingJSON(t *testing.T) {
	strs := []string{
		`""`, `"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u0000\u001f\u0041\u00e9\u20ac"`,
		`"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`, `"\ude00\ud83d"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`,
		`"\uDBFF\uDFFF"`, "\"\xff\"", "\"a\xc3\"", "\"\xed\xa0\x80\"", "\"é😀\"",
	}
	for _, s := range strs {
		t.Run(s, func(t *testing.T) {
			var want string
			if err := json.Unmarshal([]byte(s), &want); err != nil {
				t.Fatal(err)
			}
			if got := string(appendUnquoted(nil, []byte(s[1:len(s)-1]))); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// TestNotPlain holds the eight-at-a-time search to strPlain: in a word of plain bytes with c at position at, and
// any byte after it, the lowest mark falls on c exactly when c is not plain.
func TestNotPlain(t *testing.T) {
	for c := range 256 {
		for at := range 8 {
			for _, after := range []byte{'a', '"', '\\', 0x00, 0x1f, 0x21, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff} {
				word := []byte("aaaaaaaa")
				word[at] = byte(c)
				if at < 7 {
					word[at+1] = after
				}
				m := notPlain(binary.LittleEndian.Uint64(word))
				want := -1
				for i, b := range word {
					if !strPlain[b] {
						want = i
						break
					}
				}
				got := -1
				if m != 0 {
					got = bits.TrailingZeros64(m) / 8
				}
				if got != want {
					t.Fatalf("%q: got the first byte not plain at %d, want %d", word, got, want)
				}
			}
		}
	}
}
