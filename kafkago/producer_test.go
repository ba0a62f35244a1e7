package kafkago

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"

	"github.com/wskafka/wskafka/bridge"
)

// abandoningTransport fails the first produce it is given as a connection that broke mid-request would, keeping
// the request as kafka-go's connection goroutine would while it still writes it, and answers every later one.
type abandoningTransport struct {
	abandoned *rawproduce.Request
}

func (rt *abandoningTransport) RoundTrip(_ context.Context, _ net.Addr, req protocol.Message) (protocol.Message, error) {
	raw := req.(*rawproduce.Request)
	if rt.abandoned == nil {
		rt.abandoned = raw
		return nil, io.ErrUnexpectedEOF
	}
	// The request is written before Kafka answers it: read its set through, as the connection would.
	if _, err := io.Copy(io.Discard, raw.Topics[0].Partitions[0].RecordSet.Reader); err != nil {
		return nil, err
	}
	return &produceAPI.Response{Topics: []produceAPI.ResponseTopic{{
		Topic: raw.Topics[0].Topic, Partitions: []produceAPI.ResponsePartition{{Partition: raw.Topics[0].Partitions[0].Partition}},
	}}}, nil
}

// A record set is lent to the next request only once every attempt to send it was answered: the set of an attempt
// that failed may still be being written by kafka-go, and must not be overwritten by another request's records.
func TestSendKeepsAbandonedRecordSets(t *testing.T) {
	rt := &abandoningTransport{}
	p := &producer{
		client: &kafka.Client{Addr: kafka.TCP("127.0.0.1:1"), Transport: rt}, acks: kafka.RequireAll,
		maxAttempts: 2, maxBytes: 1 << 20, ackTimeout: 10 * time.Second,
	}
	record := func(value string) []bridge.Record {
		return []bridge.Record{{Topic: "orders", Value: []byte(value), Time: time.UnixMilli(1)}}
	}
	first := record("the first request's value")
	want := appendRecordSet(nil, first, []int{0})
	results := make([]error, 1)
	p.send(t.Context(), "orders", 0, first, []int{0}, results)
	if results[0] != nil || rt.abandoned == nil {
		t.Fatalf("got %v after an abandoned attempt, want the retry answered", results[0])
	}
	for i := range 20 {
		p.send(t.Context(), "orders", 0, record(fmt.Sprintf("later value %02d, as long as the first", i)), []int{0}, results)
	}
	got, err := io.ReadAll(rt.abandoned.Topics[0].Partitions[0].RecordSet.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the abandoned request's set changed under it: got %q, want %q", got, want)
	}
}
