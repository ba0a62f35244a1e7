package bridge

import (
	"context"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// queuedOffsets takes the frames queued on an unrun session's writer and returns their notifications' offsets.
func queuedOffsets(t *testing.T, s *Session) []int64 {
	t.Helper()
	var got []int64
	for {
		select {
		case f := <-s.out:
			s.pending.Add(-1)
			s.queued.give(f.size)
			for _, n := range decodeFrame(t, f.data) {
				got = append(got, n.Offset)
			}
		default:
			return got
		}
	}
}

// A member holds the stream's frames until its subscribe reply is queued, then passes them on in order.
func TestBroadcastMemberHoldsUntilReleased(t *testing.T) {
	s := queueSession(t)
	st := newStream(NewBroadcaster(newFakeLog("news", 0), zap.NewNop()), streamKey{topic: "news", limit: 10, meta: true}, LastOffset, time.Time{})
	st.next = map[int]int64{0: 0}
	m := st.add(s, false)
	st.publish(records("news", 0, 0, 2))
	st.publish(records("news", 0, 2, 1))
	if got := queuedOffsets(t, s); len(got) != 0 {
		t.Fatalf("queued %v before the release", got)
	}
	m.release("news")
	st.publish(records("news", 0, 3, 1))
	if got, want := queuedOffsets(t, s), []int64{0, 1, 2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("queued %v, want %v", got, want)
	}
}

// The stream goes on delivering while a member is released: its next batches wait for the held ones and never go
// ahead of them. Before release queued under the member's lock, a few of 5,000 rounds here had a record delivered
// during the release arrive before those held.
func TestBroadcastReleaseWhileStreamDelivers(t *testing.T) {
	s := queueSession(t)
	b := NewBroadcaster(newFakeLog("news", 0), zap.NewNop())
	const held, during = outQueueFrames / 2, outQueueFrames / 2 // all fit the queue, which nothing reads
	for round := range 5000 {
		st := newStream(b, streamKey{topic: "news", limit: 1, meta: true}, LastOffset, time.Time{})
		st.next = map[int]int64{0: 0}
		m := st.add(s, false)
		for o := range held {
			st.publish(records("news", 0, int64(o), 1))
		}
		start, released := make(chan struct{}), make(chan struct{})
		go func() { defer close(released); <-start; m.release("news") }()
		close(start)
		for o := range during {
			st.publish(records("news", 0, int64(held+o), 1))
		}
		<-released
		got := queuedOffsets(t, s)
		for i, offset := range got {
			if offset != int64(i) {
				t.Fatalf("round %d: queued %v, want every offset in order", round, got)
			}
		}
		if len(got) != held+during {
			t.Fatalf("round %d: queued %v, want %d frames", round, got, held+during)
		}
	}
}

// A member that starts behind the shared stream (a resume with seek) reads up to where the stream stands on its
// own, what the stream delivers meanwhile included, then joins it between two batches: every record once, in
// order.
func TestBroadcastCatchUpHandsOver(t *testing.T) {
	s := queueSession(t)
	log := newFakeLog("news", 10)
	s.hub.kafka = log
	st := newStream(NewBroadcaster(log, zap.NewNop()), streamKey{topic: "news", limit: 4, meta: true}, LastOffset, time.Time{})
	st.next = map[int]int64{0: 10}
	m := st.add(s, true)
	// The stream goes on while the member catches up: it must read these itself.
	log.append(records("news", 0, 10, 2))
	st.publish(records("news", 0, 10, 2))
	sub := &broadcastSubscription{session: s}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sub.catchUp(ctx, st, m, map[int]int64{0: 3})
	if !m.joined {
		t.Fatal("the member did not join the stream")
	}
	log.append(records("news", 0, 12, 2))
	st.publish(records("news", 0, 12, 2))
	want := []int64{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	if got := queuedOffsets(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("queued %v, want %v", got, want)
	}
	if got := log.readers(); !reflect.DeepEqual(got, []string{"0@3"}) {
		t.Errorf("readers %v, want one catch-up read from 3", got)
	}
}

// A shared stream reads every partition with one reader (each partition keeping its own share of the lag gauge)
// and hands each record to its members once.
func TestBroadcastStreamReadsEveryPartition(t *testing.T) {
	s := queueSession(t)
	log := newFakeLog("news", 0, 0, 0)
	b := NewBroadcaster(log, zap.NewNop())
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, m, starts, err := b.join(ctx, streamKey{topic: "news", limit: 100, meta: true}, s, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{0: 0, 1: 0, 2: 0}; !reflect.DeepEqual(starts, want) {
		t.Fatalf("starts %v, want %v", starts, want)
	}
	m.release("news")
	for p := range 3 {
		log.append(records("news", p, 0, 5))
	}
	seen := map[[2]int64]int{}
	for len(seen) < 15 && ctx.Err() == nil {
		select {
		case f := <-s.out:
			s.pending.Add(-1)
			s.queued.give(f.size)
			for _, n := range decodeFrame(t, f.data) {
				seen[[2]int64{int64(n.Part), n.Offset}]++
			}
		case <-ctx.Done():
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("partition %d offset %d delivered %d times", k[0], k[1], n)
		}
	}
	if len(seen) != 15 {
		t.Fatalf("delivered %d records, want 15", len(seen))
	}
	b.leave(st, s)
	if got := b.ReadersStarted(); got != 3 {
		t.Errorf("readers started %d, want one per partition", got)
	}
}

// A fan-out calls every member once, and only then returns, however many goroutines share it.
func TestFanOutDeliversEveryMemberOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // more CPUs than the machine may have: 4 chunks at most
	for _, n := range []int{0, 1, fanOutChunk - 1, 2 * fanOutChunk, 2*fanOutChunk + 1, 3*fanOutChunk + 7, 10 * fanOutChunk} {
		members := make([]*member, n)
		index := make(map[*member]int, n)
		for i := range members {
			members[i] = &member{}
			index[members[i]] = i
		}
		calls := make([]atomic.Int32, n)
		var goroutines sync.Map
		fanOut(members, func(m *member) {
			calls[index[m]].Add(1)
			goroutines.Store(goroutineID(), true)
		})
		for i := range calls {
			if got := calls[i].Load(); got != 1 {
				t.Fatalf("%d members: member %d delivered %d times, want once (after fanOut returned)", n, i, got)
			}
		}
		used := 0
		goroutines.Range(func(any, any) bool { used++; return true })
		if want := max(1, min(4, n/fanOutChunk)); n > 0 && used != want {
			t.Errorf("%d members: delivered on %d goroutines, want %d", n, used, want)
		}
	}
}

// goroutineID is the calling goroutine's number, from its stack's first line ("goroutine 7 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	return strings.Fields(string(buf))[1]
}
