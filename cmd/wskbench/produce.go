package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// produceTimeout bounds one produce run, from the first publish to the last record in Kafka.
const produceTimeout = 5 * time.Minute

// rawBatch is the raw baseline's batch size (the "async, batches of 1000").
const rawBatch = 1000

type produceRound struct {
	bridgeRate, rawRate float64       // msg/s
	bridgeCPU           time.Duration // Caddy's CPU per message
	bridgeWall, rawWall time.Duration
}

type produceResult struct {
	rounds                                 []produceRound
	medianBridge, medianRaw, medianRatio   float64
	medianCPU                              time.Duration
	profilePath                            string
	profileMessages                        int64
	profileSeconds                         int
	conns, messages, size, partitionsCount int
}

// produce runs rounds of (bridge, raw) on fresh topics of the same broker and reports the medians.
func (b *bench) produce(ctx context.Context) error {
	cfg := b.cfg
	caddy, err := b.startCaddy(ctx, cfg.profile != "")
	if err != nil {
		return err
	}
	defer caddy.stop()
	res := &produceResult{conns: cfg.conns, messages: cfg.messages, size: cfg.size, partitionsCount: cfg.partitions}

	// A short warm-up: connections, metadata and the shared producer are made before the clock runs.
	warm := b.topic("produce-warmup")
	if err := b.kafka.createTopic(ctx, warm); err != nil {
		return err
	}
	if _, err := b.publishBridge(ctx, caddy, warm, min(cfg.messages, 10000), time.Time{}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	for round := 1; round <= cfg.rounds; round++ {
		var r produceRound
		bridgeTopic, rawTopic := b.topic(fmt.Sprintf("produce-bridge-%d", round)), b.topic(fmt.Sprintf("produce-raw-%d", round))
		for _, t := range []string{bridgeTopic, rawTopic} {
			if err := b.kafka.createTopic(ctx, t); err != nil {
				return err
			}
		}
		meter, err := startCPU(caddy.Pid())
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := b.publishBridge(ctx, caddy, bridgeTopic, cfg.messages, time.Time{}); err != nil {
			return err
		}
		done, err := b.kafka.waitWatermark(ctx, bridgeTopic, int64(cfg.messages), produceTimeout)
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		cpu, _, err := meter.stop()
		if err != nil {
			return err
		}
		r.bridgeWall = done.Sub(start)
		r.bridgeRate = float64(cfg.messages) / r.bridgeWall.Seconds()
		r.bridgeCPU = cpu / time.Duration(cfg.messages)

		if r.rawWall, err = b.publishRaw(ctx, rawTopic, cfg.messages); err != nil {
			return fmt.Errorf("raw: %w", err)
		}
		r.rawRate = float64(cfg.messages) / r.rawWall.Seconds()
		res.rounds = append(res.rounds, r)
		for _, t := range []string{bridgeTopic, rawTopic} {
			if err := b.kafka.deleteTopic(ctx, t); err != nil {
				return err
			}
		}
		fmt.Printf("round %d: bridge %.0f msg/s (%v, CPU %v/msg), raw %.0f msg/s (%v), ratio %.2f\n", round,
			r.bridgeRate, r.bridgeWall.Round(time.Millisecond), r.bridgeCPU, r.rawRate, r.rawWall.Round(time.Millisecond), r.bridgeRate/r.rawRate)
	}
	var bridge, raw, ratio, cpu []float64
	for _, r := range res.rounds {
		bridge, raw = append(bridge, r.bridgeRate), append(raw, r.rawRate)
		ratio, cpu = append(ratio, r.bridgeRate/r.rawRate), append(cpu, float64(r.bridgeCPU))
	}
	res.medianBridge, res.medianRaw, res.medianRatio = median(bridge), median(raw), median(ratio)
	res.medianCPU = time.Duration(median(cpu))
	b.produceResult = res

	if cfg.profile != "" {
		topic := b.topic("produce-profile")
		if err := b.kafka.createTopic(ctx, topic); err != nil {
			return err
		}
		profiled := make(chan error, 1)
		go func() { profiled <- caddy.cpuProfile(ctx, cfg.profileSec, cfg.profile) }()
		sent, err := b.publishBridge(ctx, caddy, topic, 0, time.Now().Add(time.Duration(cfg.profileSec)*time.Second))
		if err != nil {
			return fmt.Errorf("profile round: %w", err)
		}
		if err := <-profiled; err != nil {
			return err
		}
		res.profilePath, res.profileMessages, res.profileSeconds = cfg.profile, sent, cfg.profileSec
		fmt.Printf("profile: %d publishes in %d s, CPU profile of Caddy in %s\n", sent, cfg.profileSec, cfg.profile)
	}
	return nil
}

// publishBridge publishes n messages of the run's size over C sockets (or, with n 0, as many as it can until
// until) and returns once every one is written to a socket. A publish the bridge refuses is answered; any frame
// received is therefore an error. Each socket writes its frames framesPerWrite at a time, pre-encoded, straight to
// the TCP connection: encoding and masking a frame per publish, in a process that also runs the embedded broker,
// would make the tool the bottleneck (it used more CPU than Caddy), not the bridge.
func (b *bench) publishBridge(ctx context.Context, caddy *caddyProcess, topic string, n int, until time.Time) (int64, error) {
	frame, err := json.Marshal(map[string]any{"t": "notif", "a": "create", "p": map[string]any{"t": topic, "m": strings.Repeat("x", b.cfg.size)}})
	if err != nil {
		return 0, err
	}
	perWrite := b.cfg.framesPerWrite
	frames := maskedFrames(frame, perWrite)
	frameLen := len(frames) / perWrite
	conns, err := dialMany(ctx, caddy.url("/ws"), b.cfg.conns, 16)
	if err != nil {
		return 0, err
	}
	var sent atomic.Int64
	var failure atomic.Value
	var readers, writers sync.WaitGroup
	for i, c := range conns {
		readers.Go(func() {
			for {
				_, msg, err := c.conn.ReadMessage()
				if err != nil {
					return // the socket was closed by the end of the run
				}
				failure.CompareAndSwap(nil, fmt.Errorf("publish refused: %s", msg))
			}
		})
		share := n / len(conns)
		if i < n%len(conns) {
			share++
		}
		writers.Go(func() {
			// Only this goroutine writes until closeAll: gorilla's writer is idle meanwhile.
			tcp := c.conn.NetConn()
			for j := 0; n == 0 || j < share; {
				if n == 0 && time.Now().After(until) {
					return
				}
				if failure.Load() != nil || ctx.Err() != nil {
					return
				}
				count := perWrite
				if n != 0 {
					count = min(count, share-j)
				}
				_ = tcp.SetWriteDeadline(time.Now().Add(30 * time.Second)) // a failed deadline shows as the next I/O failing
				if _, err := tcp.Write(frames[:count*frameLen]); err != nil {
					failure.CompareAndSwap(nil, fmt.Errorf("publishing: %w", err))
					return
				}
				j += count
				sent.Add(int64(count))
			}
		})
	}
	writers.Wait()
	err = ctx.Err()
	if f := failure.Load(); f != nil {
		err = f.(error)
	}
	// Closing a socket flushes its buffered publishes: the watermark, not this return, stops the clock.
	closeAll(conns)
	readers.Wait()
	if f := failure.Load(); err == nil && f != nil {
		err = f.(error)
	}
	return sent.Load(), err
}

// publishRaw writes n messages of the run's size with kafka-go's async Writer, batches of 1000, and returns the
// time until the topic holds them all.
func (b *bench) publishRaw(ctx context.Context, topic string, n int) (time.Duration, error) {
	var failed atomic.Value
	w := b.kafka.writer(topic, rawBatch, 50*time.Millisecond, func(_ []kafka.Message, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, err)
		}
	})
	defer func() { _ = w.Close() }() // the measured writes are done; a close error changes no figure
	value := []byte(strings.Repeat("x", b.cfg.size))
	start := time.Now()
	for written := 0; written < n; written += rawBatch {
		// The async Writer keeps the messages until they are written: a fresh slice each time.
		batch := make([]kafka.Message, min(rawBatch, n-written))
		for i := range batch {
			batch[i] = kafka.Message{Value: value}
		}
		if err := w.WriteMessages(ctx, batch...); err != nil {
			return 0, err
		}
		if err, _ := failed.Load().(error); err != nil {
			return 0, err
		}
	}
	done, err := b.kafka.waitWatermark(ctx, topic, int64(n), produceTimeout)
	if err != nil {
		if ferr, _ := failed.Load().(error); ferr != nil {
			err = fmt.Errorf("%w (writer: %v)", err, ferr)
		}
		return 0, err
	}
	return done.Sub(start), nil
}
