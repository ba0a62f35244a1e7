package bridge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The batching rules of mq_limit and mq_interval, in a bubble of fake time: when each batch goes out, and with what.
func TestBatcher(t *testing.T) {
	type send struct {
		after time.Duration // since the previous send
		n     int           // records, numbered on from the previous send's
		bytes int           // value size of each; 2 when 0
	}
	cases := []struct {
		name     string
		limit    int
		interval time.Duration
		maxBytes int64
		sends    []send
		want     []string // each batch: when it went out, and its records
	}{
		{
			name: "full batches go at once, the rest after the interval", limit: 3, interval: time.Second,
			sends: []send{{n: 7}},
			want:  []string{"0s v0 v1 v2", "0s v3 v4 v5", "1s v6"},
		},
		{
			name: "the interval runs from the batch's first record", limit: 100, interval: 100 * time.Millisecond,
			sends: []send{{n: 1}, {after: 50 * time.Millisecond, n: 1}, {after: 70 * time.Millisecond, n: 1}},
			want:  []string{"100ms v0 v1", "220ms v2"},
		},
		{
			name: "interval 0: at once, with what is already waiting", limit: 2,
			sends: []send{{n: 5}, {after: time.Second, n: 1}},
			want:  []string{"0s v0 v1", "0s v2 v3", "0s v4", "1s v5"},
		},
		{
			name: "a heavy batch goes at once", limit: 100, interval: time.Second, maxBytes: 10,
			sends: []send{{n: 4, bytes: 4}},
			want:  []string{"0s v0 v1 v2", "1s v3"},
		},
		{
			name: "a batch sent full does not leave its timer to cut the next one short", limit: 2, interval: 100 * time.Millisecond,
			sends: []send{{n: 2}, {after: 90 * time.Millisecond, n: 1}},
			want:  []string{"0s v0 v1", "190ms v2"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := make(chan Record, 64)
				next := 0
				push := func(s send) {
					for range s.n {
						value := fmt.Sprintf("v%d", next)
						if s.bytes > 0 {
							value = fmt.Sprintf("%-*s", s.bytes, value)[:s.bytes]
						}
						in <- Record{Offset: int64(next), Value: []byte(value)}
						next++
					}
				}
				start := time.Now()
				push(c.sends[0]) // waiting before the loop starts: interval 0 takes them together
				var got []string
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() {
					defer close(done)
					b := batcher{limit: c.limit, interval: c.interval, maxBytes: c.maxBytes}
					defer b.stop()
					for {
						select {
						case rec := <-in:
							if !b.add(rec, in, c.limit) {
								continue
							}
						case <-b.due:
						case <-ctx.Done():
							return
						}
						batch, _ := b.take()
						var values []string
						for _, r := range batch {
							values = append(values, "v"+fmt.Sprint(r.Offset))
						}
						got = append(got, fmt.Sprintf("%v %s", time.Since(start), strings.Join(values, " ")))
					}
				}()
				for _, s := range c.sends[1:] {
					time.Sleep(s.after)
					push(s)
				}
				time.Sleep(10 * time.Second) // whatever is due has gone
				cancel()
				<-done
				if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
					t.Errorf("batches:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
				}
			})
		})
	}
}
