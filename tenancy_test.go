package wskafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/segmentio/kafka-go"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/wskafka/wskafka/bridge"
)

// tenantRoute serves a namespace per X-Tenant header, as forward_auth would set it (see the e2e suite for the
// real forward_auth), with permissions on the names each tenant sees.
const tenantRoute = quietLogs + `
http://{addr} {
	wskafka {
		brokers {brokers}
		namespace {http.request.header.X-Tenant}.
		permissions {
			create    *
			publish   *
			subscribe *
			list      *
			describe  *
			delete    *
			groups    *
			health    all
		}
		topics {
			allow_delete
		}
		producer {
			mq_interval 0
		}
		consumer {
			mq_interval 0
		}
	}
}`

func dialTenant(t *testing.T, addr, tenant string) *client {
	t.Helper()
	return dialHeader(t, "ws://"+addr+"/", http.Header{"X-Tenant": {tenant}})
}

// kafkaTopics lists every topic of the broker, as Kafka names them. A transport of its own: the shared one's
// metadata cache would not show topics made a moment ago.
func kafkaTopics(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	res, err := (&kafka.Client{Addr: kafka.TCP(testBrokers), Transport: transport}).Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, topic := range res.Topics {
		names = append(names, topic.Name)
	}
	return names
}

// TestNamespaceNames checks what a tenant sees: its own names, without the prefix, in every reply; and what
// Kafka holds: the prefixed names.
func TestNamespaceNames(t *testing.T) {
	addr := startCaddyfile(t, tenantRoute)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	a, b := "ta"+run, "tb"+run
	alice := dialTenant(t, addr, a)
	bob := dialTenant(t, addr, b)

	if r := alice.request(`{"id":1,"t":"topic","a":"create","p":[{"name":"orders","partitions":1},{"name":"events","partitions":2}]}`, "1"); *r.S != 0 ||
		string(r.P) != `[{"name":"orders","s":0},{"name":"events","s":0}]` {
		t.Fatalf("create: got %s", r.P)
	}
	topics := kafkaTopics(t)
	for _, want := range []string{a + ".orders", a + ".events"} {
		if !slices.Contains(topics, want) {
			t.Fatalf("kafka has %v, want %s", topics, want)
		}
	}
	waitTopicReady(t, a+".orders", 1)
	waitTopicReady(t, a+".events", 2)

	if r := alice.request(`{"id":2,"t":"topic","a":"list"}`, "2"); string(r.P) != `[{"topic":"events","partition":0},{"topic":"events","partition":1},{"topic":"orders","partition":0}]` {
		t.Fatalf("alice's list: got %s", r.P)
	}
	if r := bob.request(`{"id":2,"t":"topic","a":"list"}`, "2"); string(r.P) != `[]` {
		t.Fatalf("bob's list: got %s, want none of alice's topics", r.P)
	}
	if r := alice.request(`{"id":3,"t":"topic","a":"describe","p":{"t":["orders"],"consumer_group":"billing"}}`, "3"); *r.S != 0 ||
		!strings.HasPrefix(string(r.P), `[{"topic":"orders","partitions":[`) {
		t.Fatalf("describe: got %s", r.P)
	}

	// Subscribing with meta and assignments; the reply, the assigned frame and the metadata name "orders".
	alice.send(`{"id":4,"t":"topic","a":"subscribe","p":{"t":["orders"],"consumer_group":"billing","meta":true,"assignments":true,"from":"earliest"}}`)
	if r := alice.replyTo("4"); string(r.P) != `["orders"]` {
		t.Fatalf("subscribe: got %s", r.P)
	}
	assigned := alice.nextFrame(`"a":"assigned"`)
	if !strings.Contains(assigned, `"p":{"orders":{"0":0}}`) {
		t.Fatalf("assigned: got %s", assigned)
	}
	alice.send(`{"id":5,"t":"notif","ack":true,"p":{"t":"orders","m":"m1"}}`)
	r, els := alice.replyAndElements("5", 1)
	if !strings.HasPrefix(string(r.P), `{"t":"orders","part":0,"offset":0,`) {
		t.Fatalf("receipt: got %s", r.P)
	}
	if !strings.Contains(string(els[0]), `"topic":"orders"`) {
		t.Fatalf("notification: got %s", els[0])
	}
	if got := readTopic(t, a+".orders", 1); got[0] != "m1" {
		t.Fatalf("kafka: got %q", got)
	}

	// health lists only the sockets of the caller's namespace, with their names.
	if r := alice.request(`{"id":6,"t":"health"}`, "6"); strings.Count(string(r.P), `"ws"`) != 1 || !strings.Contains(string(r.P), `"topics":["orders"]`) {
		t.Fatalf("alice's health: got %s", r.P)
	}
	if r := bob.request(`{"id":6,"t":"health"}`, "6"); strings.Count(string(r.P), `"ws"`) != 1 || strings.Contains(string(r.P), "orders") {
		t.Fatalf("bob's health: got %s", r.P)
	}
	// The group is alice's own: describe shows its committed offsets under the name she gave.
	if r := alice.request(`{"id":7,"t":"topic","a":"unsubscribe"}`, "7"); *r.S != 0 {
		t.Fatalf("unsubscribe: got %s", r.P)
	}
}

