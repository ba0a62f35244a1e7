package bridge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
)

// fakeLog is a Kafka port over an in-memory log of one topic: partition readers read it, and Watermarks
// reports its bounds. Other methods are not used by these tests.
type fakeLog struct {
	Kafka
	mu      sync.Mutex
	low     map[int]int64    // the first offset each partition still holds
	records map[int][]Record // every record each partition ever had, from offset 0
	fail    []error          // what the next readers' first fetch fails with, one per reader
	opened  []string         // "partition@offset" of each reader opened
}

func newFakeLog(topic string, sizes ...int) *fakeLog {
	l := &fakeLog{low: map[int]int64{}, records: map[int][]Record{}}
	for p, n := range sizes {
		l.records[p] = records(topic, p, 0, n)
	}
	return l
}

func (l *fakeLog) append(recs []Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs {
		l.records[r.Partition] = append(l.records[r.Partition], r)
	}
}

func (l *fakeLog) ReadPartition(topic string, partition int, offset int64) PartitionReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opened = append(l.opened, fmt.Sprintf("%d@%d", partition, offset))
	r := &fakeReader{log: l, partition: partition, offset: offset}
	if len(l.fail) > 0 {
		r.fail, l.fail = l.fail[0], l.fail[1:]
	}
	return r
}

func (l *fakeLog) Watermarks(_ context.Context, _ string, partitions []int) (map[int]Watermark, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]Watermark, len(partitions))
	for _, p := range partitions {
		out[p] = Watermark{Low: l.low[p], High: int64(len(l.records[p]))}
	}
	return out, nil
}

func (l *fakeLog) readers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.opened...)
}

// fakeReader reads a fakeLog's partition; at its end it waits until ctx ends (it does not see later appends
// before the next poll, which is every 10 ms of the bubble's time).
type fakeReader struct {
	log       *fakeLog
	partition int
	offset    int64
	fail      error
}

func (r *fakeReader) Fetch(ctx context.Context) (Record, error) {
	if r.fail != nil {
		return Record{}, r.fail
	}
	for {
		r.log.mu.Lock()
		low, recs := r.log.low[r.partition], r.log.records[r.partition]
		r.log.mu.Unlock()
		if r.offset < low {
			return Record{}, fmt.Errorf("%w: %d", ErrOffsetOutOfRange, r.offset)
		}
		if r.offset < int64(len(recs)) {
			rec := recs[r.offset]
			rec.HighWatermark = int64(len(recs))
			r.offset++
			return rec, nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

func (r *fakeReader) Close() {}

func TestPartitionReader(t *testing.T) {
	cases := []struct {
		name       string
		low        int64 // the log's first offset: records below it are gone
		start      int64
		outOfRange int64
		fail       []error
		retry      bool
		want       []int64 // offsets read, in order
		readers    []string
	}{
		{name: "reads in order from its offset", start: 2, want: []int64{2, 3, 4, 5}, readers: []string{"0@2"}},
		{name: "a vanished offset resumes at the first", low: 4, start: 1, outOfRange: FirstOffset, want: []int64{4, 5}, readers: []string{"0@1", "0@4"}},
		{name: "a vanished offset resumes at the end", low: 4, start: 1, outOfRange: LastOffset, readers: []string{"0@1", "0@6"}},
		{name: "a failure ends a group's reader", fail: []error{errors.New("broker gone")}, readers: []string{"0@0"}},
		{name: "a broadcast reader retries after a pause", fail: []error{errors.New("broker gone")}, retry: true, start: 3, want: []int64{3, 4, 5}, readers: []string{"0@3", "0@3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := newFakeLog("orders", 6)
				log.low[0], log.fail = c.low, c.fail
				out := make(chan Record, 16)
				r := &partitionReader{
					kafka: log, topic: "orders", partition: 0, records: out, lag: &lagGauge{},
					outOfRange: c.outOfRange, retry: c.retry, logger: zap.NewNop(),
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); r.run(ctx, c.start) }()
				time.Sleep(5 * time.Second)
				cancel()
				<-done
				close(out)
				var got []int64
				for rec := range out {
					got = append(got, rec.Offset)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("read %v, want %v", got, c.want)
				}
				if !reflect.DeepEqual(log.readers(), c.readers) {
					t.Errorf("readers opened %v, want %v", log.readers(), c.readers)
				}
			})
		})
	}
}

func (l *fakeLog) Topics(_ context.Context, topics []string) (map[string][]PartitionInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts := make([]PartitionInfo, len(l.records))
	for p := range parts {
		parts[p] = PartitionInfo{ID: p}
	}
	out := make(map[string][]PartitionInfo, len(topics))
	for _, t := range topics {
		out[t] = parts
	}
	return out, nil
}
