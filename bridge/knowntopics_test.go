package bridge

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countingAdmin answers Topics from a fixed cluster and counts the requests; gate, when set, holds each request
// until it is closed.
type countingAdmin struct {
	Admin
	exists   map[string]bool
	requests atomic.Int32
	gate     chan struct{}
	fail     error // every request's error when set
}

func (a *countingAdmin) Topics(ctx context.Context, names []string) (map[string][]PartitionInfo, error) {
	a.requests.Add(1)
	if a.fail != nil {
		return nil, a.fail
	}
	if a.gate != nil {
		select {
		case <-a.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	found := make(map[string][]PartitionInfo)
	for _, n := range names {
		if a.exists[n] {
			found[n] = []PartitionInfo{{ID: 0}}
		}
	}
	return found, nil
}

// Many subscribes at once to the same topics cost one metadata request; a topic found is not asked about again
// for knownTopicsTTL, one not found is asked about every time (it may have just been created).
func TestKnownTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		admin := &countingAdmin{exists: map[string]bool{"a": true, "b": true}, gate: make(chan struct{})}
		known := newKnownTopics(admin, time.Minute)
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				missing, err := known.missing(t.Context(), []string{"b", "a", "nope"})
				if err != nil || !slices.Equal(missing, []string{"nope"}) {
					t.Errorf("got %v, %v; want [nope]", missing, err)
				}
			})
		}
		synctest.Wait()
		close(admin.gate)
		wg.Wait()
		if n := admin.requests.Load(); n != 1 {
			t.Fatalf("100 subscribes at once made %d metadata requests, want 1", n)
		}

		tests := []struct {
			name     string
			after    time.Duration
			topics   []string
			missing  []string
			requests int32
		}{
			{name: "found topics are known", topics: []string{"a", "b"}, requests: 0},
			{name: "a missing topic is asked about again", topics: []string{"a", "nope"}, missing: []string{"nope"}, requests: 1},
			{name: "known topics expire", after: knownTopicsTTL, topics: []string{"a"}, requests: 1},
		}
		for _, tt := range tests {
			time.Sleep(tt.after)
			before := admin.requests.Load()
			missing, err := known.missing(t.Context(), tt.topics)
			if err != nil || !slices.Equal(missing, tt.missing) {
				t.Fatalf("%s: got %v, %v; want %v", tt.name, missing, err, tt.missing)
			}
			if n := admin.requests.Load() - before; n != tt.requests {
				t.Fatalf("%s: got %d metadata requests, want %d", tt.name, n, tt.requests)
			}
		}
	})
}

// A caller whose context ends stops waiting for a shared lookup, which goes on for the others.
func TestKnownTopicsCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		admin := &countingAdmin{exists: map[string]bool{"a": true}, gate: make(chan struct{})}
		known := newKnownTopics(admin, time.Minute)
		leaving, leave := context.WithCancel(t.Context())
		left := make(chan error)
		go func() { _, err := known.missing(leaving, []string{"a"}); left <- err }()
		stayed := make(chan []string)
		go func() { m, _ := known.missing(t.Context(), []string{"a"}); stayed <- m }()
		synctest.Wait()
		leave()
		if err := <-left; err == nil {
			t.Fatal("the caller that left got an answer, want its context's error")
		}
		close(admin.gate)
		if m := <-stayed; len(m) != 0 {
			t.Fatalf("got %v missing, want none", m)
		}
	})
}

// While Kafka cannot answer, a topic found within knownTopicsStale is still known, one never found or found
// longer ago is an error; an answer that is not about reaching Kafka is never covered up.
func TestKnownTopicsStaleWhileUnreachable(t *testing.T) {
	denied := errors.New("not authorized")
	tests := []struct {
		name    string
		after   time.Duration // since "a" was found
		topics  []string
		fail    error
		wantErr error
	}{
		{name: "unavailable, found a moment ago", after: knownTopicsTTL, topics: []string{"a"}, fail: ErrKafkaUnavailable},
		{name: "timed out, found a moment ago", after: knownTopicsTTL, topics: []string{"a"}, fail: ErrKafkaTimeout},
		{name: "unavailable, found too long ago", after: knownTopicsStale, topics: []string{"a"}, fail: ErrKafkaUnavailable, wantErr: ErrKafkaUnavailable},
		{name: "unavailable, one never found", after: knownTopicsTTL, topics: []string{"a", "b"}, fail: ErrKafkaUnavailable, wantErr: ErrKafkaUnavailable},
		{name: "another error", after: knownTopicsTTL, topics: []string{"a"}, fail: denied, wantErr: denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				admin := &countingAdmin{exists: map[string]bool{"a": true, "b": true}}
				known := newKnownTopics(admin, time.Minute)
				if _, err := known.missing(t.Context(), []string{"a"}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tt.after)
				admin.fail = tt.fail
				missing, err := known.missing(t.Context(), tt.topics)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || len(missing) != 0 {
					t.Fatalf("got %v, %v; want no missing topics and error %v", missing, err, tt.wantErr)
				}
				if admin.requests.Load() != 2 {
					t.Fatalf("got %d metadata requests, want 2: Kafka is asked every time", admin.requests.Load())
				}
			})
		})
	}
}
