package kafkago

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/wskafka/wskafka/bridge"
)

// fetchExchange is a Fetch request whose response is read here. kafka-go's protocol package decodes a response by
// reflection, field by field, into a value per record and a buffer reference per key and value, which its caller
// then copies out: at 20,000 msg/s that decoding was a fifth of Caddy's CPU and most of its allocations (issue
// #13). The request is still written, routed to the partitions' leader (fetch.Request's Broker) and versioned as
// kafka-go's; the response is read as one buffer, and its records are decoded by appendRecords.
type fetchExchange struct {
	fetch.Request
	clientID string
	version  int16 // negotiated for the connection
}

// fetchCorrelationID is what fetchExchange's requests are numbered with; the broker only echoes it.
const fetchCorrelationID = 1 << 29

// maxFetchResponseRead is how much of a response's announced size is allocated before its bytes arrive, so that a
// corrupt size fails at the end of the stream rather than allocating gigabytes.
const maxFetchResponseRead = 1 << 20

// Required implements protocol.RawExchanger: every fetch is exchanged by RawExchange.
func (x *fetchExchange) Required(versions map[protocol.ApiKey]int16) bool {
	x.version = versions[protocol.Fetch]
	return true
}

// RawExchange implements protocol.RawExchanger: the request is written as kafka-go writes it, and the response
// read after it (https://kafka.apache.org/protocol#The_Messages_Fetch).
func (x *fetchExchange) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	if err := protocol.WriteRequest(rw, x.version, fetchCorrelationID, x.clientID, &x.Request); err != nil {
		return nil, err
	}
	var size int32
	if err := binary.Read(rw, binary.BigEndian, &size); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("fetch response of %d bytes", size)
	}
	var buf bytes.Buffer
	buf.Grow(min(int(size), maxFetchResponseRead))
	if _, err := io.CopyN(&buf, rw, int64(size)); err != nil {
		return nil, fmt.Errorf("reading a fetch response of %d bytes: %w", size, err)
	}
	return decodeFetchResponse(buf.Bytes(), x.version)
}

// fetchResponse is a Fetch response with each partition's record batches left as they arrived, for the fetcher
// to decode from the offset it asked for.
type fetchResponse struct {
	errorCode int16
	topics    []fetchedTopic
}

type fetchedTopic struct {
	name       string
	partitions []fetchedPartition
}

type fetchedPartition struct {
	partition     int32
	errorCode     int16
	highWatermark int64
	batches       []byte // the partition's record batches; the last may be cut short by the response's size bound
}

// ApiKey implements protocol.Message.
func (*fetchResponse) ApiKey() protocol.ApiKey { return protocol.Fetch }

// decodeFetchResponse reads a Fetch response (versions 0 to 11, those kafka-go negotiates, none flexible) after
// its size.
func decodeFetchResponse(b []byte, version int16) (*fetchResponse, error) {
	w := wire{b: b}
	if id := w.int32(); !w.short && id != fetchCorrelationID {
		return nil, fmt.Errorf("fetch response for request %d, want %d", id, fetchCorrelationID)
	}
	res := &fetchResponse{}
	if version >= 1 {
		w.skip(4) // throttle_time_ms
	}
	if version >= 7 {
		res.errorCode = w.int16()
		w.skip(4) // session_id
	}
	res.topics = make([]fetchedTopic, w.count())
	for i := range res.topics {
		t := &res.topics[i]
		t.name = string(w.bytes(int(w.int16())))
		t.partitions = make([]fetchedPartition, w.count())
		for j := range t.partitions {
			p := &t.partitions[j]
			p.partition = w.int32()
			p.errorCode = w.int16()
			p.highWatermark = w.int64()
			if version >= 4 {
				w.skip(8) // last_stable_offset
			}
			if version >= 5 {
				w.skip(8) // log_start_offset
			}
			if version >= 4 {
				// Aborted transactions only matter to read_committed, and the fetcher reads uncommitted.
				if n := w.int32(); n > 0 {
					w.skip(int(n) * 16) // producer_id, first_offset
				}
			}
			if version >= 11 {
				w.skip(4) // preferred_read_replica
			}
			if n := w.int32(); n > 0 {
				p.batches = w.bytes(int(n))
			}
		}
	}
	if w.short {
		return nil, fmt.Errorf("fetch response v%d of %d bytes: %w", version, len(b), io.ErrUnexpectedEOF)
	}
	return res, nil
}

