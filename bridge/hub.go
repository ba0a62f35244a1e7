package bridge

import (
	"cmp"
	"context"
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
	logger      *zap.Logger

	ctx    context.Context // ends when the hub closes; every session derives from it
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
	running  sync.WaitGroup
}

// NewHub returns a hub serving sessions with cfg over the given cluster's clients and broadcast streams.
func NewHub(cfg Config, cluster *Cluster, logger *zap.Logger) *Hub {
	return newHub(cfg, cluster, cluster.Broadcaster, logger)
}

func newHub(cfg Config, kafka Kafka, broadcaster *Broadcaster, logger *zap.Logger) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg, kafka: kafka, broadcaster: broadcaster, logger: logger,
		ctx: ctx, cancel: cancel, sessions: make(map[*Session]struct{}),
	}
}

// Serve runs a session on an upgraded connection and returns when it has ended; the connection is closed then.
func (h *Hub) Serve(conn *websocket.Conn) {
	s := newSession(h, conn, connections.Add(1))
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		msg := websocket.FormatCloseMessage(websocket.CloseServiceRestart, closeReasons[websocket.CloseServiceRestart])
		conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(h.cfg.CloseTimeout))
		conn.Close()
		return
	}
	h.sessions[s] = struct{}{}
	h.running.Add(1)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.sessions, s)
		h.mu.Unlock()
		h.running.Done()
	}()
	s.run()
}

// Close ends every session with the close code (1001 going away on exit, 1012 service restart on a reload, RFC
// 6455 §7.4.1 and the IANA registry): each flushes its publishes, leaves its consumer group and sends its close
// frame, every step bounded by close_timeout. New connections are refused from now on.
func (h *Hub) Close(code int) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for s := range h.sessions {
		s.shutdown(code)
	}
	h.mu.Unlock()
	h.running.Wait()
	h.cancel()
}

// health lists every open socket of the hub and its subscribed topics, as the original did.
func (h *Hub) health() protocol.Health {
	h.mu.Lock()
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	consumers := make([]protocol.Consumer, 0, len(sessions))
	for _, s := range sessions {
		consumers = append(consumers, protocol.Consumer{WS: s.num, Topics: s.subscribedTopics()})
	}
	slices.SortFunc(consumers, func(a, b protocol.Consumer) int { return cmp.Compare(a.WS, b.WS) })
	return protocol.Health{Consumers: consumers}
}