// TestNamespaceAttacks is another tenant trying to reach alice's topics and groups by every field that takes a
// name. Whatever bob sends stays in bob's namespace: nothing of alice's is created, read, listed, described or
// deleted, and every refusal answers s:1 with the request's refid.
func TestNamespaceAttacks(t *testing.T) {
	addr := startCaddyfile(t, tenantRoute)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	a, b := "ta"+run, "tb"+run
	alice := dialTenant(t, addr, a)
	if r := alice.request(`{"id":1,"t":"topic","a":"create","p":[{"name":"orders","partitions":1}]}`, "1"); *r.S != 0 {
		t.Fatalf("create: got %s", r.P)
	}
	waitTopicReady(t, a+".orders", 1)
	alice.request(`{"id":2,"t":"notif","ack":true,"p":{"t":"orders","m":"secret"}}`, "2")
	bob := dialTenant(t, addr, b)
	before := kafkaTopics(t)

	long := strings.Repeat("x", 249-len(b+"."))
	tests := []struct {
		name  string
		frame string
		code  string // the error code; "" for s:0
		p     string // the reply's p, or a part of the message
	}{
		{"create with alice's prefix makes bob's own", `{"id":"c","t":"topic","a":"create","p":["` + a + `.orders"]}`, "", `["` + a + `.orders"]`},
		{"subscribe to alice's topic", `{"id":"s","t":"topic","a":"subscribe","p":{"t":["orders"],"from":"earliest"}}`, "unknown_topic", "no such topic: orders"},
		{"subscribe by alice's full name reads bob's copy", `{"id":"s2","t":"topic","a":"subscribe","p":{"t":["` + a + `.orders"],"from":"earliest","seek":{"` + a + `.orders":{"0":0}}}}`, "", `["` + a + `.orders"]`},
		{"seek key outside p.t", `{"id":"k","t":"topic","a":"subscribe","p":{"t":["x"],"seek":{"` + a + `.orders":{"0":0}}}}`, "invalid_payload", "names a topic that is not in p.t"},
		{"describe alice's topic", `{"id":"d","t":"topic","a":"describe","p":["orders"]}`, "unknown_topic", "no such topic: orders"},
		{"describe alice's default group", `{"id":"g","t":"topic","a":"describe","p":{"t":["` + a + `.orders"],"consumer_group":"` + a + `.wskafka"}}`, "", `"topic":"` + a + `.orders"`},
		{"a group climbing out", `{"id":"g2","t":"topic","a":"describe","p":{"t":["` + a + `.orders"],"consumer_group":"../` + a + `.wskafka"}}`, "forbidden", "not allowed to read the offsets of group ../" + a + ".wskafka"},
		{"delete alice's topic", `{"id":"x","t":"topic","a":"delete","p":["orders"]}`, "unknown_topic", "orders"},
		{"ack alice's partition", `{"id":"a","t":"notif","a":"ack","p":{"t":"orders","part":0,"offset":0}}`, "invalid_payload", "nothing to acknowledge"},
		{"glob", `{"id":"glob","t":"topic","a":"subscribe","p":{"t":["*"]}}`, "invalid_topic", `contains '*'`},
		{"path", `{"id":"path","t":"topic","a":"create","p":["../` + a + `.orders"]}`, "invalid_topic", `contains '/'`},
		{"upper case prefix", `{"id":"case","t":"topic","a":"describe","p":["` + strings.ToUpper(a) + `.orders"]}`, "unknown_topic", "no such topic: " + strings.ToUpper(a) + ".orders"},
		{"longest name that fits", `{"id":"fit","t":"topic","a":"create","p":["` + long + `"]}`, "", `["` + long + `"]`},
		{"one character too long", `{"id":"long","t":"topic","a":"create","p":["` + long + `x"]}`, "invalid_topic", "the most this route's namespace leaves"},
		{"publish too long", `{"id":"plong","t":"notif","p":{"t":"` + long + `x","m":"m"}}`, "invalid_topic", "the most this route's namespace leaves"},
		{"group too long", `{"id":"glong","t":"topic","a":"subscribe","p":{"t":["x"],"consumer_group":"` + strings.Repeat("g", 255-len(b)) + `"}}`, "invalid_topic", "consumer group name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var id string
			json.Unmarshal([]byte(tt.frame), &struct{ ID *string }{&id})
			r := bob.request(tt.frame, `"`+id+`"`)
			if tt.code == "" {
				if *r.S != 0 || !strings.Contains(string(r.P), tt.p) {
					t.Fatalf("got s %d p %s, want s 0 with %s", *r.S, r.P, tt.p)
				}
				return
			}
			if r.errorCode() != tt.code || !strings.Contains(string(r.P), tt.p) || strings.Contains(string(r.P), b+".") {
				t.Fatalf("got %s, want %s mentioning %q and not bob's prefix", r.P, tt.code, tt.p)
			}
		})
	}

	// A request array mixing names: each element is answered as if alone, every name stays bob's. The delete is of
	// another of bob's topics: a publish is buffered for mq_interval, so deleting its own topic in the same array
	// may come first, as it would against any Kafka client.
	bob.send(`[{"id":"m1","t":"notif","ack":true,"p":{"t":"` + a + `.orders","m":"from bob"}},{"id":"m2","t":"topic","a":"delete","p":["` + long + `"]},{"id":"m3","t":"topic","a":"describe","p":["orders"]}]`)
	got := bob.replies(`"m1"`, `"m2"`, `"m3"`)
	if r := got[`"m1"`]; *r.S != 0 || !strings.HasPrefix(string(r.P), `{"t":"`+a+`.orders"`) {
		t.Fatalf("publish in an array: got %s", r.P)
	}
	if r := got[`"m2"`]; *r.S != 0 {
		t.Fatalf("delete in an array: got %s", r.P)
	}
	if r := got[`"m3"`]; r.errorCode() != "unknown_topic" {
		t.Fatalf("describe in an array: got %s", r.P)
	}

	// Kafka: alice's topic is there with only her record; everything bob made is under his prefix.
	if got := readTopic(t, a+".orders", 1); got[0] != "secret" {
		t.Fatalf("alice's topic: got %q", got)
	}
	for _, name := range kafkaTopics(t) {
		if !slices.Contains(before, name) && !strings.HasPrefix(name, b+".") {
			t.Errorf("bob made %s, outside his namespace", name)
		}
	}
	if r := alice.request(`{"id":9,"t":"topic","a":"list"}`, "9"); string(r.P) != `[{"topic":"orders","partition":0}]` {
		t.Fatalf("alice's list after bob's tries: got %s", r.P)
	}
}

