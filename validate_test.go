package wskafka

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// topicsOf, producerOf and consumerOf return a Handler's options, allocating them as the JSON or Caddyfile would.
func topicsOf(h *Handler) *TopicOptions {
	if h.Topics == nil {
		h.Topics = new(TopicOptions)
	}
	return h.Topics
}

func producerOf(h *Handler) *ProducerOptions {
	if h.Producer == nil {
		h.Producer = new(ProducerOptions)
	}
	return h.Producer
}

func consumerOf(h *Handler) *ConsumerOptions {
	if h.Consumer == nil {
		h.Consumer = new(ConsumerOptions)
	}
	return h.Consumer
}

// validateErrors splits Validate's joined error into its messages.
func validateErrors(err error) []string {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var msgs []string
	for _, e := range joined.Unwrap() {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

func TestValidateErrors(t *testing.T) {
	neg := caddy.Duration(-time.Millisecond)
	tests := []struct {
		name   string
		mutate func(h *Handler)
		want   string // the one error's start: the field it names
		// only limits the case to the "raw" or the "with defaults" variant: applyDefaults replaces a zero int before
		// Validate sees it, and some mistakes exist only next to a default.
		only string
	}{
		{name: "empty brokers list", mutate: func(h *Handler) { h.Brokers = []string{} }, want: "brokers must list at least one"},
		{name: "embedded with another broker", mutate: func(h *Handler) { h.Brokers = []string{"embedded", "k:9092"} }, want: "brokers: embedded cannot be combined"},
		{name: "another broker with embedded", mutate: func(h *Handler) { h.Brokers = []string{"k:9092", "embedded"} }, want: "brokers: embedded cannot be combined"},
		{name: "broker without port", mutate: func(h *Handler) { h.Brokers = []string{"localhost"} }, want: `brokers: "localhost" is not a host:port`},
		{name: "broker with empty port", mutate: func(h *Handler) { h.Brokers = []string{"localhost:"} }, want: `brokers: "localhost:" is not a host:port`},
		{name: "broker without host", mutate: func(h *Handler) { h.Brokers = []string{":9092"} }, want: `brokers: ":9092" is not a host:port`},
		{name: "second broker without port", mutate: func(h *Handler) { h.Brokers = []string{"k1:9092", "k2"} }, want: `brokers: "k2" is not a host:port`},
		{name: "IPv6 broker without brackets", mutate: func(h *Handler) { h.Brokers = []string{"::1:9092"} }, want: `brokers: "::1:9092"`},

		{name: "negative connect_timeout", mutate: func(h *Handler) { h.ConnectTimeout = neg }, want: "connect_timeout must not be negative"},
		{name: "negative request_timeout", mutate: func(h *Handler) { h.RequestTimeout = neg }, want: "request_timeout must not be negative"},
		{name: "negative write_timeout", mutate: func(h *Handler) { h.WriteTimeout = neg }, want: "write_timeout must not be negative"},
		{name: "negative close_timeout", mutate: func(h *Handler) { h.CloseTimeout = neg }, want: "close_timeout must not be negative"},
		{name: "negative close_delay", mutate: func(h *Handler) { h.CloseDelay = &neg }, want: "close_delay must not be negative"},

		{name: "topics partitions -2", mutate: func(h *Handler) { topicsOf(h).Partitions = -2; topicsOf(h).Replication = -1 }, want: "topics.partitions must be positive"},
		{name: "topics replication -2", mutate: func(h *Handler) { topicsOf(h).Replication = -2; topicsOf(h).Partitions = -1 }, want: "topics.replication must be positive"},

		{name: "negative producer mq_limit", mutate: func(h *Handler) { producerOf(h).MQLimit = -1 }, want: "producer.mq_limit must not be negative"},
		{name: "negative producer mq_interval", mutate: func(h *Handler) { producerOf(h).MQInterval = &neg }, want: "producer.mq_interval must not be negative"},
		{name: "unknown producer required_acks", mutate: func(h *Handler) { producerOf(h).RequiredAcks = "two" }, want: `producer.required_acks: unknown value "two"`},
		{name: "numeric producer required_acks", mutate: func(h *Handler) { producerOf(h).RequiredAcks = "1" }, want: `producer.required_acks: unknown value "1"`},
		{name: "negative producer ack_timeout", mutate: func(h *Handler) { producerOf(h).AckTimeout = neg }, want: "producer.ack_timeout must not be negative"},
		{name: "unknown producer partitioner", mutate: func(h *Handler) { producerOf(h).Partitioner = "random" }, want: `producer.partitioner: unknown value "random"`},
		{name: "unknown producer compression", mutate: func(h *Handler) { producerOf(h).Compression = "brotli" }, want: `producer.compression: unknown value "brotli"`},
		{name: "negative producer max_attempts", mutate: func(h *Handler) { producerOf(h).MaxAttempts = -1 }, want: "producer.max_attempts must not be negative"},
		{name: "negative producer max_message_bytes", mutate: func(h *Handler) { producerOf(h).MaxMessageBytes = -1 }, want: "producer.max_message_bytes must not be negative"},

		{name: "unknown consumer from_offset", mutate: func(h *Handler) { consumerOf(h).FromOffset = "beginning" }, want: `consumer.from_offset: unknown value "beginning"`},
		{name: "unknown consumer out_of_range", mutate: func(h *Handler) { consumerOf(h).OutOfRange = "none" }, want: `consumer.out_of_range: unknown value "none"`},
		{name: "negative consumer mq_limit", mutate: func(h *Handler) { consumerOf(h).MQLimit = -1 }, want: "consumer.mq_limit must not be negative"},
		{name: "negative consumer mq_interval", mutate: func(h *Handler) { consumerOf(h).MQInterval = &neg }, want: "consumer.mq_interval must not be negative"},
		{name: "negative consumer commit_interval", mutate: func(h *Handler) { consumerOf(h).CommitInterval = &neg }, want: "consumer.commit_interval must not be negative"},
		{name: "negative consumer session_timeout", mutate: func(h *Handler) { consumerOf(h).SessionTimeout = neg }, want: "consumer.session_timeout must not be negative"},
		{name: "negative consumer heartbeat_interval", mutate: func(h *Handler) { consumerOf(h).HeartbeatInterval = neg }, want: "consumer.heartbeat_interval must not be negative"},
		{name: "negative consumer rebalance_timeout", mutate: func(h *Handler) { consumerOf(h).RebalanceTimeout = neg }, want: "consumer.rebalance_timeout must not be negative"},
		{name: "negative consumer fetch_max_wait", mutate: func(h *Handler) { consumerOf(h).FetchMaxWait = neg }, want: "consumer.fetch_max_wait must not be negative"},
		{
			name: "heartbeat_interval equal to session_timeout",
			mutate: func(h *Handler) {
				consumerOf(h).SessionTimeout = caddy.Duration(10 * time.Second)
				consumerOf(h).HeartbeatInterval = caddy.Duration(10 * time.Second)
			},
			want: "consumer.heartbeat_interval must be shorter than consumer.session_timeout",
		},
		{
			name: "heartbeat_interval above session_timeout",
			mutate: func(h *Handler) {
				consumerOf(h).SessionTimeout = caddy.Duration(5 * time.Second)
				consumerOf(h).HeartbeatInterval = caddy.Duration(6 * time.Second)
			},
			want: "consumer.heartbeat_interval must be shorter than consumer.session_timeout",
		},
		{
			name:   "heartbeat_interval above default session_timeout",
			mutate: func(h *Handler) { consumerOf(h).HeartbeatInterval = caddy.Duration(time.Minute) },
			want:   "consumer.heartbeat_interval must be shorter",
			only:   "with defaults",
		},
		{
			name: "fetch_min_bytes above fetch_max_bytes",
			mutate: func(h *Handler) {
				consumerOf(h).FetchMinBytes = 2048
				consumerOf(h).FetchMaxBytes = 1024
			},
			want: "consumer.fetch_min_bytes must not exceed consumer.fetch_max_bytes",
		},
		{name: "negative consumer fetch_min_bytes", mutate: func(h *Handler) { consumerOf(h).FetchMinBytes = -1 }, want: "consumer.fetch_min_bytes and consumer.fetch_max_bytes must not be negative"},
		{name: "negative consumer fetch_max_bytes", mutate: func(h *Handler) { consumerOf(h).FetchMaxBytes = -1 }, want: "consumer.fetch_min_bytes and consumer.fetch_max_bytes must not be negative"},
		{name: "unknown consumer group_balancers", mutate: func(h *Handler) { consumerOf(h).GroupBalancers = []string{"sticky"} }, want: `consumer.group_balancers: unknown value "sticky"`},
		{name: "unknown second consumer group_balancer", mutate: func(h *Handler) { consumerOf(h).GroupBalancers = []string{"range", "roundrobin"} }, want: `consumer.group_balancers: unknown value "roundrobin"`},
		{name: "consumer group_id of 256 characters", mutate: func(h *Handler) { consumerOf(h).GroupID = strings.Repeat("g", 256) }, want: "consumer.group_id must be at most 255 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			variants := []struct {
				name  string
				build func() Handler
			}{
				{"raw", func() Handler {
					h := Handler{Brokers: []string{"localhost:9092"}}
					tt.mutate(&h)
					return h
				}},
				{"with defaults", func() Handler {
					var h Handler
					tt.mutate(&h)
					h.applyDefaults()
					return h
				}},
			}
			for _, v := range variants {
				if tt.only != "" && tt.only != v.name {
					continue
				}
				t.Run(v.name, func(t *testing.T) {
					h := v.build()
					got := validateErrors(h.Validate())
					if len(got) != 1 || !strings.HasPrefix(got[0], tt.want) {
						t.Errorf("got %q, want one error starting %q", got, tt.want)
					}
				})
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	zero := caddy.Duration(0)
	tests := []struct {
		name   string
		mutate func(h *Handler)
	}{
		{name: "defaults", mutate: func(h *Handler) {}},
		{name: "embedded", mutate: func(h *Handler) { h.Brokers = []string{"embedded"} }},
		{name: "several brokers", mutate: func(h *Handler) { h.Brokers = []string{"k1:9092", "10.0.0.2:9093", "[::1]:9094"} }},
		{name: "zero intervals", mutate: func(h *Handler) {
			producerOf(h).MQInterval = &zero
			consumerOf(h).MQInterval = &zero
			consumerOf(h).CommitInterval = &zero
		}},
		{name: "broker defaults for topics", mutate: func(h *Handler) { *topicsOf(h) = TopicOptions{Partitions: -1, Replication: -1} }},
		{name: "explicit topics", mutate: func(h *Handler) { *topicsOf(h) = TopicOptions{Partitions: 12, Replication: 3} }},
		{name: "required_acks none", mutate: func(h *Handler) { producerOf(h).RequiredAcks = "none" }},
		{name: "required_acks all", mutate: func(h *Handler) { producerOf(h).RequiredAcks = "all" }},
		{name: "every partitioner and compression", mutate: func(h *Handler) {
			producerOf(h).Partitioner = "least_bytes"
			producerOf(h).Compression = "zstd"
		}},
		{name: "from earliest, out of range latest", mutate: func(h *Handler) {
			consumerOf(h).FromOffset = "earliest"
			consumerOf(h).OutOfRange = "latest"
		}},
		{name: "heartbeat just below session", mutate: func(h *Handler) {
			consumerOf(h).SessionTimeout = caddy.Duration(10 * time.Second)
			consumerOf(h).HeartbeatInterval = caddy.Duration(10*time.Second - time.Millisecond)
		}},
		{name: "fetch_min_bytes equal to fetch_max_bytes", mutate: func(h *Handler) {
			consumerOf(h).FetchMinBytes = 4096
			consumerOf(h).FetchMaxBytes = 4096
		}},
		{name: "both group balancers", mutate: func(h *Handler) { consumerOf(h).GroupBalancers = []string{"range", "round_robin"} }},
		{name: "group_id of 255 characters", mutate: func(h *Handler) { consumerOf(h).GroupID = strings.Repeat("g", 255) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			tt.mutate(&h)
			h.applyDefaults()
			if err := h.Validate(); err != nil {
				t.Errorf("got %v, want no error", err)
			}
		})
	}
}

// TestValidateReportsEveryError protects the joined report: a config with several mistakes names each of them.
func TestValidateReportsEveryError(t *testing.T) {
	h := Handler{Brokers: []string{"nohost"}}
	producerOf(&h).Compression = "brotli"
	consumerOf(&h).MQLimit = -1
	got := validateErrors(h.Validate())
	want := []string{`brokers: "nohost"`, `producer.compression: unknown value "brotli"`, "consumer.mq_limit"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %d errors", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got %q, want it to start %q", got[i], want[i])
		}
	}
}

// TestValidateIsPure protects Validate's contract with Caddy, which calls it after Provision: it changes nothing.
func TestValidateIsPure(t *testing.T) {
	tests := []struct {
		name string
		h    Handler
	}{
		{name: "unset", h: Handler{}},
		{name: "defaults", h: func() Handler { var h Handler; h.applyDefaults(); return h }()},
		{name: "invalid", h: Handler{Brokers: []string{"x"}, Producer: &ProducerOptions{MQLimit: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := string(mustJSON(t, tt.h))
			_ = tt.h.Validate()
			if after := string(mustJSON(t, tt.h)); after != before {
				t.Errorf("got %s, want %s", after, before)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	var got Handler
	got.applyDefaults()
	want := Handler{
		Brokers:        []string{"embedded"},
		ClientID:       "wskafka",
		ConnectTimeout: caddy.Duration(time.Second),
		RequestTimeout: caddy.Duration(60 * time.Second),
		WriteTimeout:   caddy.Duration(10 * time.Second),
		CloseTimeout:   caddy.Duration(5 * time.Second),
		CloseDelay:     durationPtr(10 * time.Second),
		Identity:       "{http.auth.user.id}",
		Limits: &Limits{
			MaxFrameBytes:           1 << 20,
			MaxConnections:          10000,
			MaxConnectionsPerClient: 100,
			PublishRate:             1000,
			PublishBurst:            2000,
			PublishBytesRate:        1 << 20,
			MaxTopics:               100,
			MaxQueueBytes:           1 << 20,
			MaxBufferBytes:          4 << 20,
			PingInterval:            caddy.Duration(30 * time.Second),
			PongTimeout:             caddy.Duration(10 * time.Second),
		},
		Topics: &TopicOptions{Partitions: -1, Replication: -1},
		Producer: &ProducerOptions{
			MQLimit:         20000,
			MQInterval:      duration(200 * time.Millisecond),
			RequiredAcks:    "one",
			AckTimeout:      caddy.Duration(10 * time.Second),
			Partitioner:     "murmur2",
			Compression:     "none",
			MaxAttempts:     3,
			MaxMessageBytes: 1048576,
		},
		Consumer: &ConsumerOptions{
			GroupID:           "wskafka",
			FromOffset:        "latest",
			OutOfRange:        "earliest",
			MQLimit:           5000,
			MQInterval:        duration(50 * time.Millisecond),
			SessionTimeout:    caddy.Duration(10 * time.Second),
			HeartbeatInterval: caddy.Duration(time.Second),
			RebalanceTimeout:  caddy.Duration(30 * time.Second),
			CommitInterval:    duration(500 * time.Millisecond),
			FetchMinBytes:     1,
			FetchMaxBytes:     1048576,
			FetchMaxWait:      caddy.Duration(100 * time.Millisecond),
			MaxUnacked:        10000,
			GroupBalancers:    []string{"round_robin"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %s, want %s", mustJSON(t, got), mustJSON(t, want))
	}
	if err := got.Validate(); err != nil {
		t.Errorf("got %v, want the defaults to validate", err)
	}

	again := got
	again.applyDefaults()
	if !reflect.DeepEqual(again, want) {
		t.Errorf("applied twice, got %s, want %s", mustJSON(t, again), mustJSON(t, want))
	}
}

// TestApplyDefaultsKeepsSettings protects what the user set, zero intervals included, from the defaults.
func TestApplyDefaultsKeepsSettings(t *testing.T) {
	zero := caddy.Duration(0)
	tests := []struct {
		name  string
		h     Handler
		check func(h Handler) (got, want any)
	}{
		{
			name:  "brokers",
			h:     Handler{Brokers: []string{"k:9092"}},
			check: func(h Handler) (any, any) { return h.Brokers, []string{"k:9092"} },
		},
		{
			name:  "empty brokers stay empty for Validate to reject",
			h:     Handler{Brokers: []string{}},
			check: func(h Handler) (any, any) { return len(h.Brokers), 0 },
		},
		{
			name:  "client_id",
			h:     Handler{ClientID: "edge"},
			check: func(h Handler) (any, any) { return h.ClientID, "edge" },
		},
		{
			name:  "topics partitions with replication unset",
			h:     Handler{Topics: &TopicOptions{Partitions: 6}},
			check: func(h Handler) (any, any) { return *h.Topics, TopicOptions{Partitions: 6, Replication: -1} },
		},
		{
			name:  "producer mq_interval 0",
			h:     Handler{Producer: &ProducerOptions{MQInterval: &zero}},
			check: func(h Handler) (any, any) { return *h.Producer.MQInterval, zero },
		},
		{
			name: "producer mq_limit with the rest unset",
			h:    Handler{Producer: &ProducerOptions{MQLimit: 7}},
			check: func(h Handler) (any, any) {
				return [2]any{h.Producer.MQLimit, h.Producer.RequiredAcks}, [2]any{7, "one"}
			},
		},
		{
			name:  "consumer mq_interval 0",
			h:     Handler{Consumer: &ConsumerOptions{MQInterval: &zero}},
			check: func(h Handler) (any, any) { return *h.Consumer.MQInterval, zero },
		},
		{
			name:  "consumer commit_interval 0",
			h:     Handler{Consumer: &ConsumerOptions{CommitInterval: &zero}},
			check: func(h Handler) (any, any) { return *h.Consumer.CommitInterval, zero },
		},
		{
			name:  "consumer group_balancers",
			h:     Handler{Consumer: &ConsumerOptions{GroupBalancers: []string{"range"}}},
			check: func(h Handler) (any, any) { return h.Consumer.GroupBalancers, []string{"range"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.h.applyDefaults()
			if got, want := tt.check(tt.h); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCaddyValidateProvisionWithoutBroker protects `caddy validate` and `caddy adapt` without Kafka: Provision
// takes no connection, and Cleanup releases what Provision took, once, however often it is called.
func TestCaddyValidateProvisionWithoutBroker(t *testing.T) {
	// A listener that is never served: a dial during Provision or Cleanup would sit in its backlog.
	watch, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()

	tests := []struct {
		name    string
		brokers []string
	}{
		{name: "nothing listens", brokers: []string{closedAddr(t)}},
		{name: "listener never served", brokers: []string{watch.Addr().String()}},
		{name: "unresolvable and closed", brokers: []string{"kafka.invalid:9092", closedAddr(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()

			h := Handler{Brokers: tt.brokers}
			start := time.Now()
			if err := h.Provision(ctx); err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("got Provision taking %v, want it not to wait for a broker", elapsed)
			}
			if h.hub == nil {
				t.Errorf("got no hub after Provision, want one")
			}
			if h.ClientID != "wskafka" {
				t.Errorf("got client_id %q after Provision, want the default filled in", h.ClientID)
			}
			keys := h.poolKeys
			if len(keys) != 1 || keys[0] == embeddedBrokers {
				t.Fatalf("got pool keys %q, want one, for the kafka clients only", keys)
			}
			if refs, ok := pool.References(keys[0]); !ok || refs != 1 {
				t.Errorf("got %d references (loaded %v), want 1", refs, ok)
			}

			for i := range 2 {
				if err := h.Cleanup(); err != nil {
					t.Errorf("cleanup %d: got %v, want no error", i+1, err)
				}
			}
			if refs, ok := pool.References(keys[0]); ok {
				t.Errorf("got %d references after Cleanup, want the clients released", refs)
			}
		})
	}

	if err := watch.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if conn, err := watch.Accept(); err == nil {
		conn.Close()
		t.Errorf("got a connection to the broker address, want Provision and Cleanup not to dial")
	}
}

// TestCaddyValidateProvisionSharesClients protects the pool: handlers with the same Kafka settings share one entry,
// which outlives the first Cleanup and ends with the last.
func TestCaddyValidateProvisionSharesClients(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()

	addr := closedAddr(t)
	a, b := Handler{Brokers: []string{addr}}, Handler{Brokers: []string{addr}}
	for _, h := range []*Handler{&a, &b} {
		if err := h.Provision(ctx); err != nil {
			t.Fatalf("got %v, want no error", err)
		}
	}
	if !reflect.DeepEqual(a.poolKeys, b.poolKeys) {
		t.Fatalf("got pool keys %q and %q, want the same", a.poolKeys, b.poolKeys)
	}
	key := a.poolKeys[0]
	steps := []struct {
		name string
		h    *Handler
		refs int
	}{
		{name: "first cleanup", h: &a, refs: 1},
		{name: "first cleanup again", h: &a, refs: 1},
		{name: "last cleanup", h: &b, refs: 0},
	}
	for _, s := range steps {
		if err := s.h.Cleanup(); err != nil {
			t.Fatalf("%s: got %v, want no error", s.name, err)
		}
		if refs, _ := pool.References(key); refs != s.refs {
			t.Errorf("%s: got %d references, want %d", s.name, refs, s.refs)
		}
	}
}

// TestCaddyValidateCleanupAfterFailedProvision protects Caddy's unwinding of a config that fails to load: Cleanup
// runs on handlers whose Provision failed, or never ran, and must neither panic nor fail.
func TestCaddyValidateCleanupAfterFailedProvision(t *testing.T) {
	tests := []struct {
		name      string
		h         Handler
		provision bool
		want      string // the field the Provision error names
	}{
		{name: "broker without port", h: Handler{Brokers: []string{"kafka"}}, provision: true, want: "brokers"},
		{name: "unknown compression", h: Handler{Brokers: []string{"k:9092"}, Producer: &ProducerOptions{Compression: "brotli"}}, provision: true, want: "producer.compression"},
		{name: "empty brokers", h: Handler{Brokers: []string{}}, provision: true, want: "brokers must list"},
		{name: "never provisioned", h: Handler{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()

			h := tt.h
			if tt.provision {
				err := h.Provision(ctx)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an error naming %q", err, tt.want)
				}
				if len(h.poolKeys) != 0 {
					t.Errorf("got pool keys %q after a failed Provision, want none", h.poolKeys)
				}
			}
			for i := range 2 {
				if err := h.Cleanup(); err != nil {
					t.Errorf("cleanup %d: got %v, want no error", i+1, err)
				}
			}
		})
	}
}

// TestCaddyValidateConfig runs what `caddy validate` runs over an adapted Caddyfile: the whole config provisions
// without a broker, and a mistake in the handler fails it with the field's name.
func TestCaddyValidateConfig(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		want     string // "" for a valid config
	}{
		{name: "valid", settings: "consumer {\n\t\t\tmq_interval 0\n\t\t}"},
		{name: "bad partitioner", settings: "producer {\n\t\t\tpartitioner random\n\t\t}", want: "producer.partitioner"},
		{name: "heartbeat too long", settings: "consumer {\n\t\t\theartbeat_interval 1m\n\t\t}", want: "consumer.heartbeat_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := ":0 {\n\twskafka {\n\t\tbrokers " + closedAddr(t) + "\n\t\t" + tt.settings + "\n\t}\n}\n"
			cfgJSON := adapt(t, input)
			var cfg caddy.Config
			if err := json.Unmarshal(mustJSON(t, cfgJSON), &cfg); err != nil {
				t.Fatalf("decoding the adapted config: %v", err)
			}
			err := caddy.Validate(&cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
