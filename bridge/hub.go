package bridge

import (
	"cmp"
	"context"
	"errors"
	"iter"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/protocol"
)

// Kafka is what the bridge needs of a Kafka cluster.
type Kafka interface {
	Producer
	Admin
	Consumers
}

// connections numbers sessions across every Hub of the process, so that health's "ws" is unique within the
// server, also across config reloads.
var connections atomic.Uint64

// Hub is the bridge of one handler: its configuration, its Kafka clients, and its live sessions.
type Hub struct {
	cfg         Config
	kafka       Kafka
	broadcaster *Broadcaster
	topics      *knownTopics
	logger      *zap.Logger

	ctx    context.Context // ends when the hub closes; every session derives from it
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[*Session]struct{}
	admitted int            // connections admitted, upgraded or not yet
	perKey   map[string]int // connections admitted per client key
	closed   bool
	// closeTimers close the sessions one by one, spread over a window after a reload.
	closeTimers []*time.Timer
	running     sync.WaitGroup
	pinger      sync.WaitGroup

	// expiries close the sessions whose Client.CloseAt has come.
	expiries expiries
}

// NewHub returns a hub serving sessions with cfg over kafka, sharing the broadcast streams of broadcaster (one per
// cluster, so that a topic is read once however many handlers and configs use it).
func NewHub(cfg Config, kafka Kafka, broadcaster *Broadcaster, logger *zap.Logger) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		cfg: cfg, kafka: kafka, broadcaster: broadcaster, topics: newKnownTopics(kafka, cfg.RequestTimeout), logger: logger,
		ctx: ctx, cancel: cancel, sessions: make(map[*Session]struct{}), perKey: make(map[string]int),
	}
	if cfg.Limits.PingInterval > 0 {
		h.pinger.Go(h.keepalive)
	}
	return h
}

// keepalive checks every socket twice per ping interval, from one goroutine for the whole hub.
func (h *Hub) keepalive() {
	l := h.cfg.Limits
	ticker := time.NewTicker(l.PingInterval / 2)
	defer ticker.Stop()
	for {
		select {
		case now := <-ticker.C:
			for _, s := range h.snapshot() {
				s.keepalive(now, l.PingInterval, l.PongTimeout)
			}
		case <-h.ctx.Done():
			return
		}
	}
}

func (h *Hub) snapshot() []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	return sessions
}

// Refusals of Admit, with the HTTP status the handler answers.
var (
	ErrTooManyConnections = errors.New("too many connections on this route")
	ErrTooManyForClient   = errors.New("too many connections from this client")
)

// Admit reserves a connection for client before the upgrade, within the route's and the client's connection
// limits; release gives it back. It returns ErrTooManyConnections, ErrTooManyForClient or ErrShuttingDown when
// the connection must be refused.
func (h *Hub) Admit(client Client) (release func(), err error) {
	l := h.cfg.Limits
	key := client.key()
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, ErrShuttingDown
	case l.MaxConnections > 0 && h.admitted >= l.MaxConnections:
		return nil, ErrTooManyConnections
	case l.MaxConnectionsPerClient > 0 && h.perKey[key] >= l.MaxConnectionsPerClient:
		return nil, ErrTooManyForClient
	}
	h.admitted++
	h.perKey[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.admitted--
			if h.perKey[key]--; h.perKey[key] == 0 {
				delete(h.perKey, key)
			}
		})
	}, nil
}

// Go runs a session for client on an upgraded connection, on a goroutine of its own that closes the connection
// and calls done when the session has ended. Close waits for it.
func (h *Hub) Go(conn *websocket.Conn, client Client, done func()) {
	s := newSession(h, conn, connections.Add(1), client)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		msg := websocket.FormatCloseMessage(websocket.CloseServiceRestart, closeReasons[websocket.CloseServiceRestart])
		// Best effort: the client learns why if it still listens; the connection closes either way.
		_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(h.cfg.CloseTimeout))
		_ = conn.Close()
		done()
		return
	}
	h.sessions[s] = struct{}{}
	h.running.Add(1)
	h.mu.Unlock()
	if !client.CloseAt.IsZero() {
		h.expiries.add(s, client.CloseAt)
	}
	metrics.connections.Inc()
	go func() {
		defer func() {
			metrics.connections.Dec()
			h.expiries.remove(s)
			h.mu.Lock()
			delete(h.sessions, s)
			h.mu.Unlock()
			done()
			h.running.Done()
		}()
		s.run()
	}()
}

