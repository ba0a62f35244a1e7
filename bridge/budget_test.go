package bridge

import (
	"context"
	"testing"
	"testing/synctest"
)

func TestByteBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &byteBudget{max: 10}
		if !b.tryTake(6) || b.tryTake(6) {
			t.Fatal("got 6 then 6 taken from 10, want only the first")
		}
		taken := make(chan bool)
		go func() { taken <- b.take(t.Context(), nil, 6) }()
		synctest.Wait()
		select {
		case <-taken:
			t.Fatal("take returned while the budget was short")
		default:
		}
		b.give(6)
		if !<-taken {
			t.Fatal("take gave up after bytes were given back")
		}
		// One item larger than the whole budget passes when nothing else is held.
		b.give(6)
		if !b.tryTake(100) {
			t.Fatal("got an oversized item refused on an empty budget, want it let through")
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() { taken <- b.take(ctx, nil, 1) }()
		synctest.Wait()
		cancel()
		if <-taken {
			t.Fatal("take succeeded after its context ended, want false")
		}
	})
}
