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
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/wskafka/wskafka/internal/testkit"
)

// subscribeTries bounds the tries of one subscribe.
const subscribeTries = 3

// retryableCodes are the subscribe refusals a client tries again after a pause, up to subscribeTries in all:
// Kafka was slow to answer on a busy machine, not wrong.
var retryableCodes = []string{"kafka_unavailable", "kafka_timeout"}

// retryableCode is the retryable code that err, a refused request's error, quotes; "" when none.
func retryableCode(err error) string {
	for _, code := range retryableCodes {
		if strings.Contains(err.Error(), `"`+code+`"`) {
			return code
		}
	}
	return ""
}

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

// consume measures the latency of one subscriber, for each rate: with mq_interval 0 next to a raw franz-go
// consumer reading the same rate (the floor the bridge adds to), then with the defaults.
func (b *bench) consume(ctx context.Context) error {
	caddy, err := b.startCaddy(ctx, b.cfg.consumeProfile != "")
	if err != nil {
		return err
	}
	defer caddy.stop()
	runs := []struct{ route, label string }{{"/ws0", "mq_interval 0"}, {"/ws", "defaults (mq_interval 50ms)"}}
	for _, run := range runs {
		for _, rate := range b.cfg.rates {
			topic := b.topic(fmt.Sprintf("consume-%s-%d", run.route[1:], rate))
			profile := ""
			if run.route == "/ws0" && rate == slices.Max(b.cfg.rates) {
				profile = b.cfg.consumeProfile
			}
			res, err := b.latencyRun(ctx, caddy, latencySetup{
				topic: topic, route: run.route, rate: rate, duration: b.cfg.duration, subscribers: 1,
				group:   func(int) string { return topic }, // a fresh group: it starts at the end of the topic
				profile: profile,
			})
			if err != nil {
				return fmt.Errorf("%s at %d msg/s: %w", run.label, rate, err)
			}
			res.label = run.label
			b.consumeResult = append(b.consumeResult, *res)
			b.printLatency(res)
			if run.route != "/ws0" {
				continue
			}
			raw, err := b.rawLatencyRun(ctx, b.topic(fmt.Sprintf("consume-raw-%d", rate)), rate)
			if err != nil {
				return fmt.Errorf("raw consumer at %d msg/s: %w", rate, err)
			}
			b.consumeResult = append(b.consumeResult, *raw)
			b.printLatency(raw)
		}
	}
	return nil
}

// rawLabel names the baseline's results.
const rawLabel = "raw franz-go consumer, no bridge"

func (b *bench) printLatency(r *latencyResult) {
	cpu := ""
	if r.cpu > 0 && r.delivered > 0 {
		// What a delivery costs Caddy, to compare builds by; the raw consumer has no Caddy.
		cpu = fmt.Sprintf(", Caddy CPU %v (%v per message)", r.cpu.Round(time.Millisecond), r.cpu/time.Duration(r.delivered))
	}
	fmt.Printf("%s, %d msg/s for %v: %d/%d delivered, p50 %v, p99 %v, max %v%s\n", r.label, r.rate, b.cfg.duration,
		r.delivered, r.sent, r.p50, r.p99, r.max, cpu)
}

// rawLatencyRun produces rate msg/s for the scenario's duration, as latencyRun does, to a raw consumer instead of
// the bridge.
func (b *bench) rawLatencyRun(ctx context.Context, topic string, rate int) (*latencyResult, error) {
	if err := b.kafka.createTopic(ctx, topic); err != nil {
		return nil, err
	}
	consumer, err := b.kafka.rawConsumer(topic)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	want := int64(rate) * int64(b.cfg.duration/time.Millisecond) / 1000
	var latencies []time.Duration
	var failure error
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for int64(len(latencies)) < want {
			fetches := consumer.PollFetches(pollCtx)
			now := time.Now().UnixNano()
			if pollCtx.Err() != nil {
				return
			}
			fetches.EachError(func(topic string, p int32, err error) {
				if failure == nil {
					failure = fmt.Errorf("fetching %s/%d: %w", topic, p, err)
				}
			})
			fetches.EachRecord(func(r *kgo.Record) {
				if sent, err := stampOf(r.Value); err == nil {
					latencies = append(latencies, time.Duration(now-sent))
				} else if failure == nil {
					failure = err
				}
			})
		}
	}()
	sent, err := b.produceAtRate(ctx, topic, rate, b.cfg.duration)
	if err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-time.After(drainTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	stopPolling()
	<-done
	if failure != nil {
		fmt.Printf("  warning: %v\n", failure)
	}
	res := newLatencyResult(latencies)
	res.label, res.rate, res.subscribers, res.sent = rawLabel, rate, 1, sent
	return res, nil
}

