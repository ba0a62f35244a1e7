package kafkago

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Admin reads are asked again while Kafka answers with an error it calls retriable (as it does for a moment after
// a topic is created), and fail at once on any other error.
func TestAdminReadsRetry(t *testing.T) {
	const topic = "orders"
	reads := []struct {
		name string
		key  kmsg.Key
		// refuse answers req with code for every partition (or the topic) it names.
		refuse func(req kmsg.Request, code int16) kmsg.Response
		read   func(ctx context.Context, k *Client) error
	}{
		{
			name: "topics", key: kmsg.Metadata,
			refuse: func(req kmsg.Request, code int16) kmsg.Response {
				res := req.ResponseKind().(*kmsg.MetadataResponse)
				name := topic
				res.Topics = []kmsg.MetadataResponseTopic{{Topic: &name, ErrorCode: code}}
				return res
			},
			read: func(ctx context.Context, k *Client) error {
				topics, err := k.Topics(ctx, []string{topic})
				if err == nil && len(topics[topic]) != 2 {
					return errors.New("the topic's partitions are missing")
				}
				return err
			},
		},
		{
			name: "watermarks", key: kmsg.ListOffsets,
			refuse: func(req kmsg.Request, code int16) kmsg.Response {
				res := req.ResponseKind().(*kmsg.ListOffsetsResponse)
				for _, rt := range req.(*kmsg.ListOffsetsRequest).Topics {
					t := kmsg.ListOffsetsResponseTopic{Topic: rt.Topic}
					for _, rp := range rt.Partitions {
						t.Partitions = append(t.Partitions, kmsg.ListOffsetsResponseTopicPartition{Partition: rp.Partition, ErrorCode: code})
					}
					res.Topics = append(res.Topics, t)
				}
				return res
			},
			read: func(ctx context.Context, k *Client) error {
				_, err := k.Watermarks(ctx, topic, []int{0, 1})
				return err
			},
		},
	}
	answers := []struct {
		name    string
		code    int16
		refused int32 // requests refused before the broker answers
		want    error // nil: the read succeeds
	}{
		{"leader not available, then an answer", int16(kafka.LeaderNotAvailable), 2, nil},
		{"not leader, then an answer", int16(kafka.NotLeaderForPartition), 1, nil},
		{"not authorized", int16(kafka.TopicAuthorizationFailed), 1 << 20, kafka.TopicAuthorizationFailed},
	}
	for _, r := range reads {
		for _, a := range answers {
			t.Run(r.name+"/"+a.name, func(t *testing.T) {
				cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
				if err != nil {
					t.Fatal(err)
				}
				defer cluster.Close()
				var refused atomic.Int32
				cluster.ControlKey(int16(r.key), func(req kmsg.Request) (kmsg.Response, error, bool) {
					cluster.KeepControl()
					if refused.Load() >= a.refused {
						return nil, nil, false
					}
					refused.Add(1)
					return r.refuse(req, a.code), nil, true
				})
				k, err := New(Config{
					Brokers: cluster.ListenAddrs(), ClientID: "test", ConnectTimeout: time.Second, RequestTimeout: 5 * time.Second,
				}, zap.NewNop())
				if err != nil {
					t.Fatal(err)
				}
				defer k.Destruct()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err = r.read(ctx, k)
				switch {
				case a.want == nil && err != nil:
					t.Fatalf("got %v after %d refusals, want an answer", err, refused.Load())
				case a.want != nil && !errors.Is(err, a.want):
					t.Fatalf("got %v, want %v", err, a.want)
				case a.want != nil && ctx.Err() != nil:
					t.Fatalf("asked until the deadline (%d times): want one failure at once", refused.Load())
				case a.want == nil && refused.Load() < a.refused:
					t.Fatalf("%d of %d refusals reached the broker", refused.Load(), a.refused)
				}
			})
		}
	}
}
