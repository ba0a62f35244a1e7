package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// leaveTimeout bounds the wait for a closed socket's session to end (its consumer leaving the group).
const leaveTimeout = 30 * time.Second

// delivery names one delivered record: where it is and what it holds.
type delivery struct {
	Part   int
	Offset int64
	Value  string
}

// TestClientCommitRedeliveryAcrossInstances protects "commit": "client": only what the client acknowledged is
// committed, so when it goes away, the group's next member, on another Caddy process, receives exactly the
// records it did not acknowledge. Both forms of notif/ack are used: by notification id and by partition offset.
func TestClientCommitRedeliveryAcrossInstances(t *testing.T) {
	needSuite(t)
	first, second := startCaddy(t, caddyOptions{}), startCaddy(t, caddyOptions{})
	pub := dial(t, "publisher", first.url(), nil)
	topic, group := uniqueName(t, "t"), uniqueName(t, "group")
	createPartitioned(t, pub, topic, 2)

	subscribe := map[string]any{"t": []string{topic}, "consumer_group": group, "meta": true, "commit": "client"}
	subA := dial(t, "subscriber A", first.url(), nil)
	subA.request(t, topicMsg("subscribe", subscribe))

	// publishTo writes values to one partition and returns where Kafka stored them (receipts).
	publishTo := func(part int, values ...string) []delivery {
		t.Helper()
		var msgs []map[string]any
		for _, v := range values {
			msgs = append(msgs, map[string]any{"t": "notif", "a": "create", "ack": true, "p": map[string]any{"t": topic, "m": v, "part": part}})
		}
		var out []delivery
		for i, r := range pub.sendAll(t, msgs) {
			rc := parseReceipt(t, r)
			out = append(out, delivery{*rc.Part, *rc.Offset, values[i]})
		}
		return out
	}
	// receive returns the next n notifications of c as deliveries, with their notification ids.
	receive := func(c *wsClient, n int) ([]delivery, []string) {
		t.Helper()
		notes, err := c.receiveNotes(n, replyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		var out []delivery
		var ids []string
		for _, note := range notes {
			m, value, _, _ := parseMeta(t, note)
			out = append(out, delivery{m.Part, m.Offset, string(value)})
			ids = append(ids, note.ID.String())
		}
		return out, ids
	}

	// Partition 1 first, then partition 0, each received before the next is published: the notification ids of
	// partition 1 are then all below those of partition 0, and an ack by id covers partition 1 only. Each ack goes
	// out as soon as its notifications are in, as a client processing them one by one would send it: the first
	// record of partition 1 by its notification id, the first two of partition 0 by offset.
	p1 := publishTo(1, "p1-a", "p1-b", "p1-c")
	got1, ids1 := receive(subA, len(p1))
	if err := subA.send(map[string]any{"t": "notif", "a": "ack", "p": map[string]any{"id": jsonNumber(t, ids1[0])}}); err != nil {
		t.Fatal(err)
	}
	p0 := publishTo(0, "p0-a", "p0-b", "p0-c", "p0-d")
	got0, _ := receive(subA, len(p0))
	if err := subA.send(map[string]any{"t": "notif", "a": "ack", "p": map[string]any{"t": topic, "part": 0, "offset": p0[1].Offset}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got1, p1) || !slices.Equal(got0, p0) {
		t.Fatalf("subscriber A: got %v then %v, want %v then %v", got1, got0, p1, p0)
	}
	// Acks have no reply: a health request after them shows they were read.
	subA.request(t, map[string]any{"t": "health"})
	acked := []delivery{p1[0], p0[0], p0[1]}
	unacked := []delivery{p1[1], p1[2], p0[2], p0[3]}

	// Subscriber A goes away; its session ends once its consumer has left the group.
	subA.close()
	waitSockets(t, pub, 1)

	subB := dial(t, "subscriber B", second.url(), nil)
	subB.request(t, topicMsg("subscribe", map[string]any{"t": []string{topic}, "consumer_group": group, "meta": true}))
	// One more record per partition marks the end: records of a partition arrive in order, so once both markers
	// are in, everything B was going to get again is in too.
	markers := append(publishTo(0, "marker-0"), publishTo(1, "marker-1")...)
	var got []delivery
	deadline := time.Now().Add(replyTimeout)
	for !containsAll(got, markers) {
		if time.Now().After(deadline) {
			t.Fatalf("subscriber B: got %v, want the markers %v", got, markers)
		}
		d, _ := receive(subB, 1)
		got = append(got, d...)
	}
	got = slices.DeleteFunc(got, func(d delivery) bool { return slices.Contains(markers, d) })
	sortDeliveries(got)
	sortDeliveries(unacked)
	if !slices.Equal(got, unacked) {
		var again []delivery
		for _, d := range got {
			if slices.Contains(acked, d) {
				again = append(again, d)
			}
		}
		t.Fatalf("subscriber B on the second Caddy: got %v, want exactly the unacknowledged %v; acknowledged but "+
			"delivered again: %v (an ack that arrives before the server has recorded the notification as written is lost)",
			got, unacked, again)
	}
}

// waitSockets polls health on c until the server has n open sockets.
func waitSockets(t *testing.T, c *wsClient, n int) {
	t.Helper()
	deadline := time.Now().Add(leaveTimeout)
	for {
		h := healthOf(t, c)
		if len(h.Consumers) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: got %d sockets after %v, want %d", len(h.Consumers), leaveTimeout, n)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

func containsAll(got, want []delivery) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

func sortDeliveries(ds []delivery) {
	slices.SortFunc(ds, func(a, b delivery) int {
		if a.Part != b.Part {
			return a.Part - b.Part
		}
		return int(a.Offset - b.Offset)
	})
}

// jsonNumber turns a notification id into a number for a request.
func jsonNumber(t *testing.T, id string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscan(id, &n); err != nil {
		t.Fatalf("notification id %q: %v", id, err)
	}
	return n
}
