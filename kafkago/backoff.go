package kafkago

import (
	"context"
	"time"
)

// backoff is the pause between retries of every loop of this package that retries Kafka: it doubles after each
// failure, from first up to most, and starts again from first after a success (reset).
type backoff struct {
	first, most time.Duration
	next        time.Duration
}

// step returns the pause to take now and doubles the next one.
func (b *backoff) step() time.Duration {
	d := max(b.next, b.first)
	b.next = min(2*d, b.most)
	return d
}

// reset makes the next pause the first again.
func (b *backoff) reset() { b.next = 0 }

// wait takes the next pause; it reports false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.step())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
