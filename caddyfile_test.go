package wskafka

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	// The encode directive, for the order test: wskafka is registered after it.
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode/gzip"
)

// subdirective is one single-argument setting of the directive, for the generated error cases.
type subdirective struct {
	block string // "" for the top level, else topics, producer or consumer
	name  string
	kind  string // string, int or duration
}

// singleArgSubdirectives lists every subdirective that takes exactly one argument, as caddyfile.go documents it.
var singleArgSubdirectives = []subdirective{
	{"", "client_id", "string"},
	{"", "connect_timeout", "duration"},
	{"", "request_timeout", "duration"},
	{"", "write_timeout", "duration"},
	{"", "close_timeout", "duration"},
	{"", "close_delay", "duration"},
	{"topics", "partitions", "int"},
	{"topics", "replication", "int"},
	{"producer", "mq_limit", "int"},
	{"producer", "mq_interval", "duration"},
	{"producer", "required_acks", "string"},
	{"producer", "ack_timeout", "duration"},
	{"producer", "partitioner", "string"},
	{"producer", "compression", "string"},
	{"producer", "max_attempts", "int"},
	{"producer", "max_message_bytes", "int"},
	{"consumer", "group_id", "string"},
	{"consumer", "from_offset", "string"},
	{"consumer", "out_of_range", "string"},
	{"consumer", "mq_limit", "int"},
	{"consumer", "mq_interval", "duration"},
	{"consumer", "session_timeout", "duration"},
	{"consumer", "heartbeat_interval", "duration"},
	{"consumer", "rebalance_timeout", "duration"},
	{"consumer", "commit_interval", "duration"},
	{"consumer", "fetch_min_bytes", "int"},
	{"consumer", "fetch_max_bytes", "int"},
	{"consumer", "fetch_max_wait", "duration"},
}

// directive wraps one subdirective line in the wskafka block (and its own block, if any); the line is always line
// 3 of the input, so errors can be checked for their position.
func directive(block, line string) string {
	if block == "" {
		return "wskafka {\n\n\t" + line + "\n}"
	}
	return "wskafka {\n\t" + block + " {\n\t\t" + line + "\n\t}\n}"
}

type caddyfileErrorCase struct {
	name  string
	input string
	want  []string // substrings the error must contain
}