// TestNamespaceRefused checks that a namespace that resolves to nothing, or to characters Kafka refuses,
// refuses the upgrade rather than serving without a namespace.
func TestNamespaceRefused(t *testing.T) {
	addr := startCaddyfile(t, tenantRoute)
	for _, tenant := range []string{"", "a/b", "a*"} {
		header := http.Header{}
		if tenant != "" {
			header.Set("X-Tenant", tenant)
		}
		if _, status := dialWith(t, "ws://"+addr+"/", header); status != http.StatusForbidden {
			t.Errorf("tenant %q: got %d, want 403", tenant, status)
		}
	}
}

// TestNamespacePermissions checks that permissions name what the client sees.
func TestNamespacePermissions(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
		namespace {http.request.header.X-Tenant}.
		permissions {
			create public.*
		}
	}
}`)
	c := dialTenant(t, addr, "tp"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if r := c.request(`{"id":1,"t":"topic","a":"create","p":["public.news"]}`, "1"); *r.S != 0 {
		t.Fatalf("allowed create: got %s", r.P)
	}
	if r := c.request(`{"id":2,"t":"topic","a":"create","p":["private"]}`, "2"); r.errorCode() != "forbidden" || !strings.Contains(string(r.P), "not allowed to create private") {
		t.Fatalf("denied create: got %s", r.P)
	}
}

// expiryRoute closes each socket when its X-Expires header says.
const expiryRoute = quietLogs + `
http://{addr} {
	wskafka {
		brokers {brokers}
		credential_expiry {http.request.header.X-Expires}
		close_timeout 2s
		producer {
			mq_interval 1h
		}
	}
}`

// TestCredentialExpiry checks that a socket closes with 4001 when its credential expires, after publishing what
// it had buffered, and that an expired or unreadable credential is refused at the upgrade.
func TestCredentialExpiry(t *testing.T) {
	addr := startCaddyfile(t, expiryRoute)
	url := "ws://" + addr + "/"
	for _, tt := range []struct{ name, expires string }{
		{"expired", strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)},
		{"expired RFC 3339", time.Now().Add(-time.Second).UTC().Format(time.RFC3339)},
		{"missing", ""},
		{"unreadable", "tomorrow"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			header := http.Header{}
			if tt.expires != "" {
				header.Set("X-Expires", tt.expires)
			}
			if _, status := dialWith(t, url, header); status != http.StatusUnauthorized {
				t.Fatalf("got %d, want 401", status)
			}
			header.Set("Sec-WebSocket-Protocol", "wskafka")
			c, status := dialWith(t, url, header)
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("with the subprotocol: got %d, want an upgrade closed with 4001", status)
			}
			if code := c.closeCode(); code != 4001 {
				t.Fatalf("with the subprotocol: got close code %d, want 4001", code)
			}
		})
	}

	topic := topicName(t)
	createTopicPartitions(t, 1, topic)
	expires := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	c := dialHeader(t, url, http.Header{"X-Expires": {expires.UTC().Format(time.RFC3339)}})
	const n = 50
	for i := range n {
		c.send(fmt.Sprintf(`{"t":"notif","p":{"t":%q,"m":"m%d"}}`, topic, i))
	}
	if code, reason := c.closeFrame(); code != 4001 || reason != "credential expired, reconnect with a new one" {
		t.Fatalf("got close code %d %q, want 4001 saying the credential expired", code, reason)
	}
	t.Logf("closed %v after the credential expired", time.Since(expires))
	if got := readTopic(t, topic, n); len(got) != n {
		t.Fatalf("kafka holds %d of the %d publishes buffered at the expiry", len(got), n)
	}
}

// TestMaxConnectionAge checks that a socket closes with 4001 at the route's largest age, saying so, and at its
// credential's expiry when that comes first.
func TestMaxConnectionAge(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
		credential_expiry {http.request.header.X-Expires}
		max_connection_age 2s 500ms
	}
}`)
	for _, tt := range []struct {
		name    string
		expires time.Duration
		reason  string
	}{
		{"age first", time.Hour, "connection reached its largest age, reconnect with a fresh credential"},
		{"credential first", 500 * time.Millisecond, "credential expired, reconnect with a new one"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			expires := strconv.FormatFloat(float64(time.Now().Add(tt.expires).UnixMilli())/1000, 'f', 3, 64)
			c := dialHeader(t, "ws://"+addr+"/", http.Header{"X-Expires": {expires}})
			if code, reason := c.closeFrame(); code != 4001 || reason != tt.reason {
				t.Fatalf("got close code %d %q, want 4001 %q", code, reason, tt.reason)
			}
		})
	}
}