// The record batch fields appendRecords reads, by their position in a batch (magic 2,
// https://kafka.apache.org/documentation/#recordbatch).
const (
	batchLengthAt     = 8  // int32: the bytes after it
	batchMagicAt      = 16 // int8
	batchCRCAt        = 17 // uint32, CRC-32C of what follows it
	batchAttributesAt = 21 // int16
	batchLastDeltaAt  = 23 // int32: the last offset's delta to the first
	batchFirstTimeAt  = 27 // int64
	batchMaxTimeAt    = 35 // int64
	batchCountAt      = 57 // int32: records in the batch
	batchRecordsAt    = 61

	batchCompression   = 0x07 // attributes: the codec
	batchLogAppendTime = 0x08 // attributes: the broker set the time (max_timestamp) when it appended the batch
	batchControl       = 0x20 // attributes: transaction markers, not records a client published
)

// appendRecords appends the records of a partition's batches from offset from on, and returns the offset after
// the last batch read whole. A batch cut short by the response's size bound ends the reading; a batch that does
// not check out (its CRC, its framing) ends it with an error, after the batches before it. Keys, values and header
// values are copied out of the response, so that what a record holds on to is what bridge.Record.Size counts.
func appendRecords(out []bridge.Record, topic string, partition int, from, highWatermark int64, batches []byte) ([]bridge.Record, int64, error) {
	next := from
	for len(batches) >= batchRecordsAt {
		end := batchLengthAt + 4 + int(int32(binary.BigEndian.Uint32(batches[batchLengthAt:])))
		if end < batchRecordsAt {
			return out, next, fmt.Errorf("record batch of %d bytes at %s/%d offset %d", end, topic, partition, next)
		}
		if end > len(batches) {
			break
		}
		batch := batches[:end]
		batches = batches[end:]
		if magic := batch[batchMagicAt]; magic != 2 {
			// Formats 0 and 1 predate Kafka 0.11; Kafka 4 neither writes nor reads them.
			return out, next, fmt.Errorf("record batch format %d at %s/%d offset %d", magic, topic, partition, next)
		}
		if crc32.Checksum(batch[batchAttributesAt:], castagnoli) != binary.BigEndian.Uint32(batch[batchCRCAt:]) {
			return out, next, fmt.Errorf("record batch at %s/%d offset %d: CRC mismatch", topic, partition, next)
		}
		base := int64(binary.BigEndian.Uint64(batch))
		last := base + int64(int32(binary.BigEndian.Uint32(batch[batchLastDeltaAt:])))
		if last < next {
			continue // a batch wholly before the offset asked for
		}
		attributes := binary.BigEndian.Uint16(batch[batchAttributesAt:])
		if attributes&batchControl == 0 {
			var err error
			if out, err = appendBatch(out, topic, partition, from, highWatermark, batch, attributes); err != nil {
				return out, next, err
			}
		}
		// The batch's last offset, not its last record's: compaction and transaction markers leave gaps the next
		// fetch would otherwise be answered with again.
		next = last + 1
	}
	return out, next, nil
}

// recordCount is about how many records a partition's batches hold, as their headers say: room to make for them
// at once. A count a batch's bytes could not hold is not believed (a record takes 7 bytes at least, if uncompressed).
func recordCount(batches []byte) int {
	n := 0
	for len(batches) >= batchRecordsAt {
		end := batchLengthAt + 4 + int(int32(binary.BigEndian.Uint32(batches[batchLengthAt:])))
		if end < batchRecordsAt || end > len(batches) {
			break
		}
		n += min(max(int(int32(binary.BigEndian.Uint32(batches[batchCountAt:]))), 0), (end-batchRecordsAt)/7)
		batches = batches[end:]
	}
	return n
}

