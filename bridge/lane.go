package bridge

import "github.com/wskafka/wskafka/protocol"

// The lane keeps the read loop reading while a request waits on Kafka. A request that may wait (topic admin,
// subscribe, unsubscribe, health with Kafka) runs on a goroutine of the session's own, started when the lane
// gets work and ended when it has none, so an idle socket carries none; the requests read behind it queue on the
// lane, in order, so the session still handles its requests one after another. Meanwhile the read loop sees the
// peer's pongs (a client waiting on its own request is not dead) and its close frame (which cancels the wait).
// A full lane holds the read loop, as a full publish buffer does: TCP backpressure, never an unbounded queue.

// laneRequests bounds the requests queued behind the one running on the lane.
const laneRequests = 16

// laneRequest is one request for the lane: a decoded request, or the error decoding it gave.
type laneRequest struct {
	req  *protocol.Request
	perr *protocol.Error
	// counted says the request was read before the close frame was decided on, and counts as unanswered.
	counted bool
}

// waitsOnKafka reports whether handling req may wait on Kafka. A publish waits only for room in the buffer,
// which is backpressure the read loop must feel.
func waitsOnKafka(req *protocol.Request) bool {
	switch req.Op {
	case protocol.OpCreateTopics, protocol.OpListTopics, protocol.OpDescribeTopics, protocol.OpDeleteTopics,
		protocol.OpSubscribe, protocol.OpUnsubscribe:
		return true
	case protocol.OpHealth:
		return req.Kafka
	}
	return false
}

// dispatch handles one request read from the socket: at once on the read loop when it cannot wait on Kafka and
// nothing is ahead of it on the lane, else on the lane. A ping is answered at once, whatever is ahead of it: it
// tells the client the connection lives, and orders nothing.
func (s *Session) dispatch(req protocol.Request, perr *protocol.Error) {
	s.reqMu.Lock()
	counted := !s.closeDecided
	if counted {
		s.unanswered++
	}
	if perr == nil && req.Op == protocol.OpPing || s.laneLen == 0 && (perr != nil || !waitsOnKafka(&req)) {
		s.reqMu.Unlock()
		s.serve(&req, perr)
		s.answered(counted)
		return
	}
	if s.lane == nil {
		s.lane = make(chan laneRequest, laneRequests)
	}
	if s.laneLen++; s.laneLen == 1 {
		s.laneRunning.Add(1)
		go s.runLane(s.lane)
	}
	lane := s.lane
	s.reqMu.Unlock()
	queued := new(protocol.Request)
	*queued = req
	lane <- laneRequest{req: queued, perr: perr, counted: counted}
}

// runLane handles the lane's requests until none is left.
func (s *Session) runLane(lane <-chan laneRequest) {
	defer s.laneRunning.Done()
	for {
		r := <-lane
		s.serve(r.req, r.perr)
		s.reqMu.Lock()
		if r.counted {
			s.unanswered--
		}
		s.laneLen--
		idle := s.laneLen == 0
		if idle {
			// The channel's slots would keep the last requests alive for as long as the socket stays open.
			s.lane = nil
		}
		s.reqMu.Unlock()
		if idle {
			return
		}
	}
}

// answered counts a request handled on the read loop as answered (a publish: buffered, the Publisher counts it
// from there).
func (s *Session) answered(counted bool) {
	if !counted {
		return
	}
	s.reqMu.Lock()
	s.unanswered--
	s.reqMu.Unlock()
}

func (s *Session) serve(req *protocol.Request, perr *protocol.Error) {
	if perr != nil {
		s.replyError(req, perr)
		return
	}
	s.do(req)
}
