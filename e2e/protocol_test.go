package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// topicMsg, publishMsg and subscribeMsg build the README's requests.
func topicMsg(action string, p any) map[string]any {
	m := map[string]any{"t": "topic", "a": action}
	if p != nil {
		m["p"] = p
	}
	return m
}

func publishMsg(topic string, m any) map[string]any {
	return map[string]any{"t": "notif", "a": "create", "p": map[string]any{"t": topic, "m": m}}
}

func subscribeMsg(group string, topics ...string) map[string]any {
	p := map[string]any{"t": topics}
	if group != "" {
		p["consumer_group"] = group
	}
	return topicMsg("subscribe", p)
}

// publish sends a publish; the protocol sends no reply to it.
func (c *wsClient) publish(t *testing.T, topic string, m any) {
	t.Helper()
	if err := c.send(publishMsg(topic, m)); err != nil {
		t.Fatal(err)
	}
}

// createTopics creates topics over the protocol and checks the reply lists them.
func createTopics(t *testing.T, c *wsClient, topics ...string) {
	t.Helper()
	r := c.request(t, topicMsg("create", topics))
	assertStrings(t, "create reply p", r.P, topics)
}

// assertStrings checks that a payload is exactly the JSON array of strings want.
func assertStrings(t *testing.T, what string, p json.RawMessage, want []string) {
	t.Helper()
	var got []string
	if err := json.Unmarshal(p, &got); err != nil || !slices.Equal(got, want) {
		t.Fatalf("%s: got %s, want %q", what, p, want)
	}
}

// healthOf asks for health on c.
func healthOf(t *testing.T, c *wsClient) health {
	t.Helper()
	r := c.request(t, map[string]any{"t": "health"})
	var h health
	if err := json.Unmarshal(r.P, &h); err != nil {
		t.Fatalf("health p %s: %v", r.P, err)
	}
	return h
}

// healthTopics returns the topics of each open socket, sorted, after checking that every ws number is distinct.
func healthTopics(t *testing.T, c *wsClient) []string {
	t.Helper()
	h := healthOf(t, c)
	seen := map[string]bool{}
	var out []string
	for _, cons := range h.Consumers {
		if seen[cons.WS.String()] {
			t.Fatalf("health: got ws %s twice, want each connection numbered once", cons.WS)
		}
		seen[cons.WS.String()] = true
		if cons.Topics == nil {
			t.Fatalf("health: ws %s: got topics null, want a list", cons.WS)
		}
		out = append(out, strings.Join(cons.Topics, ","))
	}
	slices.Sort(out)
	return out
}

func assertHealth(t *testing.T, c *wsClient, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := healthTopics(t, c); !slices.Equal(got, want) {
		t.Fatalf("health: got sockets with topics %q, want %q", got, want)
	}
}