// Close ends every session with the close code (1001 going away on exit, 1012 service restart on a reload, RFC
// 6455 §7.4.1 and the IANA registry) and refuses new connections from now on. With spread 0 every session starts
// closing at once; otherwise each at its own moment, uniformly spread over the window, so that thousands of
// clients do not reconnect at the same instant (what Caddy's reverse proxy does with stream_close_delay). The
// members of one consumer group share their moment: closed together, the group rebalances once rather than once
// per member leaving and once per member coming back. A later Close with spread 0 (exit) hurries the sessions
// not yet closing. Each session answers what it read, flushes its publishes, leaves its consumer group and sends
// its close frame, every step bounded by close_timeout. Close does not wait: Wait does.
func (h *Hub) Close(code int, spread time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, t := range h.closeTimers {
		t.Stop()
	}
	h.closeTimers = nil
	if spread <= 0 {
		for s := range h.sessions {
			s.shutdown(code)
		}
		return
	}
	for s, delay := range closeMoments(maps.Keys(h.sessions), spread, (*Session).group) {
		h.closeTimers = append(h.closeTimers, time.AfterFunc(delay, func() { s.shutdown(code) }))
	}
}

// closeMoments picks when within spread each session closes: uniformly at random, the members of a consumer
// group at their group's moment.
func closeMoments(sessions iter.Seq[*Session], spread time.Duration, group func(*Session) (string, bool)) map[*Session]time.Duration {
	moments := make(map[*Session]time.Duration)
	groups := make(map[string]time.Duration)
	for s := range sessions {
		moment := rand.N(spread)
		if g, ok := group(s); ok {
			if m, seen := groups[g]; seen {
				moment = m
			} else {
				groups[g] = moment
			}
		}
		moments[s] = moment
	}
	return moments
}

// Sessions counts the open sessions.
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Wait waits, after Close, until every session has ended, then stops the hub's keepalive.
func (h *Hub) Wait() {
	h.running.Wait()
	h.mu.Lock()
	for _, t := range h.closeTimers {
		t.Stop()
	}
	h.closeTimers = nil
	h.mu.Unlock()
	h.expiries.stop()
	h.cancel()
	h.pinger.Wait()
}

// lagGauge returns the consumer_lag share of one partition reader of topic.
func (h *Hub) lagGauge(topic string) *lagGauge {
	return &lagGauge{topic: topic, topicLabels: h.cfg.TopicLabels}
}

// countDelivered returns what counts a frame of batch as delivered, once it is written.
func (h *Hub) countDelivered(batch []Record) func() { return countDelivered(batch, h.cfg.TopicLabels) }

// countDelivered returns what counts a frame of batch as delivered, once it is written; with topicLabels by
// topic too.
func countDelivered(batch []Record, topicLabels bool) func() {
	n := float64(len(batch))
	if !topicLabels {
		return func() { metrics.delivered.Add(n) }
	}
	perTopic := make(map[string]float64, 1)
	for i := range batch {
		perTopic[batch[i].Topic]++
	}
	return func() {
		metrics.delivered.Add(n)
		for topic, count := range perTopic {
			metrics.topicDelivered.WithLabelValues(topic).Add(count)
		}
	}
}

// health lists the open sockets of the hub and their subscribed topics: every one, as the original did, or
// only the caller's own when its access says so.
func (h *Hub) health(caller *Session) protocol.Health {
	sessions := []*Session{caller}
	if a := caller.client.Access; a == nil || a.HealthAll {
		sessions = h.snapshot()
	}
	consumers := make([]protocol.Consumer, 0, len(sessions))
	for _, s := range sessions {
		if s.namespace() != caller.namespace() {
			continue // another tenant's socket
		}
		consumers = append(consumers, protocol.Consumer{WS: s.num, Topics: s.subscribedTopics()})
	}
	slices.SortFunc(consumers, func(a, b protocol.Consumer) int { return cmp.Compare(a.WS, b.WS) })
	return protocol.Health{Consumers: consumers}
}
