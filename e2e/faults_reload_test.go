package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Load of the reload scenarios: publishers without receipts every few ms (the case that lost frames when a
// socket's read deadline was set to now on shutdown), one with receipts, and subscribers of both kinds.
const (
	reloadPlainPublishers = 4
	reloadPlainInterval   = 3 * time.Millisecond
	reloadAckInterval     = 10 * time.Millisecond
	reloadGroupMembers    = 2
	reloadBefore          = 1500 * time.Millisecond // load before the reload
	reloadAfter           = time.Second             // load once every client is back
	reloadRecoverTimeout  = 45 * time.Second        // every client reconnected, resubscribed and receiving
)

// TestFaultReload reloads Caddy's config (POST /load) under load, with the Kafka settings changed (a new pooled
// client) and unchanged, closing every socket at once (close_delay 0) and spread over a window. Every client
// reconnects after its 1012 and goes on with its next sequence numbers; kcat reads the topic back. Fails on the
// publish invariants (see faults_test.go), on a record the commit:client group never processed, and on a socket
// the reload did not close with 1012. Recovery times are logged.
func TestFaultReload(t *testing.T) {
	needSuite(t)
	needKcat(t)
	tests := []struct {
		name       string
		closeDelay time.Duration
		// before and after are the settings the reload changes: client_id (a Kafka setting) or write_timeout.
		before, after caddyOptions
	}{
		{"kafka settings changed/at once", 0,
			caddyOptions{clientID: "wskafka-e2e-a"}, caddyOptions{clientID: "wskafka-e2e-b"}},
		{"kafka settings unchanged/at once", 0,
			caddyOptions{wskafka: "write_timeout 10s"}, caddyOptions{wskafka: "write_timeout 9s"}},
		{"kafka settings changed/spread", 2 * time.Second,
			caddyOptions{clientID: "wskafka-e2e-a"}, caddyOptions{clientID: "wskafka-e2e-b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, known := closeDelayLine(t, tt.closeDelay)
			switch {
			case !known && tt.closeDelay > 0:
				t.Fatalf("this build does not know close_delay (caddy adapt refuses it), want a reload spread over %v", tt.closeDelay)
			case !known:
				t.Logf("this build does not know close_delay; it closes at once on a reload, as close_delay 0 does")
			}
			before, after := tt.before, tt.after
			before.admin, after.admin = true, true
			before.wskafka += "\n" + line
			after.wskafka += "\n" + line
			runReload(t, before, after, tt.closeDelay)
		})
	}
}

func runReload(t *testing.T, before, after caddyOptions, spread time.Duration) {
	srv := startCaddy(t, before)
	url := func() string { return srv.url() }
	topic, group := uniqueName(t, "t"), uniqueName(t, "group")
	setup := dial(t, "setup", srv.url(), nil)
	createPartitioned(t, setup, topic, 4)
	setup.close()

	l := newLedger()
	groupTally, broadcastTally := newTally(), newTally()
	var subs []*seqSubscriber
	for i := range reloadGroupMembers {
		subs = append(subs, startSubscriber(t, groupTally, fmt.Sprintf("member-%d", i),
			map[string]any{"t": []string{topic}, "consumer_group": group, "commit": "client"}, url))
	}
	subs = append(subs, startSubscriber(t, broadcastTally, "broadcast",
		map[string]any{"t": []string{topic}, "mode": "broadcast"}, url))
	for _, s := range subs {
		s.waitSubscribed(t)
	}
	var pubs []*seqPublisher
	for i := range reloadPlainPublishers {
		pubs = append(pubs, startPublisher(t, l, fmt.Sprintf("plain%d", i), topic, false, reloadPlainInterval, url))
	}
	pubs = append(pubs, startPublisher(t, l, "receipts", topic, true, reloadAckInterval, url))

	time.Sleep(reloadBefore)
	fault := time.Now()
	took := srv.reload(t, after)
	t.Logf("POST /load returned after %v", took.Round(time.Millisecond))

	// Recovery: every client dialled again; every subscriber subscribed again and received a frame since.
	var lives []*clientLife
	for _, p := range pubs {
		lives = append(lives, &p.clientLife)
	}
	for _, s := range subs {
		lives = append(lives, &s.clientLife)
	}
	deadline := time.Now().Add(reloadRecoverTimeout)
	var reconnected, resubscribed, receiving time.Time
	for {
		reconnected, resubscribed, receiving = time.Time{}, time.Time{}, time.Time{}
		done := true
		for _, cl := range lives {
			at := cl.reconnectedAfter(fault)
			done = done && !at.IsZero()
			reconnected = later(reconnected, at)
		}
		for _, s := range subs {
			sub := s.subscribedAfter(fault)
			recv := time.Time{}
			if !sub.IsZero() {
				recv = s.receivedAfter(sub)
			}
			done = done && !sub.IsZero() && !recv.IsZero()
			resubscribed, receiving = later(resubscribed, sub), later(receiving, recv)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			clientErrors(t, lives...)
			t.Fatalf("after %v: not every client reconnected, resubscribed and received again", reloadRecoverTimeout)
		}
		time.Sleep(faultPoll)
	}
	t.Logf("recovery after the reload: all %d clients reconnected after %v, all %d subscribers resubscribed after %v, "+
		"receiving again after %v", len(lives), reconnected.Sub(fault).Round(time.Millisecond), len(subs),
		resubscribed.Sub(fault).Round(time.Millisecond), receiving.Sub(fault).Round(time.Millisecond))

	time.Sleep(reloadAfter)
	for _, p := range pubs {
		p.finish()
	}
	inKafka := readBack(t, brokers, topic, l, false)
	assertPublishes(t, "reload", l.count(inKafka), false)
	assertGroup(t, "reload", groupTally, inKafka, subs[:reloadGroupMembers]...)
	for _, s := range subs {
		s.finish()
	}
	// A broadcast subscriber misses what is published while it resubscribes (it starts at "now"): logged only.
	t.Logf("reload: broadcast subscriber: %d of %d records received, %d more than once",
		len(inKafka)-len(broadcastTally.missing(inKafka)), len(inKafka), broadcastTally.duplicated())

	// Every socket open at the reload is closed by it, with 1012 (service restart); the spread is logged.
	var first, last time.Time
	for _, cl := range lives {
		cl.mu.Lock()
		closes := cl.closes
		cl.mu.Unlock()
		if len(closes) != 1 || closes[0].code != websocket.CloseServiceRestart {
			t.Errorf("%s: got closes %v, want one, with code %d", cl.name, closes, websocket.CloseServiceRestart)
			continue
		}
		if first.IsZero() || closes[0].at.Before(first) {
			first = closes[0].at
		}
		last = later(last, closes[0].at)
	}
	if !first.IsZero() {
		t.Logf("reload: sockets closed from %v to %v after the reload (close_delay %v)",
			first.Sub(fault).Round(time.Millisecond), last.Sub(fault).Round(time.Millisecond), spread)
	}
	clientErrors(t, lives...)
}

// later returns the later of two times; a zero b leaves a.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
