package protocol

import (
	"encoding/json"
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
