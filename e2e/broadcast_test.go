package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

const (
	broadcastSockets = 50
	broadcastRecords = 100
)

// TestBroadcastAcrossSockets protects "mode": "broadcast" on the real binary: every one of many sockets
// subscribed to a topic receives every record kcat produces to it, each exactly once.
func TestBroadcastAcrossSockets(t *testing.T) {
	needSuite(t)
	needKcat(t)
	srv := startCaddy(t, caddyOptions{})
	topic := uniqueName(t, "t")
	subs := make([]*wsClient, broadcastSockets)
	for i := range subs {
		subs[i] = dial(t, fmt.Sprintf("socket %d", i), srv.url(), nil)
	}
	createPartitioned(t, subs[0], topic, 2)
	for _, sub := range subs {
		r := sub.request(t, topicMsg("subscribe", map[string]any{"t": []string{topic}, "mode": "broadcast"}))
		assertStrings(t, "subscribe reply p", r.P, []string{topic})
	}

	want := make([]string, broadcastRecords)
	lines := make([]string, broadcastRecords)
	for i := range want {
		want[i] = fmt.Sprintf("broadcast-%03d", i)
		lines[i] = want[i] + ":" + want[i] // keyed by itself: spread over both partitions
	}
	start := time.Now()
	kcatProduceKeyed(t, topic, false, lines...)

	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, sub := range subs {
		wg.Go(func() {
			got, err := sub.receive(broadcastRecords, replyTimeout)
			if err != nil {
				errs[i] = err
				return
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				counts := map[string]int{}
				for _, v := range got {
					counts[v]++
				}
				var missing, repeated []string
				for _, w := range want {
					switch counts[w] {
					case 0:
						missing = append(missing, w)
					case 1:
					default:
						repeated = append(repeated, w)
					}
				}
				errs[i] = fmt.Errorf("%s: got %d records, want each of the %d produced once; missing %q, repeated %q",
					sub.name, len(got), len(want), missing, repeated)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d records to %d sockets in %v", broadcastRecords, broadcastSockets, time.Since(start))
	// Nothing more: each socket got each record once.
	for _, sub := range subs {
		sub.expectQuiet(t)
	}
}
