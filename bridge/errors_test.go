package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wskafka/wskafka/protocol"
)

func TestReplyErrorCodes(t *testing.T) {
	cases := []struct {
		err  error
		code string
	}{
		{ErrShuttingDown, protocol.CodeShuttingDown},
		{fmt.Errorf("%w: orders", ErrUnknownTopic), protocol.CodeUnknownTopic},
		{fmt.Errorf("%w: orders has no partition 9", ErrUnknownPartition), protocol.CodeUnknownTopic},
		{ErrMessageTooLarge, protocol.CodeInvalidPayload},
		{context.DeadlineExceeded, protocol.CodeKafkaTimeout},
		{ErrKafkaTimeout, protocol.CodeKafkaTimeout},
		{ErrKafkaUnavailable, protocol.CodeKafkaUnavailable},
		{errors.New("[29] Topic Authorization Failed"), protocol.CodeKafkaError},
	}
	for _, c := range cases {
		got := replyError("publishing to orders", c.err)
		if got.Code != c.code {
			t.Errorf("replyError(%v): code %s, want %s", c.err, got.Code, c.code)
		}
		if want := c.err.Error(); !strings.Contains(got.Message, "publishing to orders") || !strings.Contains(got.Message, want) {
			t.Errorf("replyError(%v): message %q should name the operation and the cause", c.err, got.Message)
		}
	}
}
