package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// stormResult is one subscribe storm: every socket already open, all subscribing at the same instant.
type stormResult struct {
	server        string
	mode          string // "broadcast" or "one group"
	sockets       int
	failed        int
	wall          time.Duration // from the release to the last reply
	p50, p99, max time.Duration // per subscribe, from its send to its reply
	perSecond     float64
	load          float64
	// Group storms: the broker's rebalances of the group ("Stabilized group" lines), and the group's join: from the
	// release to the last of them (-1: unknown, no broker log).
	generations, lastMembers int
	join                     time.Duration
}

// substorm measures subscribe storms: stormSubs broadcast subscribes at once on wskafka (and on Centrifugo, in the
// same minute, when the peer scenario is in the run or -centrifugo is given), then stormGroupSubs sockets
// subscribing to one consumer group at once.
func (b *bench) substorm(ctx context.Context) error {
	if b.cfg.stormSubs > 0 {
		caddy, err := b.startCaddy(ctx, false)
		if err != nil {
			return err
		}
		topic := b.topic("storm-broadcast")
		err = b.kafka.createTopic(ctx, topic)
		if err == nil {
			var r *stormResult
			if r, err = b.stormRun(ctx, wskafkaEndpoint(caddy, "/ws0", topic), "broadcast", b.cfg.stormSubs); err == nil {
				b.stormResult = append(b.stormResult, *r)
			}
		}
		caddy.stop()
		if err != nil {
			return fmt.Errorf("broadcast: %w", err)
		}
		if b.centrifugoBin != "" || b.cfg.centrifugoBin != "" {
			if b.centrifugoBin == "" {
				if b.centrifugoBin, err = installCentrifugo(ctx, b.cfg.centrifugoBin, b.cfg.centrifugoVersion, b.dir); err != nil {
					return err
				}
				b.env.peerVersion = centrifugoVersion(b.centrifugoBin)
			}
			c, err := b.startCentrifugo(ctx, topic, topic+"-centrifugo")
			if err != nil {
				return err
			}
			r, err := b.stormRun(ctx, centrifugoEndpoint(c), "broadcast", b.cfg.stormSubs)
			c.stop()
			if err != nil {
				return fmt.Errorf("centrifugo: %w", err)
			}
			b.stormResult = append(b.stormResult, *r)
		}
		_ = b.kafka.deleteTopic(ctx, topic)
	}
	if b.cfg.stormGroupSubs > 0 {
		caddy, err := b.startCaddy(ctx, false)
		if err != nil {
			return err
		}
		defer caddy.stop()
		topic := b.topic("storm-group")
		if err := b.kafka.createTopic(ctx, topic); err != nil {
			return err
		}
		group := topic + "-g"
		ep := wskafkaEndpoint(caddy, "/ws0", topic)
		ep.subscribe = func(c *wsConn) error { return c.subscribe(topic, group, false) }
		r, err := b.stormRun(ctx, ep, "one group", b.cfg.stormGroupSubs)
		if err != nil {
			return fmt.Errorf("group: %w", err)
		}
		b.stormResult = append(b.stormResult, *r)
	}
	return nil
}

