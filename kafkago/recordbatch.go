package kafkago

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"

	"github.com/wskafka/wskafka/bridge"
)

// recordBatchHeader is the size of a v2 record batch's fields before its records.
const recordBatchHeader = 61

// The most a record's framing takes beside its key, value and headers (its length, attributes, timestamp delta,
// offset delta, key and value lengths and header count, each varint at its longest), and a header's beside its
// key and value.
const (
	maxRecordFraming = 5 + 1 + 10 + 5 + 5 + 5 + 5
	maxHeaderFraming = 5 + 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecordSet appends the records at indexes as a produce request's record set: its size, then one
// uncompressed record batch of message format v2 (KIP-98; "Record Batch" in Kafka's protocol documentation),
// which a RawProduce request carries as it is. kafka-go's own encoding of the same batch, through io.Readers of
// each key and value and paged buffers, was a tenth of Caddy's CPU when publishing 100-byte messages. Every record
// must have its Time set.
func appendRecordSet(dst []byte, records []bridge.Record, indexes []int) []byte {
	// Room for the most the records can take (every varint at its longest), so the set is never copied to grow.
	most := 4 + recordBatchHeader
	for _, i := range indexes {
		most += int(records[i].Size()) + maxRecordFraming + maxHeaderFraming*len(records[i].Headers)
	}
	dst = slices.Grow(dst, most)
	start := len(dst)
	dst = append(dst, make([]byte, 4+recordBatchHeader)...) // filled in once the records are written
	first := records[indexes[0]].Time.UnixMilli()
	last := first
	for j, i := range indexes {
		r := &records[i]
		ts := r.Time.UnixMilli()
		last = max(last, ts)
		size := 1 + varintLen(ts-first) + varintLen(int64(j)) + bytesLen(r.Key) + bytesLen(r.Value) +
			varintLen(int64(len(r.Headers)))
		for _, h := range r.Headers {
			size += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
		}
		dst = binary.AppendVarint(dst, int64(size))
		dst = append(dst, 0) // record attributes, unused
		dst = binary.AppendVarint(dst, ts-first)
		dst = binary.AppendVarint(dst, int64(j))
		dst = appendBytes(dst, r.Key)
		dst = appendBytes(dst, r.Value)
		dst = binary.AppendVarint(dst, int64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = binary.AppendVarint(dst, int64(len(h.Key)))
			dst = append(dst, h.Key...)
			dst = appendBytes(dst, h.Value)
		}
	}
	be := binary.BigEndian
	set := dst[start:]
	be.PutUint32(set, uint32(len(set)-4))
	b := set[4:]
	be.PutUint64(b[0:], 0)                       // base offset: the broker assigns offsets
	be.PutUint32(b[8:], uint32(len(b)-12))       // batch length, from the leader epoch on
	be.PutUint32(b[12:], math.MaxUint32)         // partition leader epoch: -1, a producer's
	b[16] = 2                                    // magic: format v2
	be.PutUint16(b[21:], 0)                      // attributes: no compression, create time, not transactional
	be.PutUint32(b[23:], uint32(len(indexes)-1)) // last offset delta
	be.PutUint64(b[27:], uint64(first))          // base timestamp
	be.PutUint64(b[35:], uint64(last))           // max timestamp
	be.PutUint64(b[43:], math.MaxUint64)         // producer id: -1, not idempotent
	be.PutUint16(b[51:], math.MaxUint16)         // producer epoch: -1
	be.PutUint32(b[53:], math.MaxUint32)         // base sequence: -1
	be.PutUint32(b[57:], uint32(len(indexes)))   // records
	be.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return dst
}

// varintLen is the length of v as a zigzag varint, Kafka's varint and varlong as binary.AppendVarint writes them.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}

// bytesLen is the length of b as a record's key, value or header value: a varint length (-1 for null), then b.
func bytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}
