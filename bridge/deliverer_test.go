package bridge

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// deliveryTest runs a deliverer in the bubble: records go in on the channel, frames come out on the sink.
type deliveryTest struct {
	gen     *fakeGeneration
	sink    *fakeSink
	records chan Record
	d       *deliverer
}

func startDeliverer(t *testing.T, settings deliverySettings) *deliveryTest {
	dt := &deliveryTest{gen: newFakeGeneration(t), sink: newFakeSink(), records: make(chan Record, fetchQueueRecords)}
	settings.meta = true
	settings.closeTimeout = cmpOr(settings.closeTimeout, 5*time.Second)
	dt.d = newDeliverer(settings, dt.gen, dt.records, &byteBudget{max: 1 << 20}, dt.sink, zap.NewNop())
	dt.gen.Start(dt.d.run)
	return dt
}

func cmpOr(d, or time.Duration) time.Duration {
	if d == 0 {
		return or
	}
	return d
}

func (dt *deliveryTest) feed(recs []Record) {
	for _, r := range recs {
		dt.records <- r
	}
}

// offsets lists the offsets of each frame's notifications.
func offsets(frames [][]wireNotification) [][]int64 {
	out := make([][]int64, len(frames))
	for i, f := range frames {
		for _, n := range f {
			out[i] = append(out[i], n.Offset)
		}
	}
	return out
}

func commitsOf(topic string, part int, offs ...int64) []map[string]map[int]int64 {
	out := make([]map[string]map[int]int64, len(offs))
	for i, o := range offs {
		out[i] = map[string]map[int]int64{topic: {part: o}}
	}
	return out
}

func TestDelivererBatchesByLimitAndInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dt := startDeliverer(t, deliverySettings{limit: 4, interval: 100 * time.Millisecond})
		dt.feed(records("orders", 0, 0, 6))
		synctest.Wait()
		if got := offsets(dt.sink.write(t)); !reflect.DeepEqual(got, [][]int64{{0, 1, 2, 3}}) {
			t.Fatalf("at once: frames %v, want the full one only", got)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if got := offsets(dt.sink.write(t)); !reflect.DeepEqual(got, [][]int64{{4, 5}}) {
			t.Fatalf("after mq_interval: frames %v, want the rest", got)
		}
		dt.gen.end()
	})
}

func TestDelivererCommits(t *testing.T) {
	cases := []struct {
		name           string
		commitInterval time.Duration
		want           []map[string]map[int]int64
	}{
		// A commit per written frame, and none for what was not written.
		{"at once", 0, commitsOf("orders", 0, 2, 4)},
		// One commit per interval, of everything written in it; the last one when the generation ends.
		{"every second", time.Second, commitsOf("orders", 0, 4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dt := startDeliverer(t, deliverySettings{limit: 2, commitInterval: c.commitInterval})
				dt.feed(records("orders", 0, 0, 2))
				synctest.Wait()
				dt.sink.write(t)
				synctest.Wait()
				dt.feed(records("orders", 0, 2, 2))
				synctest.Wait()
				dt.sink.write(t)
				synctest.Wait()
				if c.commitInterval > 0 && len(dt.gen.committed()) != 0 {
					t.Fatalf("committed %v before the commit interval", dt.gen.committed())
				}
				time.Sleep(c.commitInterval)
				synctest.Wait()
				dt.feed(records("orders", 0, 4, 1)) // queued, never written
				synctest.Wait()
				dt.sink.mu.Lock()
				dt.sink.refuse = true
				close(dt.sink.dataEnd) // the socket is gone: the frame it holds will not be written
				dt.sink.mu.Unlock()
				dt.gen.end()
				if got := dt.gen.committed(); !reflect.DeepEqual(got, c.want) {
					t.Errorf("commits %v, want %v", got, c.want)
				}
			})
		})
	}
}