// stormRun opens n sockets (not measured), then releases every subscribe at once and times each until its reply.
func (b *bench) stormRun(ctx context.Context, ep endpoint, mode string, n int) (*stormResult, error) {
	conns := make([]*wsConn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialWS(ctx, ep.url)
			if err == nil && ep.handshake != nil {
				err = ep.handshake(c)
			}
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	close(errs)
	defer closeAll(conns)
	if err := <-errs; err != nil {
		return nil, err
	}
	res := &stormResult{server: ep.name, mode: mode, sockets: n, load: loadAverage(), generations: -1, lastMembers: -1, join: -1}
	latencies := make([]time.Duration, n)
	failures := make([]error, n)
	release := make(chan struct{})
	var ready, done sync.WaitGroup
	for i, c := range conns {
		ready.Add(1)
		done.Go(func() {
			ready.Done()
			<-release
			start := time.Now()
			failures[i] = ep.subscribe(c)
			latencies[i] = time.Since(start)
		})
	}
	ready.Wait()
	released := time.Now()
	close(release)
	done.Wait()
	res.wall = time.Since(released)
	var ok []time.Duration
	var first error
	for i, err := range failures {
		if err != nil {
			res.failed++
			if first == nil {
				first = err
			}
			continue
		}
		ok = append(ok, latencies[i])
	}
	if first != nil {
		fmt.Printf("  warning: %d subscribes failed, the first: %v\n", res.failed, first)
	}
	res.p50, res.p99, res.max = testkit.Percentile(ok, 0.5), testkit.Percentile(ok, 0.99), testkit.Percentile(ok, 1)
	res.perSecond = float64(len(ok)) / res.wall.Seconds()
	if mode == "one group" {
		// The coordinator logs the generation a moment after the last JoinGroup answer; give it that moment.
		time.Sleep(time.Second)
		res.generations, res.lastMembers, res.join = b.groupJoin(released)
	}
	fmt.Printf("%s, %s: %d subscribes at once (load %.1f): all answered in %v, %.0f subscribes/s; per subscribe p50 %v, p99 %v, max %v; %d failed%s\n",
		ep.name, mode, n, res.load, res.wall.Round(time.Millisecond), res.perSecond, res.p50, res.p99, res.max, res.failed, res.joinText())
	return res, nil
}

// groupJoin reads the broker log's "Stabilized group" lines of the storm's group: how many generations it went
// through, the members of the last, and when the last came (after released). -1s without a log.
func (b *bench) groupJoin(released time.Time) (generations, members int, join time.Duration) {
	generations, members, join = -1, -1, -1
	if b.cfg.kafkaLog == "" {
		return
	}
	f, err := os.Open(b.cfg.kafkaLog)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }() // read-only, or done with
	needle := "Stabilized group " + b.topic("storm-group") + "-g generation "
	generations = 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, needle)
		if i < 0 || len(line) < 25 || line[0] != '[' {
			continue
		}
		// [2026-12-02 21:11:35,833] INFO [GroupCoordinator …] Stabilized group G generation 1 with 1 members.
		at, err := time.ParseInLocation("2006-01-02 15:04:05,000", line[1:24], time.Local)
		if err != nil {
			continue
		}
		var gen, m int
		if _, err := fmt.Sscanf(line[i+len(needle):], "%d with %d members", &gen, &m); err != nil {
			continue
		}
		generations++
		members, join = m, at.Sub(released)
	}
	return
}

func (r *stormResult) joinText() string {
	if r.mode != "one group" {
		return ""
	}
	if r.generations < 0 {
		return "; the group's join unknown (no broker log: -kafka-log)"
	}
	return fmt.Sprintf("; the group stabilized %d times, the last with %d members %v after the release", r.generations, r.lastMembers, r.join.Round(time.Millisecond))
}

// stormRows adds the storms' rows with the targets of #13.
func (b *bench) stormRows(row func(scenario, figure, result, target string)) {
	for _, r := range b.stormResult {
		who := r.server
		if who == "centrifugo" {
			who = "Centrifugo " + b.env.peerVersion
		}
		name := fmt.Sprintf("subscribe storm: %s, %d sockets subscribing at once (%s)", who, r.sockets, r.mode)
		target := ""
		if r.server == "wskafka" && r.mode == "broadcast" {
			target = b.issueTarget(fmt.Sprintf("subscribe storm: %d broadcast subscribes at once", r.sockets), r.failed == 0 && r.perSecond >= 10000, "≥ 10,000 subscribes/s",
				fmt.Sprintf("%.0f/s, %d failed, load %.1f", r.perSecond, r.failed, r.load))
		}
		row(name, "all answered in (load)", fmt.Sprintf("%s, %d failed (load %.1f)", fmtDur(r.wall), r.failed, r.load), "")
		row(name, "subscribes per second", fmt.Sprintf("%.0f", r.perSecond), target)
		row(name, "per subscribe p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max)), "")
		if r.mode != "one group" {
			continue
		}
		if r.generations < 0 {
			row(name, "the group's join (the broker's last Stabilized group line)", "unknown (no broker log)", "no subscribe longer than the group's join: unknown")
			b.targets = append(b.targets, fmt.Sprintf("- subscribe storm: %d subscribes to one group at once: no subscribe longer than the group's join: unknown (no broker log; slowest subscribe %s)", r.sockets, fmtDur(r.max)))
			continue
		}
		// A subscribe answers after the join, the SyncGroup and the start offsets: half a second past the last
		// generation's log line is that, not a second join.
		met := r.failed == 0 && r.max <= r.join+500*time.Millisecond
		row(name, "the group's join: generations, members of the last, when it stabilized", fmt.Sprintf("%d, %d, %s", r.generations, r.lastMembers, fmtDur(r.join)),
			b.issueTarget(fmt.Sprintf("subscribe storm: %d subscribes to one group at once", r.sockets), met, "no subscribe longer than the group's join (+0.5 s for SyncGroup and offsets)",
				fmt.Sprintf("slowest subscribe %s, the group stabilized after %s in %d generations", fmtDur(r.max), fmtDur(r.join), r.generations)))
	}
}
