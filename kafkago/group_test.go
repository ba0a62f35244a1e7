package kafkago

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/consumer"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/wskafka/wskafka/bridge"
)

// groupTestTimeout bounds every wait of these tests for a join or a rebalance.
const groupTestTimeout = 20 * time.Second

// newGroupTestKafka returns a client of brokers with a heartbeat short enough for the tests to notice rebalances
// quickly.
func newGroupTestKafka(t *testing.T, brokers []string) *Client {
	t.Helper()
	k, err := New(Config{
		Brokers: brokers, ClientID: "test", ConnectTimeout: time.Second, RequestTimeout: 5 * time.Second,
		SessionTimeout: 10 * time.Second, HeartbeatInterval: 100 * time.Millisecond, RebalanceTimeout: 5 * time.Second,
		GroupBalancers: []string{"range"}, TopicPartitions: 2, TopicReplication: 1,
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Destruct() })
	return k
}

// groupTestCluster is the real Kafka of KAFKA_BROKERS when set, else an in-process kfake broker, with a new topic
// of two partitions.
func groupTestCluster(t *testing.T) (*Client, string) {
	t.Helper()
	brokers := strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cluster.Close)
		brokers = cluster.ListenAddrs()
	}
	k := newGroupTestKafka(t, brokers)
	topic := "group-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + time.Now().Format("150405.000000")
	ctx, cancel := context.WithTimeout(t.Context(), groupTestTimeout)
	defer cancel()
	failed, err := k.CreateTopics(ctx, []bridge.TopicSpec{{Name: topic}})
	if err == nil && len(failed) > 0 {
		err = failed[topic]
	}
	if err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
	return k, topic
}

// runningGeneration is a generation held until the test or the group ends it.
type runningGeneration struct {
	gen   *generation
	ended chan struct{}
}

// nextGeneration waits for m's next generation and starts a function that holds it.
func nextGeneration(t *testing.T, m bridge.GroupMember) runningGeneration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), groupTestTimeout)
	defer cancel()
	for {
		gen, err := m.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("no generation within %v: %v", groupTestTimeout, err)
			}
			continue // the member retries by itself
		}
		r := runningGeneration{gen: gen.(*generation), ended: make(chan struct{})}
		gen.Start(func(ctx context.Context) {
			<-ctx.Done()
			close(r.ended)
		})
		return r
	}
}

func partitionsOf(gen *generation, topic string) []int {
	return slices.Sorted(maps.Keys(gen.Assignments()[topic]))
}

