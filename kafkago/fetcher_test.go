package kafkago

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/bridge"
)

const fetchTopic = "orders"

// fetchEnv is a kfake cluster whose fetch requests are recorded, and a client of it.
type fetchEnv struct {
	cluster *kfake.Cluster
	cfg     Config
	k       *Client

	mu       sync.Mutex
	requests []fetchSeen
}

// fetchSeen is one fetch request as a broker received it.
type fetchSeen struct {
	node       int32
	partitions []int32
}

func newFetchEnv(t *testing.T, brokers, partitions int, maxWait time.Duration) *fetchEnv {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(int32(partitions), fetchTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	// kfake picks each partition's leader at random, which put all six on one of three brokers in a CI run: the
	// partitions go round the brokers instead, so that a test with several brokers always has several leaders.
	for p := range partitions {
		if err := cluster.MoveTopicPartition(fetchTopic, int32(p), int32(p%brokers)); err != nil {
			t.Fatal(err)
		}
	}
	e := &fetchEnv{cluster: cluster}
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		seen := fetchSeen{node: cluster.CurrentNode()}
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			for _, rp := range rt.Partitions {
				seen.partitions = append(seen.partitions, rp.Partition)
			}
		}
		e.mu.Lock()
		e.requests = append(e.requests, seen)
		e.mu.Unlock()
		return nil, nil, false
	})
	e.cfg = Config{
		Brokers: cluster.ListenAddrs(), ClientID: "test", ConnectTimeout: time.Second, RequestTimeout: 10 * time.Second,
		FetchMinBytes: 1, FetchMaxBytes: 1 << 20, FetchMaxWait: maxWait, RequiredAcks: 1, AckTimeout: 5 * time.Second, MaxAttempts: 3,
	}
	e.k = e.client(t)
	return e
}

func (e *fetchEnv) client(t *testing.T) *Client {
	t.Helper()
	k, err := New(e.cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Destruct() })
	return k
}

// produce writes n records to each of partitions, with values "<partition>:<offset>" from offset from on, with a
// client of its own (whose metadata knows where partitions moved).
func (e *fetchEnv) produce(t *testing.T, partitions []int, from, n int) {
	t.Helper()
	var recs []bridge.Record
	for _, p := range partitions {
		for i := range n {
			recs = append(recs, bridge.Record{Topic: fetchTopic, Partition: p, Value: fmt.Appendf(nil, "%d:%d", p, from+i)})
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, err := range e.client(t).Produce(ctx, recs) {
		if err != nil {
			t.Fatalf("producing record %d: %v", i, err)
		}
	}
}

func (e *fetchEnv) seen() []fetchSeen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.requests)
}

// readAll fetches until want records arrived, failing on anything but an out-of-range report, which seek
// answers; it checks each partition's records come in order, once each, and returns their offsets by partition.
func readAll(t *testing.T, r bridge.PartitionsReader, want int, seek func(map[int]int64)) map[int][]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := map[int][]int64{}
	for n := 0; n < want; {
		recs, err := r.Fetch(ctx)
		if gone, ok := errors.AsType[*bridge.OffsetsOutOfRangeError](err); ok && seek != nil {
			seek(gone.Offsets[fetchTopic])
			continue
		}
		if err != nil {
			t.Fatalf("after %d of %d records: %v", n, want, err)
		}
		for _, rec := range recs {
			if v := fmt.Sprintf("%d:%d", rec.Partition, rec.Offset); string(rec.Value) != v {
				t.Fatalf("record %s/%d@%d has value %q, want %q", rec.Topic, rec.Partition, rec.Offset, rec.Value, v)
			}
			if prev := got[rec.Partition]; len(prev) > 0 && rec.Offset != prev[len(prev)-1]+1 {
				t.Fatalf("partition %d: offset %d after %d", rec.Partition, rec.Offset, prev[len(prev)-1])
			}
			got[rec.Partition] = append(got[rec.Partition], rec.Offset)
			n++
		}
	}
	return got
}

