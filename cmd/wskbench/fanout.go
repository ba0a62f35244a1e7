package main

import (
	"context"
	"fmt"
	"time"
)

type fanoutResult struct {
	mode string
	latencyResult
	perSecond   float64       // deliveries per second
	perDelivery time.Duration // Caddy's CPU per delivery
}

// fanout delivers one topic to many sockets, each with a consumer group of its own, then in broadcast mode.
func (b *bench) fanout(ctx context.Context) error {
	runs := []struct {
		mode string
		subs int
	}{{"broadcast", b.cfg.fanoutSubs}, {"group per subscriber", b.cfg.fanoutGroupSubs}}
	for _, run := range runs {
		if run.subs <= 0 {
			continue
		}
		// A fresh Caddy per mode: the CPU of one does not leak into the other (groups leaving, readers stopping).
		profile := ""
		if run.mode == "broadcast" {
			profile = b.cfg.fanoutProfile
		}
		caddy, err := b.startCaddy(ctx, profile != "")
		if err != nil {
			return err
		}
		topic := b.topic(fmt.Sprintf("fanout-%d", len(b.fanoutResult)))
		setup := latencySetup{topic: topic, route: "/ws0", rate: b.cfg.fanoutRate, duration: b.cfg.fanoutDuration, subscribers: run.subs, profile: profile}
		if run.mode != "broadcast" {
			setup.group = func(i int) string { return fmt.Sprintf("%s-g%d", topic, i) }
		}
		res, err := b.latencyRun(ctx, caddy, setup)
		caddy.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", run.mode, err)
		}
		r := fanoutResult{mode: run.mode, latencyResult: *res}
		if res.wall > 0 {
			r.perSecond = float64(res.delivered) / res.wall.Seconds()
		}
		if res.delivered > 0 {
			r.perDelivery = res.cpu / time.Duration(res.delivered)
		}
		b.fanoutResult = append(b.fanoutResult, r)
		fmt.Printf("%s, %d subscribers, %d msg/s for %v: %d/%d delivered, %.0f deliveries/s, p50 %v, p99 %v, max %v, CPU %v/delivery, %d sockets closed by the server\n",
			run.mode, run.subs, b.cfg.fanoutRate, b.cfg.fanoutDuration, res.delivered, res.sent*int64(run.subs), r.perSecond,
			res.p50, res.p99, res.max, r.perDelivery, res.closed)
	}
	return nil
}
