package bridge

import (
	"container/heap"
	"sync"
	"time"
)

// CloseCredentialExpired is the close code of a socket whose credential expired, or that reached the route's
// largest connection age: the client should get a new credential and reconnect with it. 4000-4999 are for
// applications (RFC 6455 §7.4.2), so no other software means something else by it.
const CloseCredentialExpired = 4001

// expiries closes sessions at their Client.CloseAt (see Session.shutdown: the same flush as any server close),
// with one timer for the hub whatever the number of sessions, as keepalive is one ticker: an idle socket carries
// no timer of its own.
type expiries struct {
	mu      sync.Mutex
	due     expiryHeap
	at      map[*Session]*expiry
	timer   *time.Timer
	stopped bool
}

type expiry struct {
	s     *Session
	at    time.Time
	index int
}

// add schedules s to close at at.
func (e *expiries) add(s *Session, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	if e.at == nil {
		e.at = make(map[*Session]*expiry)
	}
	x := &expiry{s: s, at: at}
	e.at[s] = x
	heap.Push(&e.due, x)
	e.arm()
}

// remove forgets a session that has ended, so that the hub does not hold it until its moment.
func (e *expiries) remove(s *Session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.at[s]; ok {
		heap.Remove(&e.due, x.index)
		delete(e.at, s)
	}
}

// stop cancels every moment still to come: the hub has closed its sessions.
func (e *expiries) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	if e.timer != nil {
		e.timer.Stop()
	}
}

// arm sets the timer to the earliest moment; e.mu is held.
func (e *expiries) arm() {
	if len(e.due) == 0 {
		return
	}
	wait := time.Until(e.due[0].at)
	if e.timer == nil {
		e.timer = time.AfterFunc(wait, e.fire)
		return
	}
	e.timer.Reset(wait)
}

// fire closes every session whose moment has come and sets the timer to the next one.
func (e *expiries) fire() {
	e.mu.Lock()
	var closing []*Session
	now := time.Now()
	for len(e.due) > 0 && !e.due[0].at.After(now) {
		x := heap.Pop(&e.due).(*expiry)
		delete(e.at, x.s)
		closing = append(closing, x.s)
	}
	if !e.stopped {
		e.arm()
	}
	e.mu.Unlock()
	for _, s := range closing {
		if s.client.ClosesAtAge {
			s.logger().Info("closing a socket: it reached max_connection_age")
		} else {
			s.logger().Info("closing a socket: its credential expired")
		}
		s.shutdown(CloseCredentialExpired)
	}
}

// expiryHeap orders moments, earliest first (container/heap).
type expiryHeap []*expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*expiry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
