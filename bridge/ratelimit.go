package bridge

import (
	"time"

	"golang.org/x/time/rate"
)

// publishLimiter bounds one socket's publishes in messages and in bytes per second. Over the bound a publish is
// refused (s:1, rate_limited) rather than queued: a queue would only grow.
type publishLimiter struct {
	messages *rate.Limiter // nil: no bound
	bytes    *rate.Limiter // nil: no bound
}

func newPublishLimiter(l Limits, maxMessageBytes int) *publishLimiter {
	p := &publishLimiter{}
	if l.PublishRate > 0 {
		p.messages = rate.NewLimiter(rate.Limit(l.PublishRate), max(l.PublishBurst, 1))
	}
	if l.PublishBytesRate > 0 {
		// A burst of at least one largest message, so that every allowed message can pass.
		p.bytes = rate.NewLimiter(rate.Limit(l.PublishBytesRate), max(l.PublishBytesRate, maxMessageBytes))
	}
	return p
}

// allow reports whether a publish of size bytes fits the bounds now, and takes it from them if so.
func (p *publishLimiter) allow(now time.Time, size int) bool {
	if p.messages != nil && !p.messages.AllowN(now, 1) {
		return false
	}
	if p.bytes != nil && !p.bytes.AllowN(now, size) {
		return false
	}
	return true
}
