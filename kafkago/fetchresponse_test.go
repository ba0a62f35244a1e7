package kafkago

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/compress"

	"github.com/wskafka/wskafka/bridge"
)

// testRecords are n records of partition 0 with values "v<i>", the first with a key, the second a null value, the
// third an empty one and a header.
func testRecords(n int) []bridge.Record {
	at := time.UnixMilli(1_700_000_000_000)
	recs := make([]bridge.Record, n)
	for i := range recs {
		recs[i] = bridge.Record{Topic: fetchTopic, Value: fmt.Appendf(nil, "v%d", i), Time: at.Add(time.Duration(i) * time.Millisecond)}
	}
	if n > 0 {
		recs[0].Key = []byte("k0")
	}
	if n > 1 {
		recs[1].Value = nil
	}
	if n > 2 {
		recs[2].Value = []byte{}
		recs[2].Headers = []bridge.Header{{Key: "h", Value: []byte("hv")}, {Key: "null", Value: nil}}
	}
	return recs
}

// testBatch is recs as one record batch from offset base on, the way a broker sends it, with attributes (their
// codec compressing the records) and lastDelta as the batch's last offset delta (-1: the last record's).
func testBatch(t *testing.T, base int64, attributes uint16, lastDelta int, recs []bridge.Record) []byte {
	t.Helper()
	indexes := make([]int, len(recs))
	for i := range indexes {
		indexes[i] = i
	}
	b := appendRecordSet(nil, recs, indexes)[4:]
	if codec := compress.Compression(attributes & batchCompression); codec != compress.None {
		var z bytes.Buffer
		w := codec.Codec().NewWriter(&z)
		if _, err := w.Write(b[batchRecordsAt:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b = append(b[:batchRecordsAt:batchRecordsAt], z.Bytes()...)
	}
	be := binary.BigEndian
	be.PutUint64(b, uint64(base))
	be.PutUint32(b[batchLengthAt:], uint32(len(b)-batchLengthAt-4))
	be.PutUint16(b[batchAttributesAt:], attributes)
	if lastDelta >= 0 {
		be.PutUint32(b[batchLastDeltaAt:], uint32(lastDelta))
	}
	be.PutUint32(b[batchCRCAt:], crc32.Checksum(b[batchAttributesAt:], castagnoli))
	return b
}

func TestAppendRecords(t *testing.T) {
	recs := testRecords(5)
	plain := testBatch(t, 10, 0, -1, recs)
	next := testBatch(t, 15, 0, -1, testRecords(2))
	corrupt := slices.Clone(next)
	corrupt[len(corrupt)-1] ^= 1
	format1 := slices.Clone(next)
	format1[batchMagicAt] = 1
	shortLength := slices.Clone(next)
	binary.BigEndian.PutUint32(shortLength[batchLengthAt:], 3)
	cut := testBatch(t, 15, 0, -1, testRecords(2))
	cut = cut[:len(cut)-3] // the record's bytes end early, and the CRC says they are what was sent
	binary.BigEndian.PutUint32(cut[batchLengthAt:], uint32(len(cut)-batchLengthAt-4))
	binary.BigEndian.PutUint32(cut[batchCRCAt:], crc32.Checksum(cut[batchAttributesAt:], castagnoli))
	tests := []struct {
		name    string
		from    int64
		batches []byte
		offsets []int64 // of the records returned
		next    int64
		err     string // in the error; "" none
	}{
		{name: "an uncompressed batch", from: 10, batches: plain, offsets: []int64{10, 11, 12, 13, 14}, next: 15},
		{name: "from inside a batch, the records before the offset are left out", from: 12, batches: plain, offsets: []int64{12, 13, 14}, next: 15},
		{name: "a batch wholly before the offset is passed over", from: 15, batches: slices.Concat(plain, next), offsets: []int64{15, 16}, next: 17},
		{name: "gzip", from: 10, batches: testBatch(t, 10, uint16(compress.Gzip), -1, recs), offsets: []int64{10, 11, 12, 13, 14}, next: 15},
		{name: "snappy", from: 10, batches: testBatch(t, 10, uint16(compress.Snappy), -1, recs), offsets: []int64{10, 11, 12, 13, 14}, next: 15},
		{name: "lz4", from: 10, batches: testBatch(t, 10, uint16(compress.Lz4), -1, recs), offsets: []int64{10, 11, 12, 13, 14}, next: 15},
		{name: "zstd, from inside the batch", from: 13, batches: testBatch(t, 10, uint16(compress.Zstd), -1, recs), offsets: []int64{13, 14}, next: 15},
		{name: "a transaction marker is no record, and is read past", from: 10, batches: slices.Concat(testBatch(t, 10, batchControl, -1, testRecords(1)), next), offsets: []int64{15, 16}, next: 17},
		{name: "a compacted batch's gap after its last record is read past", from: 10, batches: testBatch(t, 10, 0, 9, recs), offsets: []int64{10, 11, 12, 13, 14}, next: 20},
		{name: "a batch cut short by the response's size bound is left for the next fetch", from: 10, batches: slices.Concat(plain, next[:len(next)-1]), offsets: []int64{10, 11, 12, 13, 14}, next: 15},
		{name: "less than a batch header is left for the next fetch", from: 10, batches: next[:batchRecordsAt-1], next: 10},
		{name: "nothing", from: 10, next: 10},
		{name: "a CRC that does not match fails after the batches before", from: 10, batches: slices.Concat(plain, corrupt), offsets: []int64{10, 11, 12, 13, 14}, next: 15, err: "CRC"},
		{name: "format 1 fails", from: 15, batches: format1, next: 15, err: "format 1"},
		{name: "a record cut short fails", from: 15, batches: cut, next: 15, err: io.ErrUnexpectedEOF.Error()},
		{name: "a batch length shorter than its header fails", from: 15, batches: shortLength, next: 15, err: "record batch of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := appendRecords(nil, fetchTopic, 0, tt.from, 99, tt.batches)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("got error %v, want %q", err, tt.err)
			}
			if next != tt.next {
				t.Errorf("got next offset %d, want %d", next, tt.next)
			}
			var offsets []int64
			for _, rec := range got {
				offsets = append(offsets, rec.Offset)
				if rec.HighWatermark != 99 || rec.Topic != fetchTopic {
					t.Errorf("record %d: got topic %q, high watermark %d, want %q, 99", rec.Offset, rec.Topic, rec.HighWatermark, fetchTopic)
				}
			}
			if !slices.Equal(offsets, tt.offsets) {
				t.Errorf("got offsets %v, want %v", offsets, tt.offsets)
			}
		})
	}
}