// TestConversation plays the README's whole conversation on one Caddy: create, list, subscribe without and with
// consumer_group, publish, receive, unsubscribe and health, checking every reply and, with kcat, the broker.
func TestConversation(t *testing.T) {
	needSuite(t)
	needKcat(t)
	srv := startCaddy(t, caddyOptions{})
	sub := dial(t, "subscriber", srv.url(), nil)
	pub := dial(t, "publisher", srv.url(), nil)
	topicA, topicB := uniqueName(t, "a"), uniqueName(t, "b")

	createTopics(t, sub, topicA, topicB)
	// Creating an existing topic is not an error.
	createTopics(t, pub, topicA)

	// Health lists every open socket (both have been served a request, so both are registered), none subscribed.
	assertHealth(t, sub, "", "")

	t.Run("list", func(t *testing.T) {
		r := sub.request(t, topicMsg("list", nil))
		var list []struct {
			Topic     string `json:"topic"`
			Partition *int   `json:"partition"`
		}
		if err := json.Unmarshal(r.P, &list); err != nil {
			t.Fatalf("list p %s: %v", r.P, err)
		}
		got := map[string][]int{}
		var order []string
		for _, tp := range list {
			if strings.HasPrefix(tp.Topic, "__") {
				t.Errorf("list: got internal topic %q, want internal topics hidden", tp.Topic)
			}
			if tp.Partition == nil {
				t.Fatalf("list: entry for %q has no partition", tp.Topic)
			}
			got[tp.Topic] = append(got[tp.Topic], *tp.Partition)
			order = append(order, fmt.Sprintf("%s/%09d", tp.Topic, *tp.Partition))
		}
		if !slices.IsSorted(order) {
			t.Errorf("list: got %v, want sorted by topic then partition", order)
		}
		// The partitions are the broker's default count, as the broker itself (kcat) reports them.
		for _, topic := range []string{topicA, topicB} {
			if want := kcatPartitions(t, topic); !slices.Equal(got[topic], want) {
				t.Errorf("list: %s: got partitions %v, want %v (from kcat)", topic, got[topic], want)
			}
		}
	})

	// Subscribe without consumer_group: the Caddyfile's group_id.
	r := sub.request(t, subscribeMsg("", topicA, topicB))
	assertStrings(t, "subscribe reply p", r.P, []string{topicA, topicB})
	assertHealth(t, pub, topicA+","+topicB, "")

	// Publishes are not answered: the next reply on the socket is the health asked after them.
	pub.publish(t, topicA, "hello a")
	pub.publish(t, topicB, "hello b")
	assertHealth(t, pub, topicA+","+topicB, "")
	got := sub.mustReceive(t, 2)
	slices.Sort(got)
	if want := []string{"hello a", "hello b"}; !slices.Equal(got, want) {
		t.Fatalf("received: got %q, want %q", got, want)
	}

	// Unsubscribe answers s:0 with no payload and stops delivery.
	r = sub.request(t, topicMsg("unsubscribe", nil))
	if r.has("p") {
		t.Errorf("unsubscribe reply %s: got a p, want none", r.raw)
	}
	assertHealth(t, sub, "", "")
	pub.publish(t, topicA, "after unsubscribe")
	kcatWaitFor(t, topicA, [][]byte{[]byte("hello a"), []byte("after unsubscribe")})
	sub.expectQuiet(t)

	// Subscribe with consumer_group: a new group starts at the end, so what was published before is not
	// delivered, and what is published right after the s:0 reply is.
	group := uniqueName(t, "group")
	r = sub.request(t, subscribeMsg(group, topicA))
	assertStrings(t, "subscribe reply p", r.P, []string{topicA})
	pub.publish(t, topicA, "after subscribe")
	if got := sub.mustReceive(t, 1); got[0] != "after subscribe" {
		t.Fatalf("received: got %q, want %q", got[0], "after subscribe")
	}
	assertHealth(t, pub, topicA, "")
}

// TestSubscribeReplyMeansReady protects the s:0 guarantee: a message published right after the subscribe reply is
// delivered, for a fresh group each time (the original lost these).
func TestSubscribeReplyMeansReady(t *testing.T) {
	needSuite(t)
	srv := startCaddy(t, caddyOptions{})
	sub := dial(t, "subscriber", srv.url(), nil)
	pub := dial(t, "publisher", srv.url(), nil)
	topic := uniqueName(t, "t")
	createTopics(t, sub, topic)
	for round := range 3 {
		msg := fmt.Sprintf("round %d", round)
		sub.request(t, subscribeMsg(uniqueName(t, fmt.Sprintf("group-%d", round)), topic))
		pub.publish(t, topic, msg)
		if got := sub.mustReceive(t, 1); got[0] != msg {
			t.Fatalf("round %d: got %q, want %q", round, got[0], msg)
		}
	}
}

// TestSubscribeReplaces checks that a second subscribe on a socket replaces the first.
func TestSubscribeReplaces(t *testing.T) {
	needSuite(t)
	needKcat(t)
	srv := startCaddy(t, caddyOptions{})
	sub := dial(t, "subscriber", srv.url(), nil)
	pub := dial(t, "publisher", srv.url(), nil)
	first, second := uniqueName(t, "first"), uniqueName(t, "second")
	createTopics(t, sub, first, second)

	sub.request(t, subscribeMsg(uniqueName(t, "group"), first))
	sub.request(t, subscribeMsg(uniqueName(t, "group"), second))
	assertHealth(t, pub, second, "")

	pub.publish(t, first, "to the first")
	pub.publish(t, second, "to the second")
	if got := sub.mustReceive(t, 1); got[0] != "to the second" {
		t.Fatalf("received: got %q, want %q", got[0], "to the second")
	}
	kcatWaitFor(t, first, [][]byte{[]byte("to the first")})
	sub.expectQuiet(t)
}

