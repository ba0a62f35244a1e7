package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/wskafka/wskafka/protocol"
)

// Conditions the protocol reports with their own codes. The Kafka adapter makes its errors match them (errors.Is),
// and replyError picks the reply's code by them, so the rest of the bridge only wraps and passes errors on.
var (
	// ErrUnknownTopic: a topic named in a request does not exist.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrShuttingDown: the handler is being cleaned up (config reload or exit).
	ErrShuttingDown = errors.New("the server is shutting down")
	// ErrMessageTooLarge: a publish is larger than max_message_bytes.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrUnknownPartition: a publish names a partition its topic does not have.
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrOffsetOutOfRange: a partition reader's offset no longer exists in the partition.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrKafkaTimeout: a broker took longer than its own deadline to answer.
	ErrKafkaTimeout = errors.New("kafka timed out")
	// ErrKafkaUnavailable: no broker could be reached, or none leads the partition at the moment.
	ErrKafkaUnavailable = errors.New("kafka unavailable")
)

// replyError turns an error from a Kafka operation into the error payload of an s:1 reply.
func replyError(op string, err error) *protocol.Error {
	switch {
	case errors.Is(err, ErrShuttingDown):
		return &protocol.Error{Code: protocol.CodeShuttingDown, Message: op + ": " + err.Error()}
	case errors.Is(err, ErrUnknownTopic), errors.Is(err, ErrUnknownPartition):
		return &protocol.Error{Code: protocol.CodeUnknownTopic, Message: op + ": " + err.Error()}
	case errors.Is(err, ErrMessageTooLarge):
		return &protocol.Error{Code: protocol.CodeInvalidPayload, Message: op + ": " + err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrKafkaTimeout):
		return &protocol.Error{Code: protocol.CodeKafkaTimeout, Message: fmt.Sprintf("%s: kafka did not answer in time: %v", op, err)}
	case errors.Is(err, ErrKafkaUnavailable):
		return &protocol.Error{Code: protocol.CodeKafkaUnavailable, Message: fmt.Sprintf("%s: kafka is unreachable: %v", op, err)}
	}
	return &protocol.Error{Code: protocol.CodeKafkaError, Message: op + ": " + err.Error()}
}