func offsets(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

func TestFetcher(t *testing.T) {
	cases := []struct {
		name                string
		brokers, partitions int
		maxWait             time.Duration
		run                 func(t *testing.T, e *fetchEnv)
	}{
		{
			name: "one request per broker covers every partition it leads", brokers: 3, partitions: 6, maxWait: 100 * time.Millisecond,
			run: func(t *testing.T, e *fetchEnv) {
				all := []int{0, 1, 2, 3, 4, 5}
				e.produce(t, all, 0, 5)
				r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0}})
				defer r.Close()
				got := readAll(t, r, 30, nil)
				for _, p := range all {
					if !slices.Equal(got[p], offsets(0, 5)) {
						t.Errorf("partition %d: got %v, want %v", p, got[p], offsets(0, 5))
					}
				}
				led := map[int32][]int32{}
				for _, p := range all {
					node := e.cluster.LeaderFor(fetchTopic, int32(p))
					led[node] = append(led[node], int32(p))
				}
				seen := e.seen()
				for _, s := range seen {
					slices.Sort(s.partitions)
					if !slices.Equal(s.partitions, led[s.node]) {
						t.Errorf("a fetch to broker %d asked for %v, want %v (every partition it leads)", s.node, s.partitions, led[s.node])
					}
				}
				if len(led) < 2 {
					t.Errorf("the partitions' leaders are %v: the test wants more than one broker", led)
				}
			},
		},
		{
			name: "an idle reader long-polls once per broker, not once per partition", brokers: 1, partitions: 4, maxWait: 100 * time.Millisecond,
			run: func(t *testing.T, e *fetchEnv) {
				r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 0, 1: 0, 2: 0, 3: 0}})
				defer r.Close()
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				if recs, err := r.Fetch(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %d records, %v: want to wait until the deadline", len(recs), err)
				}
				// 1 s of 100 ms polls: 10, and a few for the start; a poll per partition would make 40.
				if n := len(e.seen()); n < 5 || n > 14 {
					t.Errorf("%d fetch requests in 1 s, want about 10", n)
				}
			},
		},
		{
			name: "a partition that moves to another broker is read from its new leader", brokers: 2, partitions: 2, maxWait: 100 * time.Millisecond,
			run: func(t *testing.T, e *fetchEnv) {
				e.produce(t, []int{0, 1}, 0, 3)
				r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 0, 1: 0}})
				defer r.Close()
				readAll(t, r, 6, nil)
				from := e.cluster.LeaderFor(fetchTopic, 0)
				to := (from + 1) % 2
				if err := e.cluster.MoveTopicPartition(fetchTopic, 0, to); err != nil {
					t.Fatal(err)
				}
				e.produce(t, []int{0, 1}, 3, 3)
				start := time.Now()
				got := readAll(t, r, 6, nil)
				// kafka-go's Transport would route by its cached metadata for up to 6 s (MetadataTTL).
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("the moved partition's records took %v, want them from its new leader at once", took)
				}
				for p := range 2 {
					if !slices.Equal(got[p], offsets(3, 6)) {
						t.Errorf("partition %d after the move: got %v, want %v", p, got[p], offsets(3, 6))
					}
				}
				asked := false
				for _, s := range e.seen() {
					asked = asked || s.node == to && slices.Contains(s.partitions, 0)
				}
				if !asked {
					t.Errorf("partition 0 was never asked of its new leader %d", to)
				}
			},
		},
		{
			name: "an offset that is gone is reported for its partition alone, and Seek resumes it", brokers: 1, partitions: 2, maxWait: 100 * time.Millisecond,
			run: func(t *testing.T, e *fetchEnv) {
				e.produce(t, []int{0, 1}, 0, 10)
				if err := e.cluster.DeleteRecords(fetchTopic, 0, 5); err != nil {
					t.Fatal(err)
				}
				r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 2, 1: 0}})
				defer r.Close()
				var reported []map[int]int64
				got := readAll(t, r, 15, func(gone map[int]int64) {
					reported = append(reported, maps.Clone(gone))
					r.Seek(fetchTopic, 0, 5)
				})
				if want := []map[int]int64{{0: 2}}; !slices.EqualFunc(reported, want, maps.Equal) {
					t.Errorf("reported out of range %v, want %v", reported, want)
				}
				if !slices.Equal(got[0], offsets(5, 10)) || !slices.Equal(got[1], offsets(0, 10)) {
					t.Errorf("got %v, want partition 0 from 5 and partition 1 from 0", got)
				}
			},
		},
		{
			name: "a fetch ends with its context, mid-poll, and the reader reads on", brokers: 2, partitions: 2, maxWait: 5 * time.Second,
			run: func(t *testing.T, e *fetchEnv) {
				r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 0, 1: 0}})
				defer r.Close()
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(200*time.Millisecond, cancel)
				start := time.Now()
				if _, err := r.Fetch(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want %v", err, context.Canceled)
				}
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("the cancelled fetch returned after %v, want at once", took)
				}
				e.produce(t, []int{0, 1}, 0, 2)
				readAll(t, r, 4, nil)
				start = time.Now()
				r.Close() // a poll of 5 s is out on one broker
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("Close took %v with a poll out, want at once", took)
				}
			},
		},
		{
			name: "nothing is fetched while the caller takes nothing", brokers: 2, partitions: 4, maxWait: 100 * time.Millisecond,
			run: func(t *testing.T, e *fetchEnv) {
				e.produce(t, []int{0, 1, 2, 3}, 0, 2)
				r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 0, 1: 0, 2: 0, 3: 0}})
				defer r.Close()
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if _, err := r.Fetch(ctx); err != nil {
					t.Fatal(err)
				}
				before := len(e.seen())
				time.Sleep(time.Second)
				// At most the request already out to the other broker, whose answer waits for the next Fetch.
				if n := len(e.seen()) - before; n > 1 {
					t.Errorf("%d fetch requests while the caller took nothing, want at most 1", n)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newFetchEnv(t, c.brokers, c.partitions, c.maxWait))
		})
	}
}

// A null value and an empty one stay apart, as the protocol's "p":null and "p":"" do.
func TestFetcherKeepsNullApartFromEmpty(t *testing.T) {
	e := newFetchEnv(t, 1, 1, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, err := range e.k.Produce(ctx, []bridge.Record{
		{Topic: fetchTopic, Partition: 0, Value: nil}, {Topic: fetchTopic, Partition: 0, Value: []byte{}},
	}) {
		if err != nil {
			t.Fatalf("producing record %d: %v", i, err)
		}
	}
	r := e.k.ReadPartitions(map[string]map[int]int64{fetchTopic: {0: 0}})
	defer r.Close()
	var got []bridge.Record
	for len(got) < 2 {
		recs, err := r.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
	}
	if got[0].Value != nil || got[1].Value == nil || len(got[1].Value) != 0 {
		t.Errorf("values %#v and %#v, want nil and empty", got[0].Value, got[1].Value)
	}
}
