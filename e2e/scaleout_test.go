package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// scaleMessages is how many records the scale-out test sends through the group.
const scaleMessages = 10_000

// scaleTimeout bounds the delivery of all of them.
const scaleTimeout = 2 * time.Minute

// TestScaleOut runs two Caddy processes with one subscriber each in one consumer group: every record kcat
// produces reaches exactly one of the two; none is lost (a duplicate is possible only across a rebalance, and is
// logged).
func TestScaleOut(t *testing.T) {
	needSuite(t)
	needKcat(t)
	group := uniqueName(t, "group")
	topic := uniqueName(t, "t")
	servers := []*caddyServer{startCaddy(t, caddyOptions{}), startCaddy(t, caddyOptions{})}
	subs := make([]*wsClient, len(servers))
	for i, srv := range servers {
		subs[i] = dial(t, fmt.Sprintf("subscriber %d", i), srv.url(), nil)
	}
	createTopics(t, subs[0], topic)
	partitions := len(kcatPartitions(t, topic))
	// Subscribe one after the other: the second s:0 comes once the group has rebalanced with both members (the
	// first must rejoin for the join to complete), so what is produced from now on has an owner.
	for _, sub := range subs {
		sub.request(t, subscribeMsg(group, topic))
	}

	want := make([]string, scaleMessages)
	for i := range want {
		want[i] = fmt.Sprintf("scale-%05d", i)
	}
	// Each record is keyed by itself: librdkafka's sticky partitioner would put keyless records produced in one
	// burst into one or two partitions; by key they spread over all of them.
	lines := make([]string, len(want))
	for i, m := range want {
		lines[i] = m + ":" + m
	}
	start := time.Now()
	kcatProduceKeyed(t, topic, false, lines...)

	// Each subscriber is read by its own goroutine until every record has arrived somewhere; closing the
	// sockets then ends the reads.
	var (
		mu       sync.Mutex
		counts   = make(map[string][]int, scaleMessages) // record → how often each subscriber got it
		distinct int
		all      = make(chan struct{})
		errs     = make([]error, len(subs))
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(scaleTimeout)
	for i, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := sub.readFrame(deadline); err != nil {
					select {
					case <-all:
					default:
						errs[i] = err
					}
					return
				}
				mu.Lock()
				for _, n := range sub.notifs {
					if n.P == nil {
						errs[i] = fmt.Errorf("%s: got a null notification, want %q…", sub.name, want[0])
						mu.Unlock()
						return
					}
					c := counts[*n.P]
					if c == nil {
						c = make([]int, len(subs))
						counts[*n.P] = c
						distinct++
						if distinct == scaleMessages {
							close(all)
						}
					}
					c[i]++
				}
				sub.notifs = sub.notifs[:0]
				mu.Unlock()
			}
		}()
	}
	select {
	case <-all:
		t.Logf("%d records through %d subscribers in %v", scaleMessages, len(subs), time.Since(start))
	case <-time.After(time.Until(deadline)):
	}
	for _, sub := range subs {
		sub.conn.Close()
	}
	wg.Wait()

	per := make([]int, len(subs))
	var lost, duplicated []string
	for _, m := range want {
		c := counts[m]
		if c == nil {
			lost = append(lost, m)
			continue
		}
		total := 0
		for i, n := range c {
			per[i] += n
			total += n
		}
		if total > 1 {
			duplicated = append(duplicated, m)
		}
	}
	if unexpected := len(counts) + len(lost) - scaleMessages; unexpected != 0 {
		t.Errorf("got %d records that were never produced", unexpected)
	}
	if len(lost) > 0 {
		for i, err := range errs {
			if err != nil {
				t.Errorf("subscriber %d: %v", i, err)
			}
		}
		t.Fatalf("got %d of %d records, want all; %d lost (first %q)", scaleMessages-len(lost), scaleMessages, len(lost), lost[0])
	}
	if len(duplicated) > 0 {
		t.Logf("%d records were delivered twice (first %q): allowed across a rebalance", len(duplicated), duplicated[0])
	}
	t.Logf("records per subscriber: %v (%d partitions)", per, partitions)
	// With two or more partitions each member owns some, and the keys spread the records over all of them.
	if partitions >= len(subs) {
		for i, n := range per {
			if n == 0 {
				t.Errorf("subscriber %d: got no records, want a share of the group's partitions", i)
			}
		}
	}
}