// A member holds its generation while the coordinator cannot be reached or is not ready, so that it keeps its
// partitions across a coordinator restart; it rejoins only when the coordinator says the generation is over, and
// keeps its member id unless the coordinator no longer knows it.
func TestGroupMemberKeepsGenerationUntilCoordinatorEndsIt(t *testing.T) {
	tests := []struct {
		name    string
		code    int16 // the heartbeat answer; 0 closes the connection instead
		times   int32
		rejoin  bool
		sameID  bool // the rejoin carries the member id
		newcome bool // the rejoin carries no member id
	}{
		{name: "connection closed", times: 5},
		{name: "not coordinator", code: int16(kafka.NotCoordinatorForGroup), times: 5},
		{name: "coordinator not available", code: int16(kafka.GroupCoordinatorNotAvailable), times: 5},
		{name: "coordinator loading", code: int16(kafka.GroupLoadInProgress), times: 5},
		{name: "rebalance in progress", code: int16(kafka.RebalanceInProgress), times: 1, rejoin: true, sameID: true},
		{name: "illegal generation", code: int16(kafka.IllegalGeneration), times: 1, rejoin: true, sameID: true},
		{name: "unknown member", code: int16(kafka.UnknownMemberId), times: 1, rejoin: true, newcome: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			k := newGroupTestKafka(t, cluster.ListenAddrs())
			m := k.JoinGroup("billing", []string{"orders"})
			defer m.Close()
			first := nextGeneration(t, m)

			var mu sync.Mutex
			var rejoins []string // member ids of the JoinGroups after the first generation
			cluster.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				mu.Lock()
				rejoins = append(rejoins, req.(*kmsg.JoinGroupRequest).MemberID)
				mu.Unlock()
				return nil, nil, false
			})
			var refused atomic.Int32
			cluster.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				if refused.Load() >= tt.times {
					return nil, nil, false
				}
				refused.Add(1)
				if tt.code == 0 {
					return nil, errors.New("dropped"), true
				}
				res := req.ResponseKind().(*kmsg.HeartbeatResponse)
				res.ErrorCode = tt.code
				return res, nil, true
			})

			if !tt.rejoin {
				// Until every refusal is spent and some heartbeats were answered after them, no generation begins.
				deadline := time.Now().Add(groupTestTimeout)
				for quiet := time.Duration(0); quiet < time.Second; {
					wait := 50 * time.Millisecond
					ctx, cancel := context.WithTimeout(t.Context(), wait)
					gen, err := m.Next(ctx)
					cancel()
					switch {
					case err == nil:
						t.Fatalf("got generation %d after %d refused heartbeats, want the first one kept", gen.(*generation).id, refused.Load())
					case !errors.Is(err, context.DeadlineExceeded):
						t.Fatalf("got %v after %d refused heartbeats, want the first generation kept", err, refused.Load())
					case time.Now().After(deadline):
						t.Fatalf("got %d refused heartbeats, want %d", refused.Load(), tt.times)
					case refused.Load() >= tt.times:
						quiet += wait
					}
				}
				select {
				case <-first.ended:
					t.Fatal("the first generation ended")
				default:
				}
				mu.Lock()
				defer mu.Unlock()
				if len(rejoins) > 0 {
					t.Fatalf("got JoinGroups %q, want none", rejoins)
				}
				return
			}

			second := nextGeneration(t, m)
			select {
			case <-first.ended:
			default:
				t.Fatal("a second generation began before the first one's functions returned")
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case len(rejoins) == 0:
				t.Fatal("no JoinGroup after the first generation")
			case tt.sameID && rejoins[0] != first.gen.memberID:
				t.Fatalf("got rejoin as %q, want the kept member id %q", rejoins[0], first.gen.memberID)
			case tt.newcome && rejoins[0] != "":
				t.Fatalf("got rejoin as %q, want a new member", rejoins[0])
			case tt.sameID && second.gen.memberID != first.gen.memberID:
				t.Fatalf("got member id %q in the second generation, want %q", second.gen.memberID, first.gen.memberID)
			}
		})
	}
}

// Two members split a topic's partitions; when one leaves, the other takes them over with the offsets committed
// for them, and a member cannot commit for a partition it was not given.
func TestGroupMembersSplitAndHandOverPartitions(t *testing.T) {
	k, topic := groupTestCluster(t)
	group := topic
	a := k.JoinGroup(group, []string{topic})
	defer a.Close()
	if got := partitionsOf(nextGeneration(t, a).gen, topic); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("a alone got partitions %v, want [0 1]", got)
	}

	b := k.JoinGroup(group, []string{topic})
	defer b.Close()
	genB := nextGeneration(t, b)
	genA := nextGeneration(t, a)
	ofA, ofB := partitionsOf(genA.gen, topic), partitionsOf(genB.gen, topic)
	if len(ofA) != 1 || len(ofB) != 1 || ofA[0] == ofB[0] {
		t.Fatalf("got partitions %v and %v, want one each", ofA, ofB)
	}
	if err := genA.gen.Commit(map[string]map[int]int64{topic: {ofB[0]: 3}}); err == nil {
		t.Fatalf("a committed for b's partition %d, want an error", ofB[0])
	}
	if err := genA.gen.Commit(map[string]map[int]int64{topic: {ofA[0]: 7}}); err != nil {
		t.Fatalf("committing a's partition: %v", err)
	}

	if err := a.Close(); err != nil {
		t.Fatalf("a leaving: %v", err)
	}
	select {
	case <-genA.ended:
	default:
		t.Fatal("a closed before its generation's functions returned")
	}
	taken := nextGeneration(t, b).gen
	if got := partitionsOf(taken, topic); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("b got partitions %v after a left, want [0 1]", got)
	}
	if got := taken.Assignments()[topic][ofA[0]]; got != 7 {
		t.Fatalf("got offset %d for the partition a committed, want 7", got)
	}
	if got := taken.Assignments()[topic][ofB[0]]; got >= 0 {
		t.Fatalf("got offset %d for a partition never committed, want a negative one", got)
	}
}