// Keys, values and headers come out as they were produced, null apart from empty, and in buffers of their own.
func TestAppendRecordsFields(t *testing.T) {
	want := testRecords(4)
	for _, attributes := range []uint16{0, uint16(compress.Snappy)} {
		t.Run(compress.Compression(attributes).String(), func(t *testing.T) {
			batch := testBatch(t, 0, attributes, -1, want)
			got, _, err := appendRecords(nil, fetchTopic, 0, 0, 4, batch)
			if err != nil {
				t.Fatal(err)
			}
			clear(batch) // the records must not share the response's bytes
			if len(got) != len(want) {
				t.Fatalf("got %d records, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if !bytesEqualNull(g.Key, w.Key) || !bytesEqualNull(g.Value, w.Value) || !g.Time.Equal(w.Time) {
					t.Errorf("record %d: got key %#v value %#v time %v, want %#v %#v %v", i, g.Key, g.Value, g.Time, w.Key, w.Value, w.Time)
				}
				if !slices.EqualFunc(g.Headers, w.Headers, func(a, b bridge.Header) bool {
					return a.Key == b.Key && bytesEqualNull(a.Value, b.Value)
				}) {
					t.Errorf("record %d: got headers %v, want %v", i, g.Headers, w.Headers)
				}
			}
		})
	}
}

