package kafkago

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/wskafka/wskafka/bridge"
)

func TestPortErr(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name string
		err  error
		want error // the sentinel it must match; nil: none
	}{
		{"nil", nil, nil},
		{"unknown topic", kafka.UnknownTopicOrPartition, bridge.ErrUnknownTopic},
		{"wrapped unknown topic", fmt.Errorf("topic t: %w", kafka.UnknownTopicOrPartition), bridge.ErrUnknownTopic},
		{"too large", kafka.MessageSizeTooLarge, bridge.ErrMessageTooLarge},
		{"out of range", kafka.OffsetOutOfRange, bridge.ErrOffsetOutOfRange},
		{"broker timeout", kafka.RequestTimedOut, bridge.ErrKafkaTimeout},
		{"no broker", kafka.BrokerNotAvailable, bridge.ErrKafkaUnavailable},
		{"no leader", kafka.LeaderNotAvailable, bridge.ErrKafkaUnavailable},
		{"leader moved", kafka.NotLeaderForPartition, bridge.ErrKafkaUnavailable},
		{"dial refused", refused, bridge.ErrKafkaUnavailable},
		{"no such host", fmt.Errorf("dial: %w", &net.DNSError{Err: "no such host", Name: "kafka.invalid"}), bridge.ErrKafkaUnavailable},
		{"already mapped", fmt.Errorf("%w: t/0", bridge.ErrOffsetOutOfRange), bridge.ErrOffsetOutOfRange},
		{"other kafka error", kafka.TopicAuthorizationFailed, nil},
		{"plain error", errors.New("boom"), nil},
	}
	sentinels := []error{bridge.ErrUnknownTopic, bridge.ErrMessageTooLarge, bridge.ErrOffsetOutOfRange, bridge.ErrKafkaTimeout, bridge.ErrKafkaUnavailable}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := portErr(c.err)
			if c.err == nil {
				if got != nil {
					t.Fatalf("portErr(nil) = %v", got)
				}
				return
			}
			if got.Error() != c.err.Error() {
				t.Errorf("text %q, want it unchanged: %q", got, c.err)
			}
			if !errors.Is(got, c.err) {
				t.Errorf("%v no longer matches the kafka-go error", got)
			}
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == c.want) {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", got, s, !(s == c.want), s == c.want)
				}
			}
		})
	}
}
