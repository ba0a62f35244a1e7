package bridge

import (
	"bufio"
	"encoding/binary"

	"github.com/gorilla/websocket"
)

// FrameReaderConn is implemented by a connection whose buffered reader, the one gorilla reads its frames through,
// the read loop may read small frames from itself (see readSmallFrame). The root package's chunked connections
// implement it: through gorilla, a 100-byte publish cost a fifth of Caddy's CPU in the produce benchmark
// (gorilla's frame parsing, a reader allocated per message, two reads and two copies of the payload).
type FrameReaderConn interface {
	// FrameReader returns the reader gorilla was handed with the connection at the upgrade and reads every frame
	// through.
	FrameReader() *bufio.Reader
}

// Client frames are masked and, being small, carry their length in the second byte or in the two after it
// (RFC 6455 §5.2).
const (
	finalBit       = 0x80
	maskBit        = 0x80
	maskKeyLen     = 4
	len7Max        = 125
	len16Follows   = 126
	smallHeaderMin = 2 + maskKeyLen
)

// readSmallFrame reads the next frame from br when it is one the bridge reads without gorilla: a whole text or
// binary message (final, opcode 1 or 2, no RSV bit) from a client (masked) whose header and payload fit in br's
// buffer and whose payload is at most limit bytes (limit ≤ 0: any). It returns the payload unmasked in place in
// br's buffer, valid until the caller discards the frame's n bytes of br; n is 0, and nothing is consumed, for any
// other frame, which the caller has gorilla read (control frames, fragments, protocol errors, max_frame_bytes
// and its close with 1009 are all gorilla's). Between messages gorilla keeps no state a whole message changes,
// so reading some of them here leaves it reading the rest correctly. It waits for the frame's bytes, as gorilla
// would; an error is the connection's.
func readSmallFrame(br *bufio.Reader, limit int64) (payload []byte, n int, err error) {
	h, err := br.Peek(2)
	if err != nil {
		return nil, 0, err
	}
	if h[0] != finalBit|websocket.TextMessage && h[0] != finalBit|websocket.BinaryMessage || h[1]&maskBit == 0 {
		return nil, 0, nil
	}
	size, header := int(h[1]&^maskBit), smallHeaderMin
	switch {
	case size == len16Follows:
		if h, err = br.Peek(4); err != nil {
			return nil, 0, err
		}
		size, header = int(binary.BigEndian.Uint16(h[2:])), smallHeaderMin+2
	case size > len7Max:
		return nil, 0, nil
	}
	if header+size > br.Size() || limit > 0 && int64(size) > limit {
		return nil, 0, nil
	}
	f, err := br.Peek(header + size)
	if err != nil {
		return nil, 0, err
	}
	payload = f[header:]
	unmask(payload, [maskKeyLen]byte(f[header-maskKeyLen:header]))
	return payload, header + size, nil
}

// unmask applies a client's masking key to its payload, in place (RFC 6455 §5.3), eight bytes at a time.
func unmask(b []byte, key [maskKeyLen]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i%maskKeyLen]
	}
}
