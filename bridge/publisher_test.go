package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// recordingProducer records the batches it is given; when gate is set, each Produce waits for a value from it,
// and fail decides per record whether it fails.
type recordingProducer struct {
	mu      sync.Mutex
	batches [][]string
	gate    chan struct{}
	fail    func(value string) error
}

func (p *recordingProducer) Produce(ctx context.Context, records []Record) []error {
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
		}
	}
	values := make([]string, len(records))
	errs := make([]error, len(records))
	for i, r := range records {
		values[i] = string(r.Value)
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
		} else if p.fail != nil {
			errs[i] = p.fail(values[i])
		}
	}
	p.mu.Lock()
	p.batches = append(p.batches, values)
	p.mu.Unlock()
	return errs
}

func (p *recordingProducer) got() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.batches)
}

type failure struct {
	id    string
	topic string
	err   error
}

func newTestPublisher(p Producer, limit int, interval time.Duration) (*Publisher, func() []failure) {
	var mu sync.Mutex
	var failures []failure
	pub := newPublisher(p, ProducerConfig{MQLimit: limit, MQInterval: interval, MaxMessageBytes: 1 << 20, MaxBufferBytes: 1 << 30}, time.Minute,
		func(ref requestRef, rec *Record, _ bool, err error) {
			mu.Lock()
			failures = append(failures, failure{string(ref.id), rec.Topic, err})
			mu.Unlock()
		})
	return pub, func() []failure {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(failures)
	}
}

func add(t *testing.T, pub *Publisher, values ...string) {
	t.Helper()
	for _, v := range values {
		ref := requestRef{id: json.RawMessage(`"` + v + `"`)}
		if err := pub.Add(t.Context(), Record{Topic: "t", Partition: -1, Value: []byte(v)}, ref, false); err != nil {
			t.Fatalf("Add(%s): %v", v, err)
		}
	}
}

func TestPublisherTriggers(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		interval time.Duration
		add      []string
		after    time.Duration // time waited after the adds
		want     [][]string
	}{
		{"mq_limit flushes before mq_interval", 3, time.Hour, []string{"a", "b", "c"}, 0, [][]string{{"a", "b", "c"}}},
		{"below mq_limit waits for mq_interval", 3, time.Hour, []string{"a", "b"}, time.Hour - time.Nanosecond, nil},
		{"mq_interval flushes a partial buffer", 3, 200 * time.Millisecond, []string{"a", "b"}, 200 * time.Millisecond, [][]string{{"a", "b"}}},
		{"mq_interval 0 sends each at once", 100, 0, []string{"a"}, 0, [][]string{{"a"}}},
		{"records past mq_limit start the next batch", 2, time.Hour, []string{"a", "b", "c"}, 0, [][]string{{"a", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				prod := &recordingProducer{}
				pub, _ := newTestPublisher(prod, tt.limit, tt.interval)
				add(t, pub, tt.add...)
				time.Sleep(tt.after)
				synctest.Wait()
				if got := prod.got(); !slices.EqualFunc(got, tt.want, slices.Equal) {
					t.Fatalf("got batches %q, want %q", got, tt.want)
				}
				pub.Close(time.Second)
			})
		})
	}
}

// The interval counts from the first record of a batch, not from the previous flush.
func TestPublisherIntervalStartsAtFirstRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		prod := &recordingProducer{}
		pub, _ := newTestPublisher(prod, 100, time.Second)
		add(t, pub, "a")
		time.Sleep(time.Second)
		synctest.Wait()
		time.Sleep(5 * time.Second) // idle: nothing buffered, nothing sent
		add(t, pub, "b")
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		if got := prod.got(); len(got) != 1 {
			t.Fatalf("got batches %q before the interval of b elapsed, want only [a]", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got, want := prod.got(), [][]string{{"a"}, {"b"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("got batches %q, want %q", got, want)
		}
		pub.Close(time.Second)
	})
}

// A full buffer blocks Add (and so the socket's reader) until a flush takes it; nothing is dropped and the order
// holds.
func TestPublisherFullBufferBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		prod := &recordingProducer{gate: make(chan struct{})}
		pub, _ := newTestPublisher(prod, 1, time.Hour)
		add(t, pub, "a") // flushing, the producer waits on the gate
		add(t, pub, "b") // buffered: the buffer is now full
		returned := make(chan struct{})
		go func() {
			add(t, pub, "c")
			close(returned)
		}()
		synctest.Wait()
		select {
		case <-returned:
			t.Fatal("Add returned while the buffer was full")
		default:
		}
		prod.gate <- struct{}{} // a is written; the flusher takes b, which makes room for c
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Fatal("Add still blocked after a flush made room")
		}
		close(prod.gate)
		pub.Close(time.Second)
		if got, want := prod.got(), [][]string{{"a"}, {"b"}, {"c"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("got batches %q, want %q", got, want)
		}
	})
}