// latencySetup says what a latency run subscribes and produces.
type latencySetup struct {
	topic, route string
	rate         int
	duration     time.Duration
	subscribers  int
	group        func(i int) string // the consumer group of subscriber i; nil: broadcast
	profile      string             // where a CPU profile of Caddy while the producer runs goes ("": none)
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

	meter, err := startCPU(caddy.Pid())
	if err != nil {
		return nil, err
	}
	profiled := make(chan error, 1)
	if s.profile != "" {
		go func() { profiled <- caddy.cpuProfile(ctx, int(s.duration.Seconds()), s.profile) }()
	} else {
		profiled <- nil
	}
	start := time.Now()
	sent, err := b.produceAtRate(ctx, s.topic, s.rate, s.duration)
	if err != nil {
		return nil, err
	}
	if err := <-profiled; err != nil {
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

	res := newLatencyResult(slices.Concat(perConn...))
	res.rate, res.subscribers, res.sent, res.cpu, res.closed = s.rate, s.subscribers, sent, cpu, int(closed.Load())
	res.delivered = delivered.Load() // of well-formed frames only
	if end.After(start) {
		res.wall = end.Sub(start)
	}
	if f, _ := failure.Load().(error); f != nil {
		fmt.Printf("  warning: %v\n", f)
	}
	return res, nil
}

// newLatencyResult sorts the latencies of one run and takes their percentiles; each is one delivery.
func newLatencyResult(latencies []time.Duration) *latencyResult {
	slices.Sort(latencies)
	res := &latencyResult{latencies: latencies, delivered: int64(len(latencies))}
	res.p50, res.p99 = testkit.Percentile(latencies, 0.50), testkit.Percentile(latencies, 0.99)
	if len(latencies) > 0 {
		res.max = latencies[len(latencies)-1]
	}
	return res
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
				if try == subscribeTries || retryableCode(err) == "" {
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

// produceAtRate writes rate msg/s for duration, paced every millisecond; each value starts with its send time.
// It returns the number written once all are acknowledged.
//
// The producer is franz-go's, with no linger and one request in flight per broker: whatever queues while a
// request is out goes in the next one, so a slow request never leaves a backlog behind it. kafka-go's Writer
// (what the produce scenario measures against) sends one batch per partition at a time, closed by size or a
// fixed timeout; at a millisecond's worth per batch its queue grows behind any slow request, and on Kafka 4.4
// that put 15–180 ms into the p99 of send-to-append time, which this scenario would then charge to the bridge.
func (b *bench) produceAtRate(ctx context.Context, topic string, rate int, duration time.Duration) (int64, error) {
	return b.produceValuesAtRate(ctx, topic, rate, duration, func(now time.Time) []byte {
		return stampedValue(make([]byte, 0, b.cfg.size), now)
	})
}

// produceValuesAtRate is produceAtRate with the value of each record made by value from its send time.
func (b *bench) produceValuesAtRate(ctx context.Context, topic string, rate int, duration time.Duration, value func(now time.Time) []byte) (int64, error) {
	producer, err := b.kafka.latencyProducer(topic)
	if err != nil {
		return 0, err
	}
	defer producer.Close()
	var failed atomic.Value
	acked := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, err)
		}
	}
	total := int64(rate) * int64(duration/time.Millisecond) / 1000
	var sent int64
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for sent < total {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case now := <-tick.C:
			due := min(total, int64(now.Sub(start).Seconds()*float64(rate)))
			for ; sent < due; sent++ {
				producer.Produce(ctx, &kgo.Record{Value: value(time.Now())}, acked)
			}
		}
	}
	if err := producer.Flush(ctx); err != nil {
		return sent, fmt.Errorf("flushing the producer: %w", err)
	}
	if err, _ := failed.Load().(error); err != nil {
		return sent, fmt.Errorf("producing: %w", err)
	}
	return sent, nil
}