func caddyfileErrorCases() []caddyfileErrorCase {
	tests := []caddyfileErrorCase{
		{
			name:  "argument after wskafka",
			input: "wskafka extra {\n\tclient_id x\n}",
			want:  []string{"wrong argument count", "'extra'", "Testfile:1"},
		},
		{
			name:  "argument after wskafka without block",
			input: "wskafka extra",
			want:  []string{"wrong argument count", "'extra'"},
		},
		{
			name:  "brokers without argument",
			input: directive("", "brokers"),
			want:  []string{"wrong argument count", "'brokers'", "Testfile:3"},
		},
		{
			name:  "group_balancers without argument",
			input: directive("consumer", "group_balancers"),
			want:  []string{"wrong argument count", "'group_balancers'", "Testfile:3"},
		},
		{
			name:  "unrecognized top-level subdirective",
			input: directive("", "kafka_brokers localhost:9092"),
			want:  []string{`unrecognized subdirective "kafka_brokers"`, "Testfile:3"},
		},
		{
			name:  "producer setting at top level",
			input: directive("", "mq_limit 10"),
			want:  []string{`unrecognized subdirective "mq_limit"`},
		},
		{
			name:  "unrecognized topics subdirective",
			input: directive("topics", "retention 1h"),
			want:  []string{`unrecognized topics subdirective "retention"`, "Testfile:3"},
		},
		{
			name:  "consumer setting in topics",
			input: directive("topics", "group_id g"),
			want:  []string{`unrecognized topics subdirective "group_id"`},
		},
		{
			name:  "unrecognized producer subdirective",
			input: directive("producer", "linger 5ms"),
			want:  []string{`unrecognized producer subdirective "linger"`, "Testfile:3"},
		},
		{
			name:  "consumer setting in producer",
			input: directive("producer", "from_offset earliest"),
			want:  []string{`unrecognized producer subdirective "from_offset"`},
		},
		{
			name:  "unrecognized consumer subdirective",
			input: directive("consumer", "auto_commit true"),
			want:  []string{`unrecognized consumer subdirective "auto_commit"`, "Testfile:3"},
		},
		{
			name:  "producer setting in consumer",
			input: directive("consumer", "required_acks all"),
			want:  []string{`unrecognized consumer subdirective "required_acks"`},
		},
		{
			name:  "unrecognized subdirective after valid ones",
			input: "wskafka {\n\tclient_id x\n\tproducer {\n\t\tmq_limit 1\n\t}\n\tbogus\n}",
			want:  []string{`unrecognized subdirective "bogus"`, "Testfile:6"},
		},
		{
			name:  "unrecognized subdirective in the second of two consumer blocks",
			input: "wskafka {\n\tconsumer {\n\t\tmq_limit 1\n\t}\n\tconsumer {\n\t\tnope 1\n\t}\n}",
			want:  []string{`unrecognized consumer subdirective "nope"`, "Testfile:6"},
		},
	}
	for _, block := range []string{"topics", "producer", "consumer"} {
		tests = append(tests,
			caddyfileErrorCase{
				name:  "argument after " + block,
				input: "wskafka {\n\t" + block + " extra {\n\t}\n}",
				want:  []string{"wrong argument count", "'extra'", "Testfile:2"},
			},
			caddyfileErrorCase{
				name:  "argument after " + block + " without block",
				input: "wskafka {\n\t" + block + " extra\n}",
				want:  []string{"wrong argument count", "'extra'", "Testfile:2"},
			},
		)
	}
	for _, s := range singleArgSubdirectives {
		where := s.block
		if where == "" {
			where = "top level"
		}
		valid := map[string]string{"string": "x", "int": "7", "duration": "5s"}[s.kind]
		tests = append(tests,
			caddyfileErrorCase{
				name:  fmt.Sprintf("%s %s missing argument", where, s.name),
				input: directive(s.block, s.name),
				want:  []string{"wrong argument count", "'" + s.name + "'", "Testfile:3"},
			},
			caddyfileErrorCase{
				name:  fmt.Sprintf("%s %s extra argument", where, s.name),
				input: directive(s.block, s.name+" "+valid+" surplus"),
				want:  []string{"wrong argument count", "'surplus'", "Testfile:3"},
			},
		)
		switch s.kind {
		case "int":
			for _, bad := range []string{"many", "1.5", "1MB", "0x10"} {
				tests = append(tests, caddyfileErrorCase{
					name:  fmt.Sprintf("%s %s not a number %s", where, s.name, bad),
					input: directive(s.block, s.name+" "+bad),
					want:  []string{fmt.Sprintf("%s: %q is not a whole number", s.name, bad), "Testfile:3"},
				})
			}
		case "duration":
			for _, bad := range []string{"soon", "5", "1x"} {
				tests = append(tests, caddyfileErrorCase{
					name:  fmt.Sprintf("%s %s bad duration %s", where, s.name, bad),
					input: directive(s.block, s.name+" "+bad),
					want:  []string{fmt.Sprintf("%s: %q is not a duration", s.name, bad), "Testfile:3"},
				})
			}
		}
	}
	return tests
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tt := range caddyfileErrorCases() {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil {
				t.Fatalf("got no error for\n%s\nwant one containing %q", tt.input, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func duration(d time.Duration) *caddy.Duration {
	cd := caddy.Duration(d)
	return &cd
}

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Handler
	}{
		{
			name:  "bare directive",
			input: "wskafka",
			want:  Handler{},
		},
		{
			name:  "empty block",
			input: "wskafka {\n}",
			want:  Handler{},
		},
		{
			name:  "embedded",
			input: "wskafka {\n\tbrokers embedded\n}",
			want:  Handler{Brokers: []string{"embedded"}},
		},
		{
			name:  "several brokers",
			input: "wskafka {\n\tbrokers k1:9092 k2:9092 [::1]:9093\n}",
			want:  Handler{Brokers: []string{"k1:9092", "k2:9092", "[::1]:9093"}},
		},
		{
			name:  "empty nested blocks allocate their options",
			input: "wskafka {\n\ttopics {\n\t}\n\tproducer\n\tconsumer {\n\t}\n}",
			want:  Handler{Topics: &TopicOptions{}, Producer: &ProducerOptions{}, Consumer: &ConsumerOptions{}},
		},
		{
			name:  "repeated blocks merge",
			input: "wskafka {\n\tproducer {\n\t\tmq_limit 5\n\t}\n\tproducer {\n\t\tcompression zstd\n\t}\n}",
			want:  Handler{Producer: &ProducerOptions{MQLimit: 5, Compression: "zstd"}},
		},
		{
			name:  "negative numbers parse; Validate judges them",
			input: "wskafka {\n\ttopics {\n\t\tpartitions -1\n\t\treplication -1\n\t}\n}",
			want:  Handler{Topics: &TopicOptions{Partitions: -1, Replication: -1}},
		},
		{
			name:  "close_delay 0 closes at once after a reload",
			input: "wskafka {\n\tclose_delay 0\n}",
			want:  Handler{CloseDelay: duration(0)},
		},
		{
			name:  "day durations",
			input: "wskafka {\n\trequest_timeout 1d\n}",
			want:  Handler{RequestTimeout: caddy.Duration(24 * time.Hour)},
		},
		{
			name: "full syntax",
			input: `wskafka {
				brokers k1:9092 k2:9092
				client_id bridge-1
				connect_timeout 2s
				request_timeout 30s
				write_timeout 3s
				close_timeout 4s
				close_delay 30s
				topics {
					partitions 6
					replication 3
				}
				producer {
					mq_limit 100
					mq_interval 10ms
					required_acks all
					ack_timeout 7s
					partitioner crc32
					compression lz4
					max_attempts 5
					max_message_bytes 2048
				}
				consumer {
					group_id readers
					from_offset earliest
					out_of_range latest
					mq_limit 50
					mq_interval 20ms
					session_timeout 30s
					heartbeat_interval 3s
					rebalance_timeout 1m
					commit_interval 250ms
					fetch_min_bytes 10
					fetch_max_bytes 4096
					fetch_max_wait 300ms
					group_balancers range round_robin
				}
			}`,
			want: Handler{
				Brokers:        []string{"k1:9092", "k2:9092"},
				ClientID:       "bridge-1",
				ConnectTimeout: caddy.Duration(2 * time.Second),
				RequestTimeout: caddy.Duration(30 * time.Second),
				WriteTimeout:   caddy.Duration(3 * time.Second),
				CloseTimeout:   caddy.Duration(4 * time.Second),
				CloseDelay:     duration(30 * time.Second),
				Topics:         &TopicOptions{Partitions: 6, Replication: 3},
				Producer: &ProducerOptions{
					MQLimit:         100,
					MQInterval:      duration(10 * time.Millisecond),
					RequiredAcks:    "all",
					AckTimeout:      caddy.Duration(7 * time.Second),
					Partitioner:     "crc32",
					Compression:     "lz4",
					MaxAttempts:     5,
					MaxMessageBytes: 2048,
				},
				Consumer: &ConsumerOptions{
					GroupID:           "readers",
					FromOffset:        "earliest",
					OutOfRange:        "latest",
					MQLimit:           50,
					MQInterval:        duration(20 * time.Millisecond),
					SessionTimeout:    caddy.Duration(30 * time.Second),
					HeartbeatInterval: caddy.Duration(3 * time.Second),
					RebalanceTimeout:  caddy.Duration(time.Minute),
					CommitInterval:    duration(250 * time.Millisecond),
					FetchMinBytes:     10,
					FetchMaxBytes:     4096,
					FetchMaxWait:      caddy.Duration(300 * time.Millisecond),
					GroupBalancers:    []string{"range", "round_robin"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Handler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %s, want %s", mustJSON(t, got), mustJSON(t, tt.want))
			}
		})
	}
}

// TestUnmarshalCaddyfileZeroIntervals protects the difference between an interval set to 0 ("at once") and one
// left unset (the default): only the first survives applyDefaults and the JSON encoding as 0.
func TestUnmarshalCaddyfileZeroIntervals(t *testing.T) {
	tests := []struct {
		name  string
		input string
		field func(h *Handler) *caddy.Duration
		json  string
	}{
		{
			name:  "producer mq_interval 0",
			input: "wskafka {\n\tproducer {\n\t\tmq_interval 0\n\t}\n}",
			field: func(h *Handler) *caddy.Duration { return h.Producer.MQInterval },
			json:  `"producer":{"mq_interval":0}`,
		},
		{
			name:  "producer mq_interval 0s",
			input: "wskafka {\n\tproducer {\n\t\tmq_interval 0s\n\t}\n}",
			field: func(h *Handler) *caddy.Duration { return h.Producer.MQInterval },
			json:  `"producer":{"mq_interval":0}`,
		},
		{
			name:  "consumer mq_interval 0",
			input: "wskafka {\n\tconsumer {\n\t\tmq_interval 0\n\t}\n}",
			field: func(h *Handler) *caddy.Duration { return h.Consumer.MQInterval },
			json:  `"consumer":{"mq_interval":0}`,
		},
		{
			name:  "consumer commit_interval 0",
			input: "wskafka {\n\tconsumer {\n\t\tcommit_interval 0\n\t}\n}",
			field: func(h *Handler) *caddy.Duration { return h.Consumer.CommitInterval },
			json:  `"consumer":{"commit_interval":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got := tt.field(&h); got == nil || *got != 0 {
				t.Fatalf("got %v, want a pointer to 0", got)
			}
			if got := string(mustJSON(t, h)); !strings.Contains(got, tt.json) {
				t.Errorf("got JSON %s, want it to contain %s", got, tt.json)
			}

			// The JSON round trip is what Caddy provisions from: 0 must survive it and the defaults.
			var loaded Handler
			if err := json.Unmarshal(mustJSON(t, h), &loaded); err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			loaded.applyDefaults()
			if got := tt.field(&loaded); got == nil || *got != 0 {
				t.Errorf("after JSON and defaults got %v, want a pointer to 0", got)
			}
			if err := loaded.Validate(); err != nil {
				t.Errorf("got error %v, want none", err)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	return b
}

// adapt runs the Caddyfile adapter over input and returns the config as generic JSON.
func adapt(t *testing.T, input string) map[string]any {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("got no caddyfile adapter, want one registered")
	}
	if !strings.HasSuffix(input, "\n") {
		input += "\n" // as caddy fmt writes it, so that any warning is worth failing for
	}
	out, warnings, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapting:\n%s\ngot error %v, want none", input, err)
	}
	for _, w := range warnings {
		t.Errorf("adapting:\n%s\ngot warning %s, want none", input, w)
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("decoding the adapted config %s: %v", out, err)
	}
	return cfg
}

// handlers returns the handler objects of an adapted config in the order Caddy runs them: a depth-first walk
// that keeps array order and visits object keys sorted.
func handlers(v any) []map[string]any {
	var found []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["handler"].(string); ok {
				found = append(found, v)
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(v[k])
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return found
}

// wskafkaHandler returns the one wskafka handler of an adapted config.
func wskafkaHandler(t *testing.T, cfg map[string]any) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, h := range handlers(cfg) {
		if h["handler"] == "wskafka" {
			found = append(found, h)
		}
	}
	if len(found) != 1 {
		t.Fatalf("got %d wskafka handlers in %s, want 1", len(found), mustJSON(t, cfg))
	}
	return found[0]
}

// routeOf returns the route (an object with "handle") whose handle list holds the wskafka handler directly.
func routeOf(v any) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if hs, ok := v["handle"].([]any); ok {
			for _, h := range hs {
				if m, ok := h.(map[string]any); ok && m["handler"] == "wskafka" {
					return v
				}
			}
		}
		for _, e := range v {
			if r := routeOf(e); r != nil {
				return r
			}
		}
	case []any:
		for _, e := range v {
			if r := routeOf(e); r != nil {
				return r
			}
		}
	}
	return nil
}

func TestAdapt(t *testing.T) {
	tests := []struct {
		name      string
		caddyfile string
		handler   string // the wskafka handler's JSON
		match     string // the JSON of the match of the route holding the handler; "" for none
	}{
		{
			name:      "site level, no settings",
			caddyfile: ":8080 {\n\twskafka\n}",
			handler:   `{"handler":"wskafka"}`,
		},
		{
			name: "site level, settings",
			caddyfile: `:8080 {
	wskafka {
		brokers k1:9092 k2:9092
		client_id edge
		request_timeout 15s
		topics {
			partitions 3
			replication 2
		}
		producer {
			mq_limit 10
			mq_interval 0
			required_acks all
			compression gzip
		}
		consumer {
			group_id g1
			from_offset earliest
			commit_interval 0
			session_timeout 45s
			group_balancers range
		}
	}
}`,
			handler: `{
				"handler": "wskafka",
				"brokers": ["k1:9092", "k2:9092"],
				"client_id": "edge",
				"request_timeout": 15000000000,
				"topics": {"partitions": 3, "replication": 2},
				"producer": {"mq_limit": 10, "mq_interval": 0, "required_acks": "all", "compression": "gzip"},
				"consumer": {
					"group_id": "g1",
					"from_offset": "earliest",
					"commit_interval": 0,
					"session_timeout": 45000000000,
					"group_balancers": ["range"]
				}
			}`,
		},
		{
			name:      "inside route",
			caddyfile: ":8080 {\n\troute /ws {\n\t\twskafka\n\t}\n\trespond 404\n}",
			handler:   `{"handler":"wskafka"}`,
		},
		{
			name:      "inside handle with settings",
			caddyfile: ":8080 {\n\thandle /ws {\n\t\twskafka {\n\t\t\tbrokers embedded\n\t\t}\n\t}\n}",
			handler:   `{"handler":"wskafka","brokers":["embedded"]}`,
		},
		{
			name:      "path matcher",
			caddyfile: ":8080 {\n\twskafka /ws {\n\t\tconsumer {\n\t\t\tmq_limit 7\n\t\t}\n\t}\n}",
			handler:   `{"handler":"wskafka","consumer":{"mq_limit":7}}`,
			match:     `[{"path":["/ws"]}]`,
		},
		{
			name:      "named matcher",
			caddyfile: ":8080 {\n\t@ws path /ws /kafka\n\twskafka @ws {\n\t\tclient_id named\n\t}\n}",
			handler:   `{"handler":"wskafka","client_id":"named"}`,
			match:     `[{"path":["/ws","/kafka"]}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := adapt(t, tt.caddyfile)
			got := wskafkaHandler(t, cfg)
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.handler), &want); err != nil {
				t.Fatalf("bad test JSON %s: %v", tt.handler, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %s, want %s", mustJSON(t, got), mustJSON(t, want))
			}

			route := routeOf(cfg)
			if route == nil {
				t.Fatalf("got no route holding the wskafka handler in %s", mustJSON(t, cfg))
			}
			if tt.match == "" {
				return
			}
			var wantMatch any
			if err := json.Unmarshal([]byte(tt.match), &wantMatch); err != nil {
				t.Fatalf("bad test JSON %s: %v", tt.match, err)
			}
			if !reflect.DeepEqual(route["match"], wantMatch) {
				t.Errorf("got match %s, want %s", mustJSON(t, route["match"]), tt.match)
			}

			// What Caddy provisions from must load back into the Handler.
			var h Handler
			if err := json.Unmarshal(mustJSON(t, got), &h); err != nil {
				t.Errorf("got error %v loading the adapted handler, want none", err)
			}
		})
	}
}

func TestAdaptErrors(t *testing.T) {
	tests := []struct {
		name      string
		caddyfile string
		want      string
	}{
		{
			name:      "unrecognized subdirective",
			caddyfile: ":8080 {\n\twskafka {\n\t\tbrokerz k:1\n\t}\n}",
			want:      `unrecognized subdirective "brokerz"`,
		},
		{
			name:      "argument that is not a matcher",
			caddyfile: ":8080 {\n\twskafka ws\n}",
			want:      "'ws'",
		},
		{
			name:      "bad duration in consumer",
			caddyfile: ":8080 {\n\twskafka {\n\t\tconsumer {\n\t\t\tfetch_max_wait later\n\t\t}\n\t}\n}",
			want:      `fetch_max_wait: "later" is not a duration`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tt.caddyfile), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestAdaptDirectiveOrder protects the registered order: wskafka runs after encode and before respond, whatever
// the order the directives are written in, so a site-level respond cannot answer a WebSocket upgrade first.
func TestAdaptDirectiveOrder(t *testing.T) {
	tests := []struct {
		name      string
		caddyfile string
		want      []string // handler names, in the order they run
	}{
		{
			name:      "respond written first",
			caddyfile: ":8080 {\n\trespond \"x\"\n\twskafka\n}",
			want:      []string{"wskafka", "static_response"},
		},
		{
			name:      "respond written last",
			caddyfile: ":8080 {\n\twskafka\n\trespond \"x\"\n}",
			want:      []string{"wskafka", "static_response"},
		},
		{
			name:      "encode written after",
			caddyfile: ":8080 {\n\trespond \"x\"\n\twskafka\n\tencode gzip\n}",
			want:      []string{"encode", "wskafka", "static_response"},
		},
		{
			name:      "before handle blocks",
			caddyfile: ":8080 {\n\thandle /x {\n\t\trespond \"x\"\n\t}\n\twskafka\n}",
			want:      []string{"wskafka", "subroute", "static_response"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, h := range handlers(adapt(t, tt.caddyfile)) {
				got = append(got, h["handler"].(string))
			}
			// A single site's routes may be wrapped in a subroute; only the order among the others matters.
			if len(got) > 0 && got[0] == "subroute" {
				got = got[1:]
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAdaptCaddyfileExample protects the shipped example: it adapts, and its handler loads, validates and has the
// brokers that KAFKA_BROKERS gives (or embedded without it).
func TestAdaptCaddyfileExample(t *testing.T) {
	example, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatalf("reading the example: %v", err)
	}
	tests := []struct {
		name    string
		env     *string // KAFKA_BROKERS; nil for unset
		brokers []string
	}{
		{name: "KAFKA_BROKERS unset", brokers: []string{"embedded"}},
		{name: "KAFKA_BROKERS set", env: ptr("k1:9092 k2:9092"), brokers: []string{"k1:9092", "k2:9092"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KAFKA_BROKERS", "")
			if tt.env == nil {
				os.Unsetenv("KAFKA_BROKERS")
			} else {
				os.Setenv("KAFKA_BROKERS", *tt.env)
			}
			cfg := adapt(t, string(example))
			raw := wskafkaHandler(t, cfg)
			if route := routeOf(cfg); route == nil {
				t.Errorf("got no route holding the wskafka handler in %s", mustJSON(t, cfg))
			}

			var h Handler
			if err := json.Unmarshal(mustJSON(t, raw), &h); err != nil {
				t.Fatalf("got error %v loading the adapted handler, want none", err)
			}
			if !slices.Equal(h.Brokers, tt.brokers) {
				t.Errorf("got brokers %v, want %v", h.Brokers, tt.brokers)
			}
			if h.Producer == nil || h.Producer.MQInterval == nil || *h.Producer.MQInterval != caddy.Duration(200*time.Millisecond) {
				t.Errorf("got producer %s, want mq_interval 200ms", mustJSON(t, h.Producer))
			}
			if h.Consumer == nil || h.Consumer.GroupID != "wskafka" {
				t.Errorf("got consumer %s, want group_id wskafka", mustJSON(t, h.Consumer))
			}
			h.applyDefaults()
			if err := h.Validate(); err != nil {
				t.Errorf("got error %v, want none", err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