// closeCode waits for the server's close frame and returns its code.
func (c *client) closeCode() int {
	c.t.Helper()
	code, _ := c.closeFrame()
	return code
}

// closeFrame waits for the server's close frame and returns its code and reason.
func (c *client) closeFrame() (int, string) {
	c.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case _, ok := <-c.frames:
			if !ok {
				err := <-c.closed
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return ce.Code, ce.Text
				}
				c.t.Fatalf("connection ended without a close frame: %v", err)
			}
		case <-deadline:
			c.t.Fatalf("no close frame within %v", waitLimit)
		}
	}
}

// nextFrame returns the next frame that contains marker, skipping others.
func (c *client) nextFrame(marker string) string {
	c.t.Helper()
	for {
		if f := string(c.next()); strings.Contains(f, marker) {
			return f
		}
	}
}

func TestTenancyCaddyfile(t *testing.T) {
	tests := []struct {
		name, input string
		want        Handler
		wantErr     string
	}{
		{"all three", `wskafka {
			namespace {http.request.host}.
			credential_expiry {http.request.header.X-Expires}
			max_connection_age 1h 5m
		}`, Handler{Namespace: "{http.request.host}.", CredentialExpiry: "{http.request.header.X-Expires}",
			MaxConnectionAge: caddy.Duration(time.Hour), MaxConnectionAgeJitter: durationPtr(5 * time.Minute)}, ""},
		{"age without jitter", `wskafka {
			max_connection_age 1h
		}`, Handler{MaxConnectionAge: caddy.Duration(time.Hour)}, ""},
		{"namespace without a value", `wskafka {
			namespace
		}`, Handler{}, "wrong argument count"},
		{"age not a duration", `wskafka {
			max_connection_age soon
		}`, Handler{}, `max_connection_age: "soon" is not a duration`},
		{"age with too many", `wskafka {
			max_connection_age 1h 1m 1s
		}`, Handler{}, "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Namespace != tt.want.Namespace || h.CredentialExpiry != tt.want.CredentialExpiry ||
				h.MaxConnectionAge != tt.want.MaxConnectionAge || fmt.Sprint(durationOr0(h.MaxConnectionAgeJitter)) != fmt.Sprint(durationOr0(tt.want.MaxConnectionAgeJitter)) {
				t.Fatalf("got %+v, want %+v", h, tt.want)
			}
		})
	}
}

