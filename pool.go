package wskafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/bridge"
	"github.com/wskafka/wskafka/internal/embedded"
	"github.com/wskafka/wskafka/kafkago"
)

// pool holds what outlives one config: the embedded broker and the Kafka clients, keyed by their settings, so
// that a reload with unchanged Kafka settings keeps its connections.
var pool = caddy.NewUsagePool()

// cluster is what handlers with the same Kafka settings share, also across config reloads: the Kafka clients
// and the broadcast streams, so that a topic broadcast to sockets of many handlers is read once.
type cluster struct {
	*kafkago.Client
	broadcaster *bridge.Broadcaster
}

// newCluster builds the clients; it does not dial.
func newCluster(cfg kafkago.Config, logger *zap.Logger) (*cluster, error) {
	k, err := kafkago.New(cfg, logger)
	if err != nil {
		return nil, err
	}
	return &cluster{Client: k, broadcaster: bridge.NewBroadcaster(k, logger)}, nil
}

// Destruct stops the streams, then closes the clients.
func (c *cluster) Destruct() error {
	c.broadcaster.Close()
	return c.Client.Destruct()
}

func isEmbedded(brokers []string) bool { return len(brokers) == 1 && brokers[0] == embeddedBrokers }

// takeCluster takes the handler's cluster from the pool (and the embedded broker it talks to, if it names it),
// keyed by the canonical JSON encoding of its Kafka settings; secrets are in it only as keyed digests.
func (h *Handler) takeCluster() error {
	brokers := h.Brokers
	if isEmbedded(brokers) {
		val, _, err := pool.LoadOrNew(embeddedBrokers, func() (caddy.Destructor, error) {
			h.logger.Warn("starting the embedded Kafka broker: it is in memory and keeps nothing across restarts; set brokers for real use")
			return embedded.Start()
		})
		if err != nil {
			return err
		}
		h.poolKeys = append(h.poolKeys, embeddedBrokers)
		brokers = val.(*embedded.Broker).Addrs()
	}

	kcfg := h.kafkaConfig(brokers)
	key, err := json.Marshal(kcfg)
	if err != nil {
		return fmt.Errorf("encoding kafka settings: %w", err)
	}
	val, _, err := pool.LoadOrNew(string(key), func() (caddy.Destructor, error) {
		h.logger.Info("kafka clients ready", zap.Strings("brokers", brokers), zap.String("client_id", h.ClientID))
		return newCluster(kcfg, h.logger.Named("kafka"))
	})
	if err != nil {
		return err
	}
	h.poolKeys = append(h.poolKeys, string(key))
	h.cluster = val.(*cluster)
	return nil
}

// release gives back pool entries, in reverse: the clients before the embedded broker they talk to.
func release(keys []string) error {
	var errs []error
	for i := len(keys) - 1; i >= 0; i-- {
		if _, err := pool.Delete(keys[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closingHubs are the hubs of configs replaced by a reload whose connections are still closing, spread over
// close_delay. Exiting Caddy closes them at once.
type closingHubs struct {
	mu   sync.Mutex
	hubs map[*bridge.Hub]struct{}
	done sync.WaitGroup
}

var lingering closingHubs

// add watches a closing hub and releases its pool entries once its last connection has closed.
func (c *closingHubs) add(hub *bridge.Hub, keys []string, logger *zap.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hubs == nil {
		c.hubs = make(map[*bridge.Hub]struct{})
	}
	c.hubs[hub] = struct{}{}
	c.done.Go(func() {
		hub.Wait()
		c.mu.Lock()
		delete(c.hubs, hub)
		c.mu.Unlock()
		if err := release(keys); err != nil {
			logger.Error("releasing the Kafka clients of a replaced config", zap.Error(err))
		}
	})
}

// closeAll closes the connections of every closing hub at once, with 1001 (going away), and waits for them.
func (c *closingHubs) closeAll() {
	c.mu.Lock()
	for hub := range c.hubs {
		hub.Close(websocket.CloseGoingAway, 0)
	}
	c.mu.Unlock()
	c.done.Wait()
}
