package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/segmentio/kafka-go"
)

// subscribeTries bounds the tries of one subscribe.
const subscribeTries = 3

// drainTimeout bounds the wait for the last notifications after the producer stops.
const drainTimeout = 15 * time.Second

type latencyResult struct {
	label           string // the subscription's batching
	rate            int
	subscribers     int
	sent, delivered int64
	p50, p99, max   time.Duration
	latencies       []time.Duration // sorted
	wall            time.Duration   // from the first record produced to the last delivery
	cpu             time.Duration   // Caddy's CPU over wall
	closed          int             // sockets the server closed during the run
}

// consume measures the latency of one subscriber, for each rate, with mq_interval 0 and with the defaults.
func (b *bench) consume(ctx context.Context) error {
	caddy, err := b.startCaddy(ctx, false)
	if err != nil {
		return err
	}
	defer caddy.stop()
	runs := []struct{ route, label string }{{"/ws0", "mq_interval 0"}, {"/ws", "defaults (mq_interval 50ms)"}}
	for _, run := range runs {
		for _, rate := range b.cfg.rates {
			topic := b.topic(fmt.Sprintf("consume-%s-%d", run.route[1:], rate))
			res, err := b.latencyRun(ctx, caddy, latencySetup{
				topic: topic, route: run.route, rate: rate, duration: b.cfg.duration, subscribers: 1,
				group: func(int) string { return topic }, // a fresh group: it starts at the end of the topic
			})
			if err != nil {
				return fmt.Errorf("%s at %d msg/s: %w", run.label, rate, err)
			}
			res.label = run.label
			b.consumeResult = append(b.consumeResult, *res)
			fmt.Printf("%s, %d msg/s for %v: %d/%d delivered, p50 %v, p99 %v, max %v\n", run.label, rate, b.cfg.duration,
				res.delivered, res.sent, res.p50, res.p99, res.max)
		}
	}
	return nil
}

// latencySetup says what a latency run subscribes and produces.
type latencySetup struct {
	topic, route string
	rate         int
	duration     time.Duration
	subscribers  int
	group        func(i int) string // the consumer group of subscriber i; nil: broadcast
}

