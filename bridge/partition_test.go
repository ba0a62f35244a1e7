package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
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
	opened  []string         // "partition@offset …" of each reader opened, by partition
	sought  []string         // "partition@offset" of each Seek
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

func (l *fakeLog) ReadPartitions(offsets map[string]map[int]int64) PartitionsReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &fakeReader{log: l, offsets: map[int]int64{}, gone: map[int]bool{}}
	var opened []string
	for topic, parts := range offsets {
		r.topic = topic
		for p, off := range parts {
			r.offsets[p] = off
			opened = append(opened, fmt.Sprintf("%d@%d", p, off))
		}
	}
	slices.Sort(opened)
	l.opened = append(l.opened, strings.Join(opened, " "))
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

func (l *fakeLog) seeks() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sought...)
}

// fakeReader reads partitions of a fakeLog: each fetch reports the partitions newly out of range, else returns
// what every partition has past its offset, at most three records a partition; at their end it waits until ctx ends (it does not see later appends before the next
// poll, which is every 10 ms of the bubble's time).
type fakeReader struct {
	log     *fakeLog
	topic   string
	offsets map[int]int64
	gone    map[int]bool // reported out of range, until Seek
	fail    error
}

func (r *fakeReader) Fetch(ctx context.Context) ([]Record, error) {
	if r.fail != nil {
		return nil, r.fail
	}
	for {
		r.log.mu.Lock()
		oor := map[int]int64{}
		for p, off := range r.offsets {
			if !r.gone[p] && off < r.log.low[p] {
				r.gone[p], oor[p] = true, off
			}
		}
		var out []Record
		for _, p := range slices.Sorted(maps.Keys(r.offsets)) {
			recs, off := r.log.records[p], r.offsets[p]
			for ; len(oor) == 0 && !r.gone[p] && off < int64(len(recs)) && off < r.offsets[p]+3; off++ {
				rec := recs[off]
				rec.HighWatermark = int64(len(recs))
				out = append(out, rec)
			}
			r.offsets[p] = off
		}
		r.log.mu.Unlock()
		if len(oor) > 0 {
			return nil, &OffsetsOutOfRangeError{Offsets: map[string]map[int]int64{r.topic: oor}}
		}
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (r *fakeReader) Seek(_ string, partition int, offset int64) {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	r.log.sought = append(r.log.sought, fmt.Sprintf("%d@%d", partition, offset))
	r.offsets[partition], r.gone[partition] = offset, false
}

func (r *fakeReader) Close() {}

func TestPartitionReader(t *testing.T) {
	cases := []struct {
		name       string
		sizes      []int         // records in each partition
		low        map[int]int64 // each partition's first offset: records below it are gone
		start      map[int]int64
		outOfRange int64
		fail       []error
		retry      bool
		want       map[int][]int64 // offsets read, in order, by partition
		readers    []string
		seeks      []string
	}{
		{name: "reads in order from its offset", sizes: []int{6}, start: map[int]int64{0: 2}, want: map[int][]int64{0: {2, 3, 4, 5}}, readers: []string{"0@2"}},
		{
			name: "one reader reads every partition", sizes: []int{4, 2, 0}, start: map[int]int64{0: 1, 1: 0, 2: 0},
			want: map[int][]int64{0: {1, 2, 3}, 1: {0, 1}}, readers: []string{"0@1 1@0 2@0"},
		},
		{
			name: "a vanished offset resumes at the first", sizes: []int{6}, low: map[int]int64{0: 4}, start: map[int]int64{0: 1}, outOfRange: FirstOffset,
			want: map[int][]int64{0: {4, 5}}, readers: []string{"0@1"}, seeks: []string{"0@4"},
		},
		{
			name: "a vanished offset resumes at the end", sizes: []int{6}, low: map[int]int64{0: 4}, start: map[int]int64{0: 1}, outOfRange: LastOffset,
			readers: []string{"0@1"}, seeks: []string{"0@6"},
		},
		{
			name: "a vanished offset moves only its partition", sizes: []int{6, 3}, low: map[int]int64{0: 4}, start: map[int]int64{0: 1, 1: 1}, outOfRange: FirstOffset,
			want: map[int][]int64{0: {4, 5}, 1: {1, 2}}, readers: []string{"0@1 1@1"}, seeks: []string{"0@4"},
		},
		{name: "a failure ends a group's reader", sizes: []int{6}, start: map[int]int64{0: 0}, fail: []error{errors.New("broker gone")}, readers: []string{"0@0"}},
		{
			name: "a broadcast reader retries after a pause", sizes: []int{6}, fail: []error{errors.New("broker gone")}, retry: true, start: map[int]int64{0: 3},
			want: map[int][]int64{0: {3, 4, 5}}, readers: []string{"0@3", "0@3"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := newFakeLog("orders", c.sizes...)
				maps.Copy(log.low, c.low)
				log.fail = c.fail
				out := make(chan Record, 16)
				r := &partitionReader{
					kafka: log, records: out, lag: func(string) *lagGauge { return &lagGauge{} },
					outOfRange: c.outOfRange, retry: c.retry, logger: zap.NewNop(),
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); r.run(ctx, map[string]map[int]int64{"orders": c.start}) }()
				time.Sleep(5 * time.Second)
				cancel()
				<-done
				close(out)
				got := map[int][]int64{}
				for rec := range out {
					got[rec.Partition] = append(got[rec.Partition], rec.Offset)
				}
				if want := c.want; !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
					t.Errorf("read %v, want %v", got, want)
				}
				if !reflect.DeepEqual(log.readers(), c.readers) {
					t.Errorf("readers opened %v, want %v", log.readers(), c.readers)
				}
				if got := log.seeks(); !slices.Equal(got, c.seeks) {
					t.Errorf("seeks %v, want %v", got, c.seeks)
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

// onceReader answers its first Fetch with recs, and every later one when ctx ends.
type onceReader struct {
	PartitionsReader
	recs []Record
}

func (o *onceReader) Fetch(ctx context.Context) ([]Record, error) {
	if recs := o.recs; recs != nil {
		o.recs = nil
		return recs, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// A fetch's records of several partitions, in runs and interleaved, are queued in their order, and leave each
// partition's next offset and lag at its last record's.
func TestPartitionReaderFeedKeepsEachPartition(t *testing.T) {
	recs := []Record{
		{Topic: "orders", Partition: 0, Offset: 0, HighWatermark: 10},
		{Topic: "orders", Partition: 0, Offset: 1, HighWatermark: 10},
		{Topic: "orders", Partition: 1, Offset: 4, HighWatermark: 7},
		{Topic: "audit", Partition: 1, Offset: 8, HighWatermark: 9},
		{Topic: "orders", Partition: 0, Offset: 2, HighWatermark: 10},
	}
	out := make(chan Record, len(recs))
	r := &partitionReader{records: out, logger: zap.NewNop()}
	next := map[string]map[int]int64{"orders": {0: 0, 1: 4}, "audit": {1: 8}}
	lags := map[string]map[int]*lagGauge{"orders": {0: {}, 1: {}}, "audit": {1: {}}}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for range recs {
			<-out
		}
		cancel()
	}()
	if err := r.feed(ctx, &onceReader{recs: slices.Clone(recs)}, next, lags); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want %v", err, context.Canceled)
	}
	if want := map[string]map[int]int64{"orders": {0: 3, 1: 5}, "audit": {1: 9}}; !reflect.DeepEqual(next, want) {
		t.Errorf("next offsets %v, want %v", next, want)
	}
	for _, c := range []struct {
		topic     string
		partition int
		lag       float64
	}{{"orders", 0, 7}, {"orders", 1, 2}, {"audit", 1, 0}} {
		if got := lags[c.topic][c.partition].last; got != c.lag {
			t.Errorf("%s/%d lag %v, want %v", c.topic, c.partition, got, c.lag)
		}
	}
}