func TestTenancyValidate(t *testing.T) {
	tests := []struct {
		name string
		h    Handler
		want string
	}{
		{"negative age", Handler{MaxConnectionAge: -1}, "max_connection_age must not be negative"},
		{"jitter as long as the age", Handler{MaxConnectionAge: caddy.Duration(time.Minute), MaxConnectionAgeJitter: durationPtr(time.Minute)}, "max_connection_age_jitter must be shorter than max_connection_age"},
		{"jitter without age", Handler{MaxConnectionAgeJitter: durationPtr(time.Minute)}, "max_connection_age_jitter needs max_connection_age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.h.validateTenancy()
			if len(errs) != 1 || errs[0].Error() != tt.want {
				t.Fatalf("got %v, want %s", errs, tt.want)
			}
		})
	}
}

func TestParseExpiry(t *testing.T) {
	tests := []struct {
		value string
		want  time.Time
		err   bool
	}{
		{"1764028800", time.Unix(1764028800, 0), false},
		{"1764028800.5", time.UnixMilli(1764028800500), false},
		{"2025-11-25T00:00:00Z", time.Unix(1764028800, 0), false},
		{"2025-11-25T01:00:00+01:00", time.Unix(1764028800, 0), false},
		{"0", time.Time{}, true},
		{"-5", time.Time{}, true},
		{"NaN", time.Time{}, true},
		{"Inf", time.Time{}, true},
		{"tomorrow", time.Time{}, true},
		{"", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseExpiry(tt.value)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("parseExpiry(%q): got %v, %v, want %v (error %v)", tt.value, got, err, tt.want, tt.err)
		}
	}
}

