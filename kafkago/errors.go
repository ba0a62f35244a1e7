package kafkago

import (
	"errors"
	"net"
	"syscall"

	"github.com/segmentio/kafka-go"

	"github.com/wskafka/wskafka/bridge"
)

// conditions maps the kafka-go errors the bridge tells apart to the port's sentinels, in the order they are
// tried. Everything else reaches the bridge unmapped, as a Kafka error.
var conditions = []struct {
	kafka error
	port  error
}{
	{kafka.UnknownTopicOrPartition, bridge.ErrUnknownTopic},
	{kafka.MessageSizeTooLarge, bridge.ErrMessageTooLarge},
	{kafka.OffsetOutOfRange, bridge.ErrOffsetOutOfRange},
	{kafka.RequestTimedOut, bridge.ErrKafkaTimeout},
	{kafka.BrokerNotAvailable, bridge.ErrKafkaUnavailable},
	{kafka.LeaderNotAvailable, bridge.ErrKafkaUnavailable},
	{kafka.NotLeaderForPartition, bridge.ErrKafkaUnavailable},
}

// portErr is how every error leaves this package: one that matches a condition also matches the port's
// sentinel for it (errors.Is), with its text unchanged, so replies still say what Kafka said.
func portErr(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range conditions {
		if errors.Is(err, c.kafka) {
			return mapped(err, c.port)
		}
	}
	if unreachable(err) {
		return mapped(err, bridge.ErrKafkaUnavailable)
	}
	return err
}

func mapped(err, sentinel error) error {
	if errors.Is(err, sentinel) {
		return err
	}
	return &portError{err: err, sentinel: sentinel}
}

// portError is a kafka-go error that also matches a sentinel of the port.
type portError struct{ err, sentinel error }

func (e *portError) Error() string   { return e.err.Error() }
func (e *portError) Unwrap() []error { return []error{e.sentinel, e.err} }

// unreachable tells whether err means no broker could be reached, as opposed to a broker refusing the request.
func unreachable(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED)
}