// TestBadInput sends every kind of bad request: each is answered s:1 with the request's id as refid (verbatim,
// whatever its JSON type) and a stable code, and the socket stays usable.
func TestBadInput(t *testing.T) {
	needSuite(t)
	srv := startCaddy(t, caddyOptions{})
	c := dial(t, "client", srv.url(), nil)
	existing, missingTopic := uniqueName(t, "exists"), uniqueName(t, "missing")
	createTopics(t, c, existing)

	tests := []struct {
		name    string
		frame   string
		t       string // the reply's t
		a       string // the reply's a; "" when it must be absent
		refid   string // the reply's refid as raw JSON; "" when it must be absent
		code    string
		mention string // a word the message must contain, naming what was wrong
	}{
		{"not JSON", `{"id":1,"t":`, "error", "", "", "invalid_json", ""},
		{"not an object", `"just a string"`, "error", "", "", "invalid_frame", ""},
		{"array element not an object", `[7]`, "error", "", "", "invalid_frame", ""},
		{"t missing", `{"id":2,"a":"list"}`, "error", "list", "2", "unknown_type", "t"},
		{"t not a string", `{"id":3,"t":7}`, "error", "", "3", "unknown_type", "t"},
		{"unknown t", `{"id":"four","t":"nope"}`, "nope", "", `"four"`, "unknown_type", "nope"},
		{"topic without a", `{"id":5,"t":"topic"}`, "topic", "", "5", "unknown_action", "a"},
		{"unknown topic action", `{"id":6,"t":"topic","a":"explode"}`, "topic", "explode", "6", "unknown_action", "explode"},
		{"create without p", `{"id":7,"t":"topic","a":"create"}`, "topic", "create", "7", "invalid_payload", "p"},
		{"create empty list", `{"id":8,"t":"topic","a":"create","p":[]}`, "topic", "create", "8", "invalid_payload", "p"},
		{"create bad name", `{"id":9,"t":"topic","a":"create","p":["bad name!"]}`, "topic", "create", "9", "invalid_topic", "bad name!"},
		{"subscribe t not an array", `{"id":10,"t":"topic","a":"subscribe","p":{"t":"x"}}`, "topic", "subscribe", "10", "invalid_payload", "p.t"},
		{"subscribe without p", `{"id":11,"t":"topic","a":"subscribe"}`, "topic", "subscribe", "11", "invalid_payload", "p"},
		{"subscribe missing topic", `{"id":12,"t":"topic","a":"subscribe","p":{"t":["` + existing + `","` + missingTopic + `"]}}`, "topic", "subscribe", "12", "unknown_topic", missingTopic},
		{"publish without p", `{"id":13,"t":"notif","a":"create"}`, "notif", "create", "13", "invalid_payload", "p"},
		{"publish without p.t", `{"id":14,"t":"notif","a":"create","p":{"m":"x"}}`, "notif", "create", "14", "invalid_payload", "p.t"},
		{"publish unknown action", `{"id":15,"t":"notif","a":"delete","p":{"t":"x","m":"x"}}`, "notif", "delete", "15", "unknown_action", "delete"},
		{"fractional id", `{"id":1.5,"t":"nope"}`, "nope", "", "1.5", "unknown_type", ""},
		{"object id", `{"id":{"k":[1,"v"]},"t":"nope"}`, "nope", "", `{"k":[1,"v"]}`, "unknown_type", ""},
		{"null id", `{"id":null,"t":"nope"}`, "nope", "", "null", "unknown_type", ""},
		{"no id", `{"t":"nope"}`, "nope", "", "", "unknown_type", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.writeFrame([]byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			r, err := c.nextReply(replyTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if r.S != 1 {
				t.Errorf("got s %d, want 1 in %s", r.S, r.raw)
			}
			if r.T != tt.t {
				t.Errorf("got t %q, want %q in %s", r.T, tt.t, r.raw)
			}
			if r.A != tt.a || (tt.a == "" && r.has("a")) {
				t.Errorf("got a %q, want %q in %s", r.A, tt.a, r.raw)
			}
			switch {
			case tt.refid == "" && r.has("refid"):
				t.Errorf("got refid %s, want none in %s", r.RefID, r.raw)
			case tt.refid != "" && string(r.RefID) != tt.refid:
				t.Errorf("got refid %s, want %s in %s", r.RefID, tt.refid, r.raw)
			}
			p, err := r.errorPayload()
			if err != nil {
				t.Fatalf("error p %s: %v", r.P, err)
			}
			if p.Code != tt.code {
				t.Errorf("got code %q, want %q in %s", p.Code, tt.code, r.raw)
			}
			if p.Message == "" || !strings.Contains(p.Message, tt.mention) {
				t.Errorf("got message %q, want one naming %q", p.Message, tt.mention)
			}
			// The socket stays usable.
			c.request(t, map[string]any{"t": "health"})
		})
	}
}

// TestPayloadBytes checks that payloads cross the bridge byte for byte in both directions, with bytes that need
// JSON escaping, and that the Kafka side sees exactly those bytes (kcat).
func TestPayloadBytes(t *testing.T) {
	needSuite(t)
	needKcat(t)
	srv := startCaddy(t, caddyOptions{})
	sub := dial(t, "subscriber", srv.url(), nil)
	pub := dial(t, "publisher", srv.url(), nil)

	strs := []string{
		"plain",
		`quote " inside`,
		`back\slash and \n not a newline`,
		"new\nline, cr\r, tab\t",
		"unicode é ✓ 😀 \u2028\u2029",
		"control \x01\x1f\x7f",
		"html <&> stays",
		"{custom_message:'msg'}",
	}
	// subscribe gives the subtest a fresh topic and a subscription to it.
	subscribe := func(t *testing.T) string {
		t.Helper()
		topic := uniqueName(t, "t")
		createTopics(t, pub, topic)
		sub.request(t, subscribeMsg(uniqueName(t, "group"), topic))
		return topic
	}

	t.Run("websocket to kafka", func(t *testing.T) {
		topic := subscribe(t)
		// p.m that is not a string is sent as its JSON text.
		type publish struct {
			m    any
			want string
		}
		var publishes []publish
		for _, s := range strs {
			publishes = append(publishes, publish{s, s})
		}
		publishes = append(publishes,
			publish{map[string]any{"x": 1}, `{"x":1}`},
			publish{12345, "12345"},
			publish{[]any{1, "a"}, `[1,"a"]`},
			publish{true, "true"},
		)
		var want [][]byte
		var wantStrs []string
		for _, p := range publishes {
			pub.publish(t, topic, p.m)
			want = append(want, []byte(p.want))
			wantStrs = append(wantStrs, p.want)
		}
		kcatWaitFor(t, topic, want)
		got := sub.mustReceive(t, len(publishes))
		slices.Sort(got)
		slices.Sort(wantStrs)
		if !slices.Equal(got, wantStrs) {
			t.Fatalf("received over websocket: got %q, want %q", got, wantStrs)
		}
	})

	t.Run("kafka to websocket", func(t *testing.T) {
		topic := subscribe(t)
		var values [][]byte
		for _, s := range strs {
			values = append(values, []byte(s))
		}
		kcatProduceValues(t, topic, values)
		got := sub.mustReceive(t, len(values))
		slices.Sort(got)
		want := slices.Clone(strs)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("received over websocket: got %q, want %q", got, want)
		}
	})

	// An empty value is not a null one: it is delivered as "p":"" (kcat needs a key to produce one).
	t.Run("empty value", func(t *testing.T) {
		topic := subscribe(t)
		pub.publish(t, topic, "")
		kcatWaitFor(t, topic, [][]byte{{}})
		kcatProduceKeyed(t, topic, false, "k:")
		notes, err := sub.receiveNotes(2, replyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range notes {
			if n.P == nil || *n.P != "" {
				t.Errorf("notification %s: got p %s, want \"\"", n.ID, describe(n))
			}
		}
	})

	t.Run("null value", func(t *testing.T) {
		topic := subscribe(t)
		pub.publish(t, topic, nil)
		kcatWaitFor(t, topic, [][]byte{nil})
		kcatProduceKeyed(t, topic, true, "k:")
		notes, err := sub.receiveNotes(2, replyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range notes {
			if n.P != nil {
				t.Errorf("notification %s: got p %s, want null", n.ID, describe(n))
			}
		}
	})
}
