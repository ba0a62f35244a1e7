package e2e

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// groupFaultConsumer makes a member that vanishes (a killed Caddy keeps no heartbeat going) leave the group after
// 6 s, the least a default Kafka broker accepts (group.min.session.timeout.ms), rather than the default 10 s.
const groupFaultConsumer = "consumer {\n\t\t\t\tsession_timeout 6s\n\t\t\t\theartbeat_interval 1s\n\t\t\t}"

// TestFaultCaddyKill kills (SIGKILL) one of two Caddy processes whose commit:client subscribers share a group,
// while publishers with receipts run on both. The killed one's clients fail over to the survivor. The group must
// process every record in Kafka (what the dead member had not had committed comes again), and no acknowledged
// publish may be missing; publishes whose receipts the crash cut off are counted, not failed. The failover time is
// logged.
func TestFaultCaddyKill(t *testing.T) {
	needSuite(t)
	needKcat(t)
	opts := caddyOptions{wskafka: groupFaultConsumer}
	victim, survivor := startCaddy(t, opts), startCaddy(t, opts)
	var dead atomic.Bool
	victimURL := func() string {
		if dead.Load() {
			return survivor.url()
		}
		return victim.url()
	}
	survivorURL := func() string { return survivor.url() }
	topic, group := uniqueName(t, "t"), uniqueName(t, "group")
	setup := dial(t, "setup", survivor.url(), nil)
	createPartitioned(t, setup, topic, 4)
	setup.close()

	l, ty := newLedger(), newTally()
	sub := map[string]any{"t": []string{topic}, "consumer_group": group, "commit": "client"}
	// One after the other: the second s:0 comes once the group has rebalanced with both.
	onVictim := startSubscriber(t, ty, "member-on-victim", sub, victimURL)
	onVictim.waitSubscribed(t)
	onSurvivor := startSubscriber(t, ty, "member-on-survivor", sub, survivorURL)
	onSurvivor.waitSubscribed(t)
	pubs := []*seqPublisher{
		startPublisher(t, l, "receipts-victim", topic, true, 10*time.Millisecond, victimURL),
		startPublisher(t, l, "receipts-survivor", topic, true, 10*time.Millisecond, survivorURL),
	}

	time.Sleep(2 * time.Second)
	killed := time.Now()
	dead.Store(true)
	victim.kill()

	deadline := time.Now().Add(drainTimeout)
	for onVictim.subscribedAfter(killed).IsZero() {
		if time.Now().After(deadline) {
			clientErrors(t, &onVictim.clientLife)
			t.Fatalf("%s: not subscribed on the survivor within %v of the kill", onVictim.name, drainTimeout)
		}
		time.Sleep(faultPoll)
	}
	failedOver := onVictim.subscribedAfter(killed)
	time.Sleep(time.Second)
	for _, p := range pubs {
		p.finish()
	}
	inKafka := readBack(t, brokers, topic, l, true)
	assertPublishes(t, "caddy kill", l.count(inKafka), true)
	assertGroup(t, "caddy kill", ty, inKafka, onVictim, onSurvivor)
	t.Logf("caddy kill: the victim's subscriber resubscribed on the survivor %v after the kill; records written after "+
		"the kill reached the group at most %v after their write (the dead member's partitions wait for its session "+
		"timeout)", failedOver.Sub(killed).Round(time.Millisecond), maxDeliveryLatency(l, ty, killed).Round(time.Millisecond))
	for _, s := range []*seqSubscriber{onVictim, onSurvivor} {
		s.finish()
	}
	clientErrors(t, &pubs[0].clientLife, &pubs[1].clientLife, &onVictim.clientLife, &onSurvivor.clientLife)
}