// appendBatch appends the records of one batch that checked out, from offset from on.
func appendBatch(out []bridge.Record, topic string, partition int, from, highWatermark int64, batch []byte, attributes uint16) ([]bridge.Record, error) {
	records := batch[batchRecordsAt:]
	if codec := compress.Compression(attributes & batchCompression); codec != compress.None {
		c := codec.Codec()
		if c == nil {
			return out, fmt.Errorf("record batch at %s/%d: compression codec %d", topic, partition, codec)
		}
		r := c.NewReader(bytes.NewReader(records))
		var err error
		records, err = io.ReadAll(r)
		_ = r.Close()
		if err != nil {
			return out, fmt.Errorf("decompressing a record batch at %s/%d: %w", topic, partition, err)
		}
	}
	base := int64(binary.BigEndian.Uint64(batch))
	baseTime := int64(binary.BigEndian.Uint64(batch[batchFirstTimeAt:]))
	count := int(int32(binary.BigEndian.Uint32(batch[batchCountAt:])))
	first := len(out)
	w := wire{b: records}
	for range max(count, 0) {
		w.varint() // length
		w.skip(1)  // attributes
		timeDelta := w.varint()
		rec := bridge.Record{
			Topic: topic, Partition: partition, Offset: base + w.varint(),
			Time: time.UnixMilli(baseTime + timeDelta), HighWatermark: highWatermark,
		}
		rec.Key = w.varBytes()
		rec.Value = w.varBytes()
		if n := w.varint(); n > 0 && !w.short {
			rec.Headers = make([]bridge.Header, 0, min(n, int64(len(w.b))))
			for range n {
				key := string(w.varBytes())
				rec.Headers = append(rec.Headers, bridge.Header{Key: key, Value: w.varBytes()})
				if w.short {
					break
				}
			}
		}
		if w.short {
			return out[:first], fmt.Errorf("record batch at %s/%d offset %d: %w", topic, partition, base, io.ErrUnexpectedEOF)
		}
		// A compressed batch starts where it starts, possibly before the offset asked for.
		if rec.Offset >= from {
			out = append(out, rec)
		}
	}
	if attributes&batchLogAppendTime != 0 {
		appended := time.UnixMilli(int64(binary.BigEndian.Uint64(batch[batchMaxTimeAt:])))
		for i := first; i < len(out); i++ {
			out[i].Time = appended
		}
	}
	detach(out[first:])
	return out, nil
}

// noBytes is an empty key or value, which is not a null one.
var noBytes = []byte{}

// detach copies the keys, values and header values of recs, slices of a response, into one buffer of their own.
func detach(recs []bridge.Record) {
	var size int64
	for i := range recs {
		size += recs[i].Size()
	}
	buf := make([]byte, 0, size)
	own := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		if len(b) == 0 {
			return noBytes
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	for i := range recs {
		rec := &recs[i]
		rec.Key, rec.Value = own(rec.Key), own(rec.Value)
		for j := range rec.Headers {
			rec.Headers[j].Value = own(rec.Headers[j].Value)
		}
	}
}

// wire reads the fields of a Kafka message, big-endian and varints, noting the first one cut short.
type wire struct {
	b     []byte
	short bool // a field ran past the end; every read since returned zero
}

func (w *wire) bytes(n int) []byte {
	if w.short || n < 0 || n > len(w.b) {
		w.short = true
		return nil
	}
	b := w.b[:n:n]
	w.b = w.b[n:]
	return b
}

func (w *wire) skip(n int) { w.bytes(n) }

func (w *wire) int16() int16 {
	if b := w.bytes(2); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (w *wire) int32() int32 {
	if b := w.bytes(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (w *wire) int64() int64 {
	if b := w.bytes(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

// count reads an array's length; a null array (-1) is an empty one. A length the rest could not hold is cut short.
func (w *wire) count() int {
	n := int(w.int32())
	if n > len(w.b) {
		w.short = true
		return 0
	}
	return max(n, 0)
}

// varint reads a zigzag varint, as record fields are written.
func (w *wire) varint() int64 {
	if w.short {
		return 0
	}
	v, n := binary.Varint(w.b)
	if n <= 0 {
		w.short = true
		return 0
	}
	w.b = w.b[n:]
	return v
}

// varBytes reads bytes after their varint length: nil for -1 (null), empty but not nil for 0.
func (w *wire) varBytes() []byte {
	n := w.varint()
	if n < 0 || w.short {
		return nil
	}
	if n == 0 {
		return noBytes
	}
	if n > int64(len(w.b)) {
		w.short = true
		return nil
	}
	return w.bytes(int(n))
}

// Interface guards
var (
	_ protocol.RawExchanger = (*fetchExchange)(nil)
	_ protocol.Message      = (*fetchResponse)(nil)
)