// TestConnectionAgeJitter checks that every socket closes within [age - jitter, age] of its start.
func TestConnectionAgeJitter(t *testing.T) {
	h := Handler{MaxConnectionAge: caddy.Duration(time.Hour), MaxConnectionAgeJitter: durationPtr(10 * time.Minute)}
	now := time.Now()
	seen := map[time.Time]bool{}
	for range 100 {
		var c bridge.Client
		why := h.connectionTerms(caddy.NewReplacer(), now, &c)
		at := c.CloseAt
		if why != nil || at.After(now.Add(time.Hour)) || at.Before(now.Add(50*time.Minute)) || !c.ClosesAtAge {
			t.Fatalf("got %v, %v, closes at its age %v; want within [50m, 1h] of now, at its age", at.Sub(now), why, c.ClosesAtAge)
		}
		seen[at] = true
	}
	if len(seen) < 50 {
		t.Fatalf("100 sockets got %d distinct moments: no jitter", len(seen))
	}
}

// TestNamespaceBroadcast checks delivery metadata of broadcast streams shared across namespaces: the tenants
// "x." and "x.y." both reach the Kafka topic "x.y.news", one as "y.news", the other as "news", and each sees its
// own name; a partial unsubscribe answers with the names left, as the client knows them.
func TestNamespaceBroadcast(t *testing.T) {
	addr := startCaddyfile(t, tenantRoute)
	x := "tx" + strconv.FormatInt(time.Now().UnixNano(), 36)
	createTopicPartitions(t, 1, x+".y.news", x+".y.other")
	outer := dialTenant(t, addr, x)
	inner := dialTenant(t, addr, x+".y")
	for _, tt := range []struct {
		c      *client
		topics string
	}{{outer, `"y.news","y.other"`}, {inner, `"news","other"`}} {
		if r := tt.c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":[`+tt.topics+`],"mode":"broadcast","meta":true}}`, "1"); string(r.P) != "["+tt.topics+"]" {
			t.Fatalf("subscribe: got %s, want [%s]", r.P, tt.topics)
		}
	}
	produce(t, x+".y.news", "hello")
	if el := string(outer.elements(1)[0]); !strings.Contains(el, `"topic":"y.news"`) {
		t.Fatalf("outer tenant's notification: got %s", el)
	}
	if el := string(inner.elements(1)[0]); !strings.Contains(el, `"topic":"news"`) {
		t.Fatalf("inner tenant's notification: got %s", el)
	}
	if r := inner.request(`{"id":2,"t":"topic","a":"unsubscribe","p":{"t":["news"]}}`, "2"); string(r.P) != `["other"]` {
		t.Fatalf("partial unsubscribe: got %s, want [\"other\"]", r.P)
	}
}

// TestNamespaceDefaultGroup checks that tenants subscribing without a group do not share the route's default
// group: Kafka has one group per namespace, and client acknowledgements commit to it.
func TestNamespaceDefaultGroup(t *testing.T) {
	addr := startCaddyfile(t, tenantRoute)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	a, b := "ga"+run, "gb"+run
	createTopicPartitions(t, 1, a+".t", b+".t")
	alice, bob := dialTenant(t, addr, a), dialTenant(t, addr, b)
	for _, c := range []*client{alice, bob} {
		if r := c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["t"],"commit":"client"}}`, "1"); *r.S != 0 {
			t.Fatalf("subscribe: got %s", r.P)
		}
	}
	produce(t, a+".t", "for alice")
	produce(t, b+".t", "for bob")
	if got := alice.receive(1); got[0] != "for alice" {
		t.Fatalf("alice: got %q", got)
	}
	if got := bob.receive(1); got[0] != "for bob" {
		t.Fatalf("bob: got %q", got)
	}
	// An acknowledgement names the topic as alice knows it, and commits to her namespace's default group.
	alice.send(`{"id":2,"t":"notif","a":"ack","p":{"t":"t","part":0,"offset":0}}`)
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(50 * time.Millisecond) {
		r := alice.request(`{"id":3,"t":"topic","a":"describe","p":{"t":["t"],"consumer_group":"wskafka"}}`, "3")
		if strings.Contains(string(r.P), `"committed":1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's acknowledgement: describe says %s, want committed 1", r.P)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := (&kafka.Client{Addr: kafka.TCP(testBrokers)}).ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, g := range res.Groups {
		groups = append(groups, g.GroupID)
	}
	for _, want := range []string{a + ".wskafka", b + ".wskafka"} {
		if !slices.Contains(groups, want) {
			t.Errorf("kafka's groups %v lack %s", groups, want)
		}
	}
}
