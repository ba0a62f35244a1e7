package bridge

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedBroker is an in-process, in-memory Kafka-protocol broker (franz-go's kfake) listening on a free
// loopback port. It makes a first run work with no Kafka installed; it keeps nothing across restarts.
type EmbeddedBroker struct {
	cluster *kfake.Cluster
}

// StartEmbeddedBroker starts a single-broker cluster on 127.0.0.1. Like a broker configured for tests, it does
// not create topics on first use.
func StartEmbeddedBroker() (*EmbeddedBroker, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("starting the embedded broker: %w", err)
	}
	return &EmbeddedBroker{cluster: c}, nil
}

// Addrs returns the broker's host:port addresses.
func (e *EmbeddedBroker) Addrs() []string { return e.cluster.ListenAddrs() }

// Destruct stops the broker; its data is gone.
func (e *EmbeddedBroker) Destruct() error {
	e.cluster.Close()
	return nil
}
