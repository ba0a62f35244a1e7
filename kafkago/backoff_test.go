package kafkago

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	b := backoff{first: 20 * ms, most: 100 * ms}
	var got []time.Duration
	for range 5 {
		got = append(got, b.step())
	}
	if want := []time.Duration{20 * ms, 40 * ms, 80 * ms, 100 * ms, 100 * ms}; !slices.Equal(got, want) {
		t.Errorf("pauses %v, want %v", got, want)
	}
	b.reset()
	if d := b.step(); d != 20*ms {
		t.Errorf("after reset: %v, want the first pause again", d)
	}
	synctest.Test(t, func(t *testing.T) {
		b := backoff{first: time.Second, most: time.Minute}
		start := time.Now()
		if !b.wait(t.Context()) || time.Since(start) != time.Second {
			t.Errorf("waited %v, want 1s", time.Since(start))
		}
		ctx, cancel := context.WithTimeout(t.Context(), 500*ms)
		defer cancel()
		if b.wait(ctx) {
			t.Error("a wait past its context's end reported true")
		}
	})
}