// Close sends what is buffered, even with an interval that has not elapsed.
func TestPublisherCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		prod := &recordingProducer{}
		pub, failures := newTestPublisher(prod, 100, time.Hour)
		add(t, pub, "a", "b")
		pub.Close(time.Second)
		if got, want := prod.got(), [][]string{{"a", "b"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("got batches %q, want %q", got, want)
		}
		if f := failures(); len(f) != 0 {
			t.Fatalf("got failures %v, want none", f)
		}
	})
}

// A flush that outlives Close's deadline is abandoned and its publishes are reported failed.
func TestPublisherCloseDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		prod := &recordingProducer{gate: make(chan struct{})} // never opened: Produce waits for its context
		pub, failures := newTestPublisher(prod, 100, time.Hour)
		add(t, pub, "a")
		start := time.Now()
		pub.Close(3 * time.Second)
		if waited := time.Since(start); waited != 3*time.Second {
			t.Fatalf("Close took %v, want the 3s deadline", waited)
		}
		f := failures()
		if len(f) != 1 || f[0].id != `"a"` || !errors.Is(f[0].err, context.Canceled) {
			t.Fatalf("got failures %v, want a cancelled", f)
		}
	})
}

// Each record Kafka refuses is reported with its own request; the others are not.
func TestPublisherReportsFailuresPerRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refused := errors.New("refused")
		prod := &recordingProducer{fail: func(v string) error {
			if v == "b" || v == "d" {
				return refused
			}
			return nil
		}}
		pub, failures := newTestPublisher(prod, 4, time.Hour)
		add(t, pub, "a", "b", "c", "d")
		pub.Close(time.Second)
		got := failures()
		want := []failure{{`"b"`, "t", refused}, {`"d"`, "t", refused}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got failures %v, want %v", got, want)
		}
	})
}

func TestPublisherRefusesOversizedRecords(t *testing.T) {
	prod := &recordingProducer{}
	pub := newPublisher(prod, ProducerConfig{MQLimit: 10, MQInterval: 0, MaxMessageBytes: 1000, MaxBufferBytes: 1 << 20}, time.Minute,
		func(requestRef, *Record, bool, error) {})
	defer pub.Close(time.Second)
	err := pub.Add(t.Context(), Record{Topic: "t", Value: make([]byte, 1000)}, requestRef{}, false)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("got %v, want ErrMessageTooLarge", err)
	}
	if err := pub.Add(t.Context(), Record{Topic: "t", Value: make([]byte, 900)}, requestRef{}, false); err != nil {
		t.Fatalf("got %v for a record that fits, want nil", err)
	}
}

// After a flush of more records than a Publisher keeps the slices of, a quiet publisher holds no batch, and the
// next publish finds room for as many records as that flush took, from largeBatches or made at once, rather than
// growing a batch record by record.
func TestPublisherBatchRoom(t *testing.T) {
	for _, tt := range []struct {
		name      string
		flushed   int
		drainPool bool // the collector emptied largeBatches meanwhile
		wantRoom  int
	}{
		{"a large flush, its batch pooled", 3 * keptBatchRecords, false, 3 * keptBatchRecords},
		{"a large flush, the pool emptied", 3 * keptBatchRecords, true, 3 * keptBatchRecords},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				prod := &recordingProducer{}
				pub, _ := newTestPublisher(prod, tt.flushed, time.Hour)
				values := make([]string, tt.flushed)
				for i := range values {
					values[i] = fmt.Sprint(i)
				}
				add(t, pub, values...)
				synctest.Wait()
				if got := prod.got(); len(got) != 1 || len(got[0]) != tt.flushed {
					t.Fatalf("got %d batches, want one of %d records", len(got), tt.flushed)
				}
				pub.mu.Lock()
				held := cap(pub.buf.records)
				pub.mu.Unlock()
				if held != 0 {
					t.Fatalf("got room for %d records held by a quiet publisher, want none", held)
				}
				if tt.drainPool {
					for largeBatches.Get() != nil {
					}
				}
				add(t, pub, "next")
				pub.mu.Lock()
				room := cap(pub.buf.records)
				pub.mu.Unlock()
				if room < tt.wantRoom {
					t.Errorf("got room for %d records after the next publish, want at least %d", room, tt.wantRoom)
				}
				pub.Close(time.Second)
			})
		})
	}
}

// publishes_total{result="accepted"} counts what each flush takes, all of it, and nothing still buffered.
func TestPublisherCountsAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		accepted := func() float64 {
			var m dto.Metric
			if err := publishResults["accepted"].Write(&m); err != nil {
				t.Fatal(err)
			}
			return m.GetCounter().GetValue()
		}
		before := accepted()
		pub, _ := newTestPublisher(&recordingProducer{}, 3, time.Hour)
		add(t, pub, "a", "b", "c", "d")
		synctest.Wait()
		if got := accepted() - before; got != 3 {
			t.Errorf("got %v accepted after a flush of 3 with 1 buffered, want 3", got)
		}
		pub.Close(time.Second)
		if got := accepted() - before; got != 4 {
			t.Errorf("got %v accepted after the close flushed the last, want 4", got)
		}
	})
}
