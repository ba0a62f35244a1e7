// Package embedded is the in-process broker of `brokers embedded`: franz-go's kfake on loopback, for a first run
// and for tests. It is a room of its own so that the bridge imports no Kafka implementation.
package embedded

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is an in-process, in-memory Kafka-protocol broker (franz-go's kfake) listening on a free
// loopback port. It makes a first run work with no Kafka installed; it keeps nothing across restarts.
type Broker struct {
	cluster *kfake.Cluster
}

// Start starts a single-broker cluster on 127.0.0.1. Like a broker configured for tests, it does
// not create topics on first use.
func Start() (*Broker, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("starting the embedded broker: %w", err)
	}
	return &Broker{cluster: c}, nil
}

// Addrs returns the broker's host:port addresses.
func (e *Broker) Addrs() []string { return e.cluster.ListenAddrs() }

// Destruct stops the broker; its data is gone.
func (e *Broker) Destruct() error {
	e.cluster.Close()
	return nil
}