// A commit is sent once, and once more when the coordinator seems to have moved, but never waits for a
// coordinator to come back: the deliverer commits between frames, and records must keep flowing meanwhile.
func TestGenerationCommitDoesNotWaitForCoordinator(t *testing.T) {
	tests := []struct {
		name     string
		code     int16 // the answer to every refused commit; 0 closes the connection instead
		refusals int32 // commits refused before the broker answers
		refused  int32 // commits that reach the broker to be refused
		fails    bool
	}{
		{name: "answered"},
		{name: "not coordinator, then answered", code: int16(kafka.NotCoordinatorForGroup), refusals: 1, refused: 1},
		{name: "connection closed, then answered", refusals: 1, refused: 1},
		{name: "connection always closed", refusals: 1 << 20, refused: 2, fails: true},
		{name: "coordinator loading", code: int16(kafka.GroupLoadInProgress), refusals: 1 << 20, refused: 1, fails: true},
		{name: "rebalance in progress", code: int16(kafka.RebalanceInProgress), refusals: 1 << 20, refused: 1, fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			k := newGroupTestKafka(t, cluster.ListenAddrs())
			m := k.JoinGroup("billing", []string{"orders"})
			defer m.Close()
			gen := nextGeneration(t, m).gen

			var refused atomic.Int32
			cluster.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				if refused.Load() >= tt.refusals {
					return nil, nil, false
				}
				refused.Add(1)
				if tt.code == 0 {
					return nil, errors.New("dropped"), true
				}
				res := req.ResponseKind().(*kmsg.OffsetCommitResponse)
				for _, rt := range req.(*kmsg.OffsetCommitRequest).Topics {
					t := kmsg.OffsetCommitResponseTopic{Topic: rt.Topic}
					for _, rp := range rt.Partitions {
						t.Partitions = append(t.Partitions, kmsg.OffsetCommitResponseTopicPartition{Partition: rp.Partition, ErrorCode: tt.code})
					}
					res.Topics = append(res.Topics, t)
				}
				return res, nil, true
			})
			err = gen.Commit(map[string]map[int]int64{"orders": {0: 5}})
			switch {
			case tt.fails && err == nil:
				t.Fatal("got a commit, want an error")
			case !tt.fails && err != nil:
				t.Fatalf("got %v, want a commit", err)
			case refused.Load() != tt.refused:
				t.Fatalf("got %d refused attempts, want %d", refused.Load(), tt.refused)
			}
		})
	}
}

// Members of this implementation and kafka-go's ConsumerGroup (an older wskafka, during a rolling upgrade) share
// a group, whichever of them leads it.
func TestGroupMemberSharesGroupWithKafkaGoConsumerGroup(t *testing.T) {
	for _, leader := range []string{"kafka-go", "wskafka"} {
		t.Run(leader+" leads", func(t *testing.T) {
			k, topic := groupTestCluster(t)
			var mu sync.Mutex
			var old []int // the ConsumerGroup member's latest partitions
			startOld := func() {
				cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
					ID: topic, Brokers: k.cfg.Brokers, Topics: []string{topic},
					GroupBalancers:    []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
					HeartbeatInterval: 100 * time.Millisecond, SessionTimeout: 10 * time.Second,
					RebalanceTimeout: 5 * time.Second, Timeout: 5 * time.Second,
				})
				if err != nil {
					t.Fatal(err)
				}
				// kafka-go's Close may wait out a session timeout (segmentio/kafka-go#428): not waited for.
				t.Cleanup(func() { go cg.Close() })
				go func() {
					for {
						gen, err := cg.Next(context.Background())
						if errors.Is(err, kafka.ErrGroupClosed) {
							return
						}
						if err != nil {
							continue
						}
						var ids []int
						for _, p := range gen.Assignments[topic] {
							ids = append(ids, p.ID)
						}
						mu.Lock()
						old = ids
						mu.Unlock()
						gen.Start(func(ctx context.Context) { <-ctx.Done() })
					}
				}()
			}
			oldPartitions := func() []int {
				mu.Lock()
				defer mu.Unlock()
				return slices.Sorted(slices.Values(old))
			}

			var m bridge.GroupMember
			if leader == "kafka-go" {
				startOld()
				deadline := time.Now().Add(groupTestTimeout)
				for len(oldPartitions()) != 2 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				m = k.JoinGroup(topic, []string{topic})
			} else {
				m = k.JoinGroup(topic, []string{topic})
				nextGeneration(t, m)
				startOld()
			}
			defer m.Close()
			deadline := time.Now().Add(groupTestTimeout)
			var mine []int // of the latest generation
			for {
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				gen, err := m.Next(ctx)
				cancel()
				if err == nil {
					mine = partitionsOf(gen.(*generation), topic)
					gen.Start(func(ctx context.Context) { <-ctx.Done() })
				}
				if len(mine) == 1 && slices.Equal(oldPartitions(), []int{1 - mine[0]}) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("got partitions %v here and %v in kafka-go's member, want one each", mine, oldPartitions())
				}
			}
		})
	}
}