// latencyRun subscribes the sockets, produces rate msg/s for duration with a raw writer, each value starting with
// its send time, and collects every delivery's latency.
func (b *bench) latencyRun(ctx context.Context, caddy *caddyProcess, s latencySetup) (*latencyResult, error) {
	if err := b.kafka.createTopic(ctx, s.topic); err != nil {
		return nil, err
	}
	conns, err := dialMany(ctx, caddy.url(s.route), s.subscribers, 32)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	subscribed := time.Now()
	if err := b.subscribeAll(conns, s); err != nil {
		return nil, err
	}
	if s.subscribers > 1 {
		fmt.Printf("  %d subscribers ready in %v\n", s.subscribers, time.Since(subscribed).Round(time.Millisecond))
	}

	want := int64(s.rate) * int64(s.duration/time.Millisecond) / 1000 * int64(s.subscribers)
	var delivered, closed atomic.Int64
	var lastDelivery atomic.Int64
	allIn := make(chan struct{})
	var allInOnce sync.Once
	perConn := make([][]time.Duration, len(conns))
	var readers sync.WaitGroup
	var failure atomic.Value
	for i, c := range conns {
		readers.Go(func() {
			for {
				_, frame, err := c.conn.ReadMessage()
				now := time.Now().UnixNano()
				if err != nil {
					if websocket.IsCloseError(err, websocket.CloseTryAgainLater, websocket.CloseGoingAway, websocket.CloseServiceRestart) {
						closed.Add(1)
						failure.CompareAndSwap(nil, fmt.Errorf("socket %d closed by the server: %w", i, err))
					}
					return
				}
				n, err := sendTimes(frame, func(sent int64) {
					perConn[i] = append(perConn[i], time.Duration(now-sent))
				})
				if err != nil || n == 0 {
					failure.CompareAndSwap(nil, fmt.Errorf("socket %d: unexpected frame %.200s", i, frame))
					continue
				}
				lastDelivery.Store(now)
				if delivered.Add(int64(n)) >= want {
					allInOnce.Do(func() { close(allIn) })
				}
			}
		})
	}

	meter, err := startCPU(caddy.pid())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	sent, err := b.produceAtRate(ctx, s.topic, s.rate, s.duration)
	if err != nil {
		return nil, err
	}
	select {
	case <-allIn:
	case <-time.After(drainTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cpu, _, err := meter.stop()
	if err != nil {
		return nil, err
	}
	end := time.Unix(0, lastDelivery.Load())
	closeAll(conns)
	readers.Wait()

	res := &latencyResult{rate: s.rate, subscribers: s.subscribers, sent: sent, delivered: delivered.Load(), cpu: cpu, closed: int(closed.Load())}
	if end.After(start) {
		res.wall = end.Sub(start)
	}
	for _, l := range perConn {
		res.latencies = append(res.latencies, l...)
	}
	slices.Sort(res.latencies)
	res.p50, res.p99 = percentile(res.latencies, 50), percentile(res.latencies, 99)
	if len(res.latencies) > 0 {
		res.max = res.latencies[len(res.latencies)-1]
	}
	if f, _ := failure.Load().(error); f != nil {
		fmt.Printf("  warning: %v\n", f)
	}
	return res, nil
}

// subscribeAll subscribes every socket, a few at a time (a subscribe waits for its group to be joined).
func (b *bench) subscribeAll(conns []*wsConn, s latencySetup) error {
	var retries atomic.Int64
	defer func() {
		if n := retries.Load(); n > 0 {
			fmt.Printf("  %d subscribes retried after kafka_unavailable or kafka_timeout\n", n)
		}
	}()
	errs := make(chan error, len(conns))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, c := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			group := ""
			if s.group != nil {
				group = s.group(i)
			}
			// A subscribe refused because Kafka did not answer in time (many sockets subscribing at once on a busy
			// machine) is retried, and counted: the figures say how often it happened.
			for try := 1; ; try++ {
				err := c.subscribe(s.topic, group, s.group == nil)
				if err == nil {
					return
				}
				if try == subscribeTries || !strings.Contains(err.Error(), `"kafka_unavailable"`) && !strings.Contains(err.Error(), `"kafka_timeout"`) {
					errs <- fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
				retries.Add(1)
				time.Sleep(time.Second)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// produceAtRate writes rate msg/s for duration with kafka-go's async Writer, paced every millisecond; each value
// starts with its send time. It returns the number written once the writer has flushed them.
func (b *bench) produceAtRate(ctx context.Context, topic string, rate int, duration time.Duration) (int64, error) {
	var failed atomic.Value
	// Batches of about a millisecond's worth per partition, sent within a millisecond: the writer adds little latency.
	batch := max(1, rate/(1000*b.kafka.partitions))
	w := b.kafka.writer(topic, batch, time.Millisecond, func(_ []kafka.Message, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, err)
		}
	})
	total := int64(rate) * int64(duration/time.Millisecond) / 1000
	var sent int64
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for sent < total {
		select {
		case <-ctx.Done():
			w.Close()
			return sent, ctx.Err()
		case now := <-tick.C:
			due := min(total, int64(now.Sub(start).Seconds()*float64(rate)))
			if due <= sent {
				continue
			}
			msgs := make([]kafka.Message, due-sent)
			for i := range msgs {
				msgs[i] = kafka.Message{Value: stampedValue(make([]byte, 0, b.cfg.size), time.Now())}
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				w.Close()
				return sent, err
			}
			sent = due
		}
	}
	if err := w.Close(); err != nil {
		return sent, fmt.Errorf("closing the writer: %w", err)
	}
	if err, _ := failed.Load().(error); err != nil {
		return sent, fmt.Errorf("producing: %w", err)
	}
	return sent, nil
}