// A frame whose partitions' records interleave commits each partition's last offset in it, of every topic.
func TestDelivererCommitsInterleavedPartitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dt := startDeliverer(t, deliverySettings{limit: 10})
		var recs []Record
		for _, r := range [][]Record{records("orders", 0, 0, 2), records("orders", 1, 5, 1), records("audit", 0, 7, 1), records("orders", 0, 2, 1), records("orders", 1, 6, 1)} {
			recs = append(recs, r...)
		}
		dt.feed(recs)
		synctest.Wait()
		if got := offsets(dt.sink.write(t)); !reflect.DeepEqual(got, [][]int64{{0, 1, 5, 7, 2, 6}}) {
			t.Fatalf("frames %v, want one of them all", got)
		}
		synctest.Wait()
		want := []map[string]map[int]int64{{"orders": {0: 3, 1: 7}, "audit": {0: 8}}}
		if got := dt.gen.committed(); !reflect.DeepEqual(got, want) {
			t.Errorf("commits %v, want %v", got, want)
		}
		dt.gen.end()
	})
}

// The last commit waits for the frames the writer holds: the client may have read them and left.
func TestDelivererLastCommitWaitsForTheWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dt := startDeliverer(t, deliverySettings{limit: 10})
		dt.feed(records("orders", 0, 0, 3))
		synctest.Wait()
		ended := make(chan struct{})
		go func() { dt.gen.end(); close(ended) }()
		synctest.Wait()
		if len(dt.gen.committed()) != 0 {
			t.Fatalf("committed %v before the frame was written", dt.gen.committed())
		}
		dt.sink.write(t)
		<-ended
		if got, want := dt.gen.committed(), commitsOf("orders", 0, 3); !reflect.DeepEqual(got, want) {
			t.Errorf("commits %v, want %v", got, want)
		}
	})
}

// With client commits, at most max_unacked notifications are out, and only what the client acknowledged is
// committed: by notification id (everything up to it) or by partition and offset.
func TestDelivererClientAcknowledgements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dt := startDeliverer(t, deliverySettings{limit: 10, clientCommit: true, maxUnacked: 3})
		dt.feed(records("orders", 0, 0, 5))
		dt.feed(records("orders", 1, 0, 2))
		synctest.Wait()
		frames := dt.sink.write(t)
		if got := offsets(frames); !reflect.DeepEqual(got, [][]int64{{0, 1, 2}}) {
			t.Fatalf("frames %v, want max_unacked (3) notifications", got)
		}
		synctest.Wait()
		if len(dt.sink.write(t)) != 0 || len(dt.gen.committed()) != 0 {
			t.Fatal("more was delivered, or something committed, without an acknowledgement")
		}
		// Up to the second notification, by id: two acknowledged, two more may go.
		dt.d.ack(protocol.AckTarget{ByID: true, ID: frames[0][1].ID})
		synctest.Wait()
		if got, want := dt.gen.committed(), commitsOf("orders", 0, 2); !reflect.DeepEqual(got, want) {
			t.Fatalf("commits %v, want %v", got, want)
		}
		frames = dt.sink.write(t)
		if got := offsets(frames); !reflect.DeepEqual(got, [][]int64{{3, 4}}) {
			t.Fatalf("frames %v after acknowledging two, want two more", got)
		}
		// By partition and offset: partition 0 up to 4; partition 1's records may now come.
		dt.d.ack(protocol.AckTarget{Topic: "orders", Partition: 0, Offset: 4})
		synctest.Wait()
		frames = dt.sink.write(t)
		var parts []int
		for _, n := range frames[0] {
			parts = append(parts, n.Part)
		}
		if !slices.Equal(parts, []int{1, 1}) {
			t.Fatalf("frames %v, want partition 1's two records", frames)
		}
		dt.d.ack(protocol.AckTarget{ByID: true, ID: frames[0][1].ID})
		synctest.Wait()
		dt.gen.end()
		last := map[string]map[int]int64{}
		for _, c := range dt.gen.committed() {
			for p, o := range c["orders"] {
				if last["orders"] == nil {
					last["orders"] = map[int]int64{}
				}
				last["orders"][p] = o
			}
		}
		if want := map[string]map[int]int64{"orders": {0: 5, 1: 2}}; !maps.EqualFunc(last, want, maps.Equal) {
			t.Errorf("committed up to %v, want %v", last, want)
		}
	})
}
