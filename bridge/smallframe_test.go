package bridge

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// clientFrame encodes one frame as a client sends it (RFC 6455 §5.2): first is the byte of FIN, RSV and opcode;
// masked says whether the payload is masked.
func clientFrame(first byte, payload []byte, masked bool) []byte {
	f := []byte{first}
	var maskFlag byte
	if masked {
		maskFlag = maskBit
	}
	switch n := len(payload); {
	case n <= len7Max:
		f = append(f, maskFlag|byte(n))
	case n <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, maskFlag|len16Follows), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, maskFlag|127), uint64(n))
	}
	if !masked {
		return append(f, payload...)
	}
	key := [maskKeyLen]byte{0x37, 0xfa, 0x21, 0x3d}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i%maskKeyLen])
	}
	return f
}

// The frames the read loop reads without gorilla are exactly whole, masked text and binary messages that fit the
// reader and the limit; for every other frame nothing is consumed, so that gorilla reads it (and answers a
// protocol error or a frame over max_frame_bytes as it always has).
func TestReadSmallFrame(t *testing.T) {
	const readerSize = 1024
	text := []byte(`{"t":"notif","a":"create","p":{"t":"topic","m":"hello"}}`)
	long := []byte(`{"t":"health","pad":"` + strings.Repeat("x", 500) + `"}`)
	for _, tt := range []struct {
		name  string
		frame []byte
		limit int64
		want  []byte // the payload read, nil when the frame is left to gorilla
	}{
		{"text", clientFrame(0x81, text, true), 0, text},
		{"binary, read like text", clientFrame(0x82, text, true), 0, text},
		{"empty", clientFrame(0x81, nil, true), 0, []byte{}},
		{"two-byte length", clientFrame(0x81, long, true), 0, long},
		{"at the limit", clientFrame(0x81, text, true), int64(len(text)), text},
		{"over the limit: gorilla closes with 1009", clientFrame(0x81, text, true), int64(len(text)) - 1, nil},
		{"larger than the reader", clientFrame(0x81, bytes.Repeat([]byte("x"), readerSize), true), 0, nil},
		{"eight-byte length", clientFrame(0x81, bytes.Repeat([]byte("x"), 70000), true), 0, nil},
		{"first fragment", clientFrame(0x01, text, true), 0, nil},
		{"continuation", clientFrame(0x80, text, true), 0, nil},
		{"unmasked: a protocol error", clientFrame(0x81, text, false), 0, nil},
		{"RSV1 set", clientFrame(0xc1, text, true), 0, nil},
		{"ping", clientFrame(0x89, []byte("p"), true), 0, nil},
		{"pong", clientFrame(0x8a, nil, true), 0, nil},
		{"close", clientFrame(0x88, []byte{0x03, 0xe8}, true), 0, nil},
		{"reserved opcode", clientFrame(0x83, text, true), 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := clientFrame(0x89, nil, true) // what follows must stay unread
			br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(tt.frame), bytes.NewReader(next)), readerSize)
			payload, n, err := readSmallFrame(br, tt.limit)
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if tt.want == nil {
				if n != 0 || payload != nil {
					t.Fatalf("got %d bytes read (payload %q), want the frame left to gorilla", n, payload)
				}
				rest, _ := io.ReadAll(br)
				if !bytes.Equal(rest, append(tt.frame, next...)) {
					t.Fatalf("got %d bytes left in the reader, want all %d", len(rest), len(tt.frame)+len(next))
				}
				return
			}
			if !bytes.Equal(payload, tt.want) || n != len(tt.frame) {
				t.Fatalf("got payload %q of a %d-byte frame, want %q of %d", payload, n, tt.want, len(tt.frame))
			}
			if _, err := br.Discard(n); err != nil {
				t.Fatal(err)
			}
			if rest, _ := io.ReadAll(br); !bytes.Equal(rest, next) {
				t.Fatalf("got %x after the frame, want %x", rest, next)
			}
		})
	}
}

// A connection that fails or ends inside a frame reports it, as gorilla would have.
func TestReadSmallFrameTruncated(t *testing.T) {
	frame := clientFrame(0x81, []byte(`{"t":"health","pad":"`+strings.Repeat("x", 200)+`"}`), true)
	for _, cut := range []int{0, 1, 2, 3, 5, len(frame) - 1} {
		br := bufio.NewReaderSize(bytes.NewReader(frame[:cut]), 1024)
		if _, n, err := readSmallFrame(br, 0); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("cut at %d bytes: got %d bytes read and error %v, want io.EOF", cut, n, err)
		}
	}
}

// unmask undoes the mask at every length and key position the word-wide loop and the byte tail can meet.
func TestUnmask(t *testing.T) {
	key := [maskKeyLen]byte{0x01, 0x80, 0xff, 0x5a}
	for n := range 40 {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(i*31 + 7)
		}
		masked := make([]byte, n)
		for i := range plain {
			masked[i] = plain[i] ^ key[i%maskKeyLen]
		}
		unmask(masked, key)
		if !bytes.Equal(masked, plain) {
			t.Fatalf("%d bytes: got %x, want %x", n, masked, plain)
		}
	}
}