// maxDeliveryLatency is the longest time from write to first delivery of a record written after at.
func maxDeliveryLatency(l *ledger, ty *tally, at time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ty.mu.Lock()
	defer ty.mu.Unlock()
	var worst time.Duration
	for value, p := range l.pubs {
		if got, ok := ty.first[value]; ok && p.writtenAt.After(at) {
			worst = max(worst, got.Sub(p.writtenAt))
		}
	}
	return worst
}

// TestFaultSocketCut closes the TCP connection under a commit:client subscriber (a FIN or a reset, never a close
// frame) after it has acknowledged some of what it received; on a new socket in the same group exactly the
// unacknowledged records come again: none that was acknowledged, none lost.
func TestFaultSocketCut(t *testing.T) {
	needSuite(t)
	const perPartition = 5
	tests := []struct {
		name  string
		rst   bool
		acked int // records acknowledged per partition, by offset
	}{
		{"fin/some acknowledged", false, 3},
		{"rst/none acknowledged", true, 0},
		{"fin/all acknowledged", false, perPartition},
	}
	srv := startCaddy(t, caddyOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := dial(t, "publisher", srv.url(), nil)
			topic, group := uniqueName(t, "t"), uniqueName(t, "group")
			createPartitioned(t, pub, topic, 2)
			sub := topicMsg("subscribe", map[string]any{"t": []string{topic}, "consumer_group": group, "meta": true, "commit": "client"})
			first := dial(t, "subscriber 1", srv.url(), nil)
			first.request(t, sub)

			var sent, acked, unacked []delivery
			for part := range 2 {
				values := make([]string, perPartition)
				for i := range values {
					values[i] = fmt.Sprintf("p%d-%d", part, i)
				}
				ds := publishToPartition(t, pub, topic, part, values...)
				sent = append(sent, ds...)
				acked = append(acked, ds[:tt.acked]...)
				unacked = append(unacked, ds[tt.acked:]...)
			}
			got := receiveDeliveries(t, first, len(sent))
			sortDeliveries(got)
			sortDeliveries(sent)
			if !slices.Equal(got, sent) {
				t.Fatalf("subscriber 1: got %v, want %v", got, sent)
			}
			for part := range 2 {
				if tt.acked > 0 {
					last := acked[part*tt.acked+tt.acked-1]
					if err := first.send(map[string]any{"t": "notif", "a": "ack", "p": map[string]any{"t": topic, "part": part, "offset": last.Offset}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Acks have no reply: a health request after them shows they were read.
			first.request(t, map[string]any{"t": "health"})
			cutConn(first.conn, tt.rst)
			cut := time.Now()
			waitSockets(t, pub, 1)
			t.Logf("socket cut: the server ended the session %v after the cut", time.Since(cut).Round(time.Millisecond))

			second := dial(t, "subscriber 2", srv.url(), nil)
			second.request(t, sub)
			markers := append(publishToPartition(t, pub, topic, 0, "marker-0"), publishToPartition(t, pub, topic, 1, "marker-1")...)
			var again []delivery
			deadline := time.Now().Add(replyTimeout)
			for !containsAll(again, markers) {
				if time.Now().After(deadline) {
					t.Fatalf("subscriber 2: got %v, want the markers %v", again, markers)
				}
				again = append(again, receiveDeliveries(t, second, 1)...)
			}
			again = slices.DeleteFunc(again, func(d delivery) bool { return slices.Contains(markers, d) })
			sortDeliveries(again)
			sortDeliveries(unacked)
			var ackedAgain, lost []delivery
			for _, d := range again {
				if slices.Contains(acked, d) {
					ackedAgain = append(ackedAgain, d)
				}
			}
			for _, d := range unacked {
				if !slices.Contains(again, d) {
					lost = append(lost, d)
				}
			}
			t.Logf("socket cut: %d sent, %d acknowledged, %d came again (%d of them acknowledged), %d unacknowledged never came again",
				len(sent), len(acked), len(again), len(ackedAgain), len(lost))
			if !slices.Equal(again, unacked) {
				t.Errorf("subscriber 2: got %v again, want exactly the unacknowledged %v; acknowledged but delivered again %v, "+
					"unacknowledged and never delivered again %v", again, unacked, ackedAgain, lost)
			}
		})
	}
}

// publishToPartition publishes values with receipts to one partition and returns where Kafka stored them.
func publishToPartition(t *testing.T, pub *wsClient, topic string, part int, values ...string) []delivery {
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

// receiveDeliveries returns the next n notifications of a meta subscription as deliveries.
func receiveDeliveries(t *testing.T, c *wsClient, n int) []delivery {
	t.Helper()
	notes, err := c.receiveNotes(n, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var out []delivery
	for _, note := range notes {
		m, value, _, _ := parseMeta(t, note)
		out = append(out, delivery{m.Part, m.Offset, string(value)})
	}
	return out
}

// Churn of the rebalance scenario.
const (
	churnMembers = 3
	churnRounds  = 4
	churnPause   = 1500 * time.Millisecond
)

// TestFaultRebalanceChurn keeps a commit:client group on two Caddy processes rebalancing while publishers with
// receipts run: every churnPause one member goes, by turns cut without a close frame (it dials again and rejoins)
// or closed cleanly and replaced by a new member. The group must process every record in Kafka; records processed
// twice (across a rebalance) and the rebalances are logged.
func TestFaultRebalanceChurn(t *testing.T) {
	needSuite(t)
	needKcat(t)
	servers := []*caddyServer{startCaddy(t, caddyOptions{}), startCaddy(t, caddyOptions{})}
	urlOf := func(i int) func() string { return func() string { return servers[i%len(servers)].url() } }
	topic, group := uniqueName(t, "t"), uniqueName(t, "group")
	setup := dial(t, "setup", servers[0].url(), nil)
	createPartitioned(t, setup, topic, 4)
	setup.close()

	l, ty := newLedger(), newTally()
	sub := map[string]any{"t": []string{topic}, "consumer_group": group, "commit": "client"}
	var members, all []*seqSubscriber
	for i := range churnMembers {
		m := startSubscriber(t, ty, fmt.Sprintf("member-%d", i), sub, urlOf(i))
		m.waitSubscribed(t)
		members = append(members, m)
	}
	all = slices.Clone(members)
	pubs := []*seqPublisher{
		startPublisher(t, l, "receipts-0", topic, true, 10*time.Millisecond, urlOf(0)),
		startPublisher(t, l, "receipts-1", topic, true, 10*time.Millisecond, urlOf(1)),
	}
	start := time.Now()
	for round := range churnRounds {
		time.Sleep(churnPause)
		i := round % len(members)
		if round%2 == 0 {
			members[i].cut(false)
			continue
		}
		members[i].finish()
		m := startSubscriber(t, ty, fmt.Sprintf("member-%d", len(all)), sub, urlOf(len(all)))
		members[i] = m
		all = append(all, m)
	}
	time.Sleep(churnPause)
	for _, p := range pubs {
		p.finish()
	}
	inKafka := readBack(t, brokers, topic, l, false)
	assertPublishes(t, "rebalance churn", l.count(inKafka), false)
	assertGroup(t, "rebalance churn", ty, inKafka, all...)
	joins := 0
	for _, m := range all {
		m.smu.Lock()
		joins += len(m.subscribed)
		m.smu.Unlock()
	}
	t.Logf("rebalance churn: %d joins and %d leaves over %v; records written since the churn began reached the group "+
		"at most %v after their write", joins, joins-len(members), time.Since(start).Round(time.Millisecond),
		maxDeliveryLatency(l, ty, start).Round(time.Millisecond))
	var lives []*clientLife
	for _, m := range members {
		m.finish()
	}
	for _, m := range all {
		lives = append(lives, &m.clientLife)
	}
	for _, p := range pubs {
		lives = append(lives, &p.clientLife)
	}
	clientErrors(t, lives...)
}