// bytesEqualNull is bytes.Equal that tells nil from empty.
func bytesEqualNull(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// A batch whose time the broker set (message.timestamp.type=LogAppendTime) gives every record that time, its
// max_timestamp, as Kafka's own consumer reads it.
func TestAppendRecordsLogAppendTime(t *testing.T) {
	batch := testBatch(t, 0, 0, -1, testRecords(3))
	appended := time.UnixMilli(1_800_000_000_000)
	binary.BigEndian.PutUint64(batch[batchMaxTimeAt:], uint64(appended.UnixMilli()))
	binary.BigEndian.PutUint16(batch[batchAttributesAt:], batchLogAppendTime)
	binary.BigEndian.PutUint32(batch[batchCRCAt:], crc32.Checksum(batch[batchAttributesAt:], castagnoli))
	got, _, err := appendRecords(nil, fetchTopic, 0, 0, 3, batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range got {
		if !rec.Time.Equal(appended) {
			t.Errorf("record %d: got time %v, want %v", rec.Offset, rec.Time, appended)
		}
	}
}

// testFetchResponse encodes a Fetch response of version after its size: one topic of partitions, each with its
// error code and batches.
func testFetchResponse(version int16, errorCode int16, partitions []fetchedPartition) []byte {
	be := binary.BigEndian
	b := be.AppendUint32(nil, fetchCorrelationID)
	if version >= 1 {
		b = be.AppendUint32(b, 0) // throttle_time_ms
	}
	if version >= 7 {
		b = be.AppendUint16(b, uint16(errorCode))
		b = be.AppendUint32(b, 0) // session_id
	}
	b = be.AppendUint32(b, 1)
	b = be.AppendUint16(b, uint16(len(fetchTopic)))
	b = append(b, fetchTopic...)
	b = be.AppendUint32(b, uint32(len(partitions)))
	for _, p := range partitions {
		b = be.AppendUint32(b, uint32(p.partition))
		b = be.AppendUint16(b, uint16(p.errorCode))
		b = be.AppendUint64(b, uint64(p.highWatermark))
		if version >= 4 {
			b = be.AppendUint64(b, uint64(p.highWatermark)) // last_stable_offset
		}
		if version >= 5 {
			b = be.AppendUint64(b, 0) // log_start_offset
		}
		if version >= 4 {
			b = be.AppendUint32(b, 1) // an aborted transaction
			b = be.AppendUint64(b, 7)
			b = be.AppendUint64(b, 3)
		}
		if version >= 11 {
			b = be.AppendUint32(b, 0xffffffff) // preferred_read_replica: -1
		}
		if p.batches == nil {
			b = be.AppendUint32(b, 0xffffffff)
		} else {
			b = be.AppendUint32(b, uint32(len(p.batches)))
			b = append(b, p.batches...)
		}
	}
	return b
}

func TestDecodeFetchResponse(t *testing.T) {
	batches := testBatch(t, 0, 0, -1, testRecords(2))
	parts := []fetchedPartition{
		{partition: 0, highWatermark: 2, batches: batches},
		{partition: 3, errorCode: 1, highWatermark: -1},
	}
	for _, version := range []int16{0, 4, 7, 11} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			res, err := decodeFetchResponse(testFetchResponse(version, 0, parts), version)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.topics) != 1 || res.topics[0].name != fetchTopic {
				t.Fatalf("got topics %+v, want %q alone", res.topics, fetchTopic)
			}
			got := res.topics[0].partitions
			if !slices.EqualFunc(got, parts, func(a, b fetchedPartition) bool {
				return a.partition == b.partition && a.errorCode == b.errorCode && a.highWatermark == b.highWatermark && bytes.Equal(a.batches, b.batches)
			}) {
				t.Errorf("got partitions %+v, want %+v", got, parts)
			}
		})
	}
	full := testFetchResponse(11, 0, parts)
	wrongID := slices.Clone(full)
	binary.BigEndian.PutUint32(wrongID, 5)
	bad := []struct {
		name string
		b    []byte
		err  error // errors.Is; nil: any
	}{
		{name: "cut short in the records", b: full[:len(full)-10], err: io.ErrUnexpectedEOF},
		{name: "cut short in the partition's fields", b: full[:30], err: io.ErrUnexpectedEOF},
		{name: "empty", b: nil, err: io.ErrUnexpectedEOF},
		{name: "another request's answer", b: wrongID},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeFetchResponse(tt.b, 11)
			if err == nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("got error %v, want %v", err, tt.err)
			}
		})
	}
	t.Run("the response's own error", func(t *testing.T) {
		res, err := decodeFetchResponse(testFetchResponse(7, 71, nil), 7)
		if err != nil || res.errorCode != 71 {
			t.Errorf("got %v, error code %d, want 71", err, res.errorCode)
		}
	})
}

// Whatever a broker sends, decoding returns an error or records, and never panics.
func FuzzDecodeFetchResponse(f *testing.F) {
	batches := slices.Concat(testBatch(&testing.T{}, 0, 0, -1, testRecords(3)), testBatch(&testing.T{}, 3, uint16(compress.Snappy), -1, testRecords(2)))
	f.Add(testFetchResponse(11, 0, []fetchedPartition{{highWatermark: 5, batches: batches}}), int16(11))
	f.Add(testFetchResponse(4, 0, []fetchedPartition{{highWatermark: 5, batches: batches}}), int16(4))
	f.Fuzz(func(t *testing.T, b []byte, version int16) {
		res, err := decodeFetchResponse(b, version%12)
		if err != nil {
			return
		}
		for _, topic := range res.topics {
			for _, p := range topic.partitions {
				_, _, _ = appendRecords(nil, topic.name, int(p.partition), 0, p.highWatermark, p.batches)
			}
		}
	})
}

func TestRecordCount(t *testing.T) {
	two := testBatch(t, 0, 0, -1, testRecords(2))
	huge := slices.Clone(two)
	binary.BigEndian.PutUint32(huge[batchCountAt:], 1<<30)
	tests := []struct {
		name    string
		batches []byte
		want    int
	}{
		{name: "the batches' counts", batches: slices.Concat(two, testBatch(t, 2, 0, -1, testRecords(3))), want: 5},
		{name: "a batch cut short is not counted", batches: slices.Concat(two, two[:len(two)-1]), want: 2},
		{name: "a count the batch could not hold is cut to what it could", batches: huge, want: (len(huge) - batchRecordsAt) / 7},
		{name: "nothing", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recordCount(tt.batches); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}
