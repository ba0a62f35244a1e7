package bridge

import (
	"context"
	"sync"
)

// byteBudget bounds the bytes held in a queue. Producers take bytes before queueing and the consumer gives them
// back once done. A request larger than the whole budget is let through when nothing else is held, so that one
// big item is never stuck. The zero value is unusable; set max. It allocates nothing until someone waits.
type byteBudget struct {
	max int64

	mu   sync.Mutex
	used int64
	// freed, made by the first waiter, is closed when bytes are given back, waking every waiter to look again.
	freed chan struct{}
}

// fitsLocked reports whether n more bytes may be taken.
func (b *byteBudget) fitsLocked(n int64) bool { return b.used == 0 || b.used+n <= b.max }

// tryTake takes n bytes if they fit, and reports whether it did.
func (b *byteBudget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.fitsLocked(n) {
		return false
	}
	b.used += n
	return true
}

// take waits until n bytes fit, or until ctx or stop ends; it reports whether it took them.
func (b *byteBudget) take(ctx context.Context, stop <-chan struct{}, n int64) bool {
	for {
		b.mu.Lock()
		if b.fitsLocked(n) {
			b.used += n
			b.mu.Unlock()
			return true
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		}
	}
}

// give returns n bytes.
func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}
