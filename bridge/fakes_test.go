package bridge

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
)

// Fakes of the Kafka port and of a socket's writer queue, for tests of the bridge's own logic.

// fakeGeneration is a Generation whose functions run on goroutines of their own and whose commits are recorded.
type fakeGeneration struct {
	assignments map[string]map[int]int64
	ctx         context.Context
	cancel      context.CancelFunc
	running     sync.WaitGroup

	mu      sync.Mutex
	commits []map[string]map[int]int64
}

func newFakeGeneration(t *testing.T) *fakeGeneration {
	g := &fakeGeneration{}
	g.ctx, g.cancel = context.WithCancel(t.Context())
	return g
}

func (g *fakeGeneration) Assignments() map[string]map[int]int64 { return g.assignments }

func (g *fakeGeneration) Start(fn func(ctx context.Context)) { g.running.Go(func() { fn(g.ctx) }) }

func (g *fakeGeneration) Commit(offsets map[string]map[int]int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.commits = append(g.commits, offsets)
	return nil
}

// end ends the generation and waits for its functions.
func (g *fakeGeneration) end() {
	g.cancel()
	g.running.Wait()
}

// committed returns the commits so far.
func (g *fakeGeneration) committed() []map[string]map[int]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]map[int]int64(nil), g.commits...)
}

// fakeSink is a socket's writer queue: frames are kept in order; the test plays the writer with write.
type fakeSink struct {
	mu      sync.Mutex
	frames  []outFrame
	refuse  bool // the socket takes no more data
	dataEnd chan struct{}
}

func newFakeSink() *fakeSink { return &fakeSink{dataEnd: make(chan struct{})} }

func (s *fakeSink) sendCtx(_ context.Context, f outFrame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse {
		return false
	}
	s.frames = append(s.frames, f)
	return true
}

func (s *fakeSink) dataEnded() <-chan struct{} { return s.dataEnd }

// write plays the writer: it takes the frames queued so far, runs their written callbacks, and returns each
// frame's notifications.
func (s *fakeSink) write(t *testing.T) [][]wireNotification {
	t.Helper()
	s.mu.Lock()
	frames := s.frames
	s.frames = nil
	s.mu.Unlock()
	out := make([][]wireNotification, len(frames))
	for i, f := range frames {
		out[i] = decodeFrame(t, f.data)
		if f.written != nil {
			f.written()
		}
	}
	return out
}

// wireNotification is one notification as a client reads it, with delivery metadata.
type wireNotification struct {
	ID     uint64 `json:"id"`
	Value  string `json:"p"`
	Topic  string `json:"topic"`
	Part   int    `json:"part"`
	Offset int64  `json:"offset"`
}

func decodeFrame(t *testing.T, frame []byte) []wireNotification {
	t.Helper()
	var notes []wireNotification
	if err := json.Unmarshal(frame, &notes); err != nil {
		t.Fatalf("frame %s: %v", frame, err)
	}
	return notes
}

// records returns n records of topic's partition from offset on, with values "v<offset>".
func records(topic string, partition int, offset int64, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		off := offset + int64(i)
		out[i] = Record{Topic: topic, Partition: partition, Offset: off, Value: []byte("v" + strconv.FormatInt(off, 10)), HighWatermark: offset + int64(n)}
	}
	return out
}
