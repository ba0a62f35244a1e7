package kafkago

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/protocol"

	"github.com/wskafka/wskafka/bridge"
)

// appendRecordSet writes what kafka-go reads back as the same records: keys and values null, empty and set,
// headers, timestamps before and after the first, and sizes that need varints of several bytes.
func TestAppendRecordSet(t *testing.T) {
	base := time.UnixMilli(1767323045000)
	for _, tt := range []struct {
		name    string
		records []bridge.Record
	}{
		{"one record", []bridge.Record{{Value: []byte("v"), Time: base}}},
		{"null and empty", []bridge.Record{
			{Key: nil, Value: nil, Time: base},
			{Key: []byte{}, Value: []byte{}, Time: base},
		}},
		{"keys, headers and times", []bridge.Record{
			{Key: []byte("k1"), Value: []byte("first"), Headers: []bridge.Header{{Key: "trace", Value: []byte("4bf9")}, {Key: "empty", Value: []byte{}}, {Key: "null"}}, Time: base.Add(time.Second)},
			{Key: []byte("k2"), Value: bytes.Repeat([]byte("x"), 300), Time: base},
			{Value: bytes.Repeat([]byte("y"), 70000), Time: base.Add(40 * time.Hour)},
		}},
		{"many", func() []bridge.Record {
			rs := make([]bridge.Record, 200)
			for i := range rs {
				rs[i] = bridge.Record{Value: bytes.Repeat([]byte("m"), i), Time: base.Add(time.Duration(i) * time.Millisecond)}
			}
			return rs
		}()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A leading record not in indexes, and a byte before the set, as a request has around it.
			records := append([]bridge.Record{{Value: []byte("skipped"), Time: base}}, tt.records...)
			indexes := make([]int, len(tt.records))
			for j := range indexes {
				indexes[j] = j + 1
			}
			set := appendRecordSet([]byte{0xff}, records, indexes)[1:]
			var rs protocol.RecordSet
			if _, err := rs.ReadFrom(bytes.NewReader(set)); err != nil {
				t.Fatalf("kafka-go could not read the set: %v", err)
			}
			if rs.Version != 2 {
				t.Errorf("got version %d, want 2", rs.Version)
			}
			j := 0
			for {
				r, err := rs.Records.ReadRecord()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("record %d: %v", j, err)
				}
				if j >= len(tt.records) {
					t.Fatalf("got more than the %d records written", len(tt.records))
				}
				want := tt.records[j]
				if r.Offset != int64(j) || !r.Time.Equal(want.Time) {
					t.Errorf("record %d: got offset %d at %v, want %d at %v", j, r.Offset, r.Time, j, want.Time)
				}
				if got := readBack(t, r.Key); !bytes.Equal(got, want.Key) || (got == nil) != (want.Key == nil) {
					t.Errorf("record %d: got key %q, want %q", j, got, want.Key)
				}
				if got := readBack(t, r.Value); !bytes.Equal(got, want.Value) || (got == nil) != (want.Value == nil) {
					t.Errorf("record %d: got a value of %d bytes, want %d", j, len(got), len(want.Value))
				}
				if len(r.Headers) != len(want.Headers) {
					t.Fatalf("record %d: got %d headers, want %d", j, len(r.Headers), len(want.Headers))
				}
				for h, got := range r.Headers {
					if w := want.Headers[h]; got.Key != w.Key || !bytes.Equal(got.Value, w.Value) || (got.Value == nil) != (w.Value == nil) {
						t.Errorf("record %d: got header %q=%q, want %q=%q", j, got.Key, got.Value, w.Key, w.Value)
					}
				}
				j++
			}
			if j != len(tt.records) {
				t.Fatalf("got %d records, want %d", j, len(tt.records))
			}
		})
	}
}

// readBack returns the bytes of a key or value kafka-go read, nil for null.
func readBack(t *testing.T, b protocol.Bytes) []byte {
	t.Helper()
	if b == nil {
		return nil
	}
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		got = []byte{}
	}
	return got
}

// varintLen agrees with what binary.AppendVarint writes, at every length.
func TestVarintLen(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 64, -65, 8191, 8192, 1 << 20, -(1 << 20), 1<<31 - 1, -1 << 31, 1<<63 - 1, -1 << 63} {
		if got, want := varintLen(v), len(binary.AppendVarint(nil, v)); got != want {
			t.Errorf("varintLen(%d): got %d, want %d", v, got, want)
		}
	}
}

// The room made up front holds the whole set, long varints included: it is never grown, which would copy every
// record written so far.
func TestAppendRecordSetRoom(t *testing.T) {
	base := time.UnixMilli(1767323045000)
	records := []bridge.Record{
		{Key: bytes.Repeat([]byte("k"), 200), Value: bytes.Repeat([]byte("v"), 20000), Headers: []bridge.Header{{Key: "h", Value: []byte("x")}, {Key: "n"}}, Time: base.Add(-time.Hour)},
		{Value: nil, Time: base.Add(100 * 365 * 24 * time.Hour)},
		{Value: []byte{}, Time: base},
	}
	set := appendRecordSet(nil, records, []int{0, 1, 2})
	most := 4 + recordBatchHeader
	for _, r := range records {
		most += int(r.Size()) + maxRecordFraming + maxHeaderFraming*len(r.Headers)
	}
	if len(set) > most {
		t.Errorf("got a set of %d bytes, want at most the %d made room for", len(set), most)
	}
}