// Heartbeat responses are read as the protocol lays them out, whichever version the connection negotiated
// (kafka-go's own declaration swaps the fields from version 1 on).
func TestDecodeHeartbeatResponse(t *testing.T) {
	id := binary.BigEndian.AppendUint32(nil, heartbeatCorrelationID)
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	throttle := binary.BigEndian.AppendUint32(nil, 250)
	rebalancing := binary.BigEndian.AppendUint16(nil, uint16(kafka.RebalanceInProgress))
	tests := []struct {
		name     string
		version  int16
		body     []byte
		code     int16
		throttle int32
		fails    bool
	}{
		{name: "v0", version: 0, body: cat(id, rebalancing), code: int16(kafka.RebalanceInProgress)},
		{name: "v1", version: 1, body: cat(id, throttle, rebalancing), code: int16(kafka.RebalanceInProgress), throttle: 250},
		{name: "v3 no error", version: 3, body: cat(id, throttle, []byte{0, 0}), throttle: 250},
		{name: "v4 no tagged fields", version: 4, body: cat(id, []byte{0}, throttle, rebalancing, []byte{0}),
			code: int16(kafka.RebalanceInProgress), throttle: 250},
		{name: "v4 a tagged field", version: 4, body: cat(id, []byte{1, 5, 2, 'x', 'y'}, throttle, rebalancing, []byte{0}),
			code: int16(kafka.RebalanceInProgress), throttle: 250},
		{name: "another request's answer", version: 1, body: cat([]byte{0, 0, 0, 9}, throttle, rebalancing), fails: true},
		{name: "cut short", version: 1, body: cat(id, throttle, []byte{0}), fails: true},
		{name: "tagged field cut short", version: 4, body: cat(id, []byte{1, 5, 9, 'x'}), fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := decodeHeartbeatResponse(tt.body, tt.version)
			switch {
			case tt.fails && err == nil:
				t.Fatalf("got %+v, want an error", res)
			case tt.fails:
			case err != nil:
				t.Fatalf("got %v, want code %d", err, tt.code)
			case res.ErrorCode != tt.code || res.ThrottleTimeMs != tt.throttle:
				t.Fatalf("got code %d throttle %d, want %d and %d", res.ErrorCode, res.ThrottleTimeMs, tt.code, tt.throttle)
			}
		})
	}
}

// Subscriptions are sent in the layout kafka-go's ConsumerGroup sends and reads, and read in every layout members
// send: kafka-go's, and the consumer protocol's versions 0 and 1.
func TestSubscriptionLayouts(t *testing.T) {
	// kafka-go's ConsumerGroup: version 1, topics, null user data, and nothing after (joingroup.go, groupMetadata).
	kafkaGo := []byte{0, 1, 0, 0, 0, 1, 0, 6, 'o', 'r', 'd', 'e', 'r', 's', 0xff, 0xff, 0xff, 0xff}
	sent, err := subscriptionMetadata([]string{"orders"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sent, kafkaGo) {
		t.Fatalf("got subscription % x, want kafka-go's % x", sent, kafkaGo)
	}
	withOwned, err := protocol.Marshal(1, consumer.Subscription{Version: 1, Topics: []string{"orders"},
		OwnedPartitions: []consumer.TopicPartition{{Topic: "orders", Partitions: []int32{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	v0, err := protocol.Marshal(0, consumer.Subscription{Topics: []string{"orders"}, UserData: []byte("u")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"kafka-go", kafkaGo},
		{"v1 with owned partitions", withOwned},
		{"v0", v0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := decodeSubscription(tt.b)
			if err != nil || !slices.Equal(sub.Topics, []string{"orders"}) {
				t.Fatalf("got topics %v, error %v; want [orders]", sub.Topics, err)
			}
		})
	}
}
