package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wskafka/wskafka/internal/testkit"
)

// Bounds of the reload storm.
const (
	stormRecoverTimeout = 2 * time.Minute // after the last close, until every client receives again
	stormRedialTimeout  = time.Minute     // one client redialling
	stormBaseline       = time.Minute     // before the reload, until every client has received once
)

// reloadResult is one reload of the storm: every socket closed with 1012, every client back.
type reloadResult struct {
	label                    string
	broadcast, group, size   int
	closed, recovered        int            // sockets closed with 1012; clients receiving again
	firstClose, lastClose    time.Duration  // after the POST /load
	resubscribed, receiving  time.Duration  // the last client's, after the POST /load
	gapP50, gapMax           time.Duration  // per client, from its 1012 to its first notification on the new socket
	groupGapP50, groupGapMax time.Duration  // the same, group subscribers only
	peakReconnects           int            // the most reconnects in one second
	rebalances               int            // the broker's "Stabilized group" lines for the run's groups; -1: unknown
	retried                  map[string]int // subscribes retried, by kind of client and error code
	failures                 []string
}

// reload is the reload storm: reloadSubs broadcast subscribers and reloadGroupSubs group subscribers (groups of
// reloadGroupSize) on one Caddy, a producer at reloadRate, a config reload (POST /load, Kafka settings unchanged),
// and the time until every client has reconnected, resubscribed and received again; first with every socket
// closed at once (close_delay 0), then with the closes spread over reloadCloseDelay, when the binary knows
// close_delay (builds from before it close at once).
func (b *bench) reload(ctx context.Context) error {
	known, err := probeSetting(b.cfg.caddyBin, b.dir, "close_delay 1s", "close_delay")
	if err != nil {
		return err
	}
	phases := []struct {
		label string
		line  string
	}{{"at once (close_delay 0)", "close_delay 0"}, {fmt.Sprintf("spread (close_delay %v)", b.cfg.reloadCloseDelay), fmt.Sprintf("close_delay %v", b.cfg.reloadCloseDelay)}}
	if !known {
		fmt.Println("the binary does not know close_delay: it closes every socket at once on a reload; no spread phase")
		phases = phases[:1]
		phases[0] = struct{ label, line string }{"at once (a build without close_delay)", ""}
	}
	for i, phase := range phases {
		res, err := b.reloadPhase(ctx, i, phase.label, phase.line)
		if err != nil {
			return fmt.Errorf("%s: %w", phase.label, err)
		}
		b.reloadResult = append(b.reloadResult, *res)
		fmt.Printf("%s: %d broadcast + %d group subscribers (groups of %d): %d closed with 1012 from %v to %v after the reload; "+
			"all resubscribed after %v, all receiving again after %v (per client, 1012 to receiving: p50 %v, max %v; "+
			"group subscribers p50 %v, max %v); peak %d reconnects/s; %s group rebalances; subscribes retried: %s; %d/%d recovered\n",
			res.label, res.broadcast, res.group, res.size, res.closed, res.firstClose.Round(time.Millisecond), res.lastClose.Round(time.Millisecond),
			res.resubscribed.Round(time.Millisecond), res.receiving.Round(time.Millisecond), res.gapP50.Round(time.Millisecond), res.gapMax.Round(time.Millisecond),
			res.groupGapP50.Round(time.Millisecond), res.groupGapMax.Round(time.Millisecond), res.peakReconnects, fmtCount(res.rebalances),
			fmtCodes(res.retried), res.recovered, res.broadcast+res.group)
		for _, f := range res.failures[:min(len(res.failures), 5)] {
			fmt.Printf("  %s\n", f)
		}
	}
	return nil
}

// fmtCodes prints counts by name, sorted: "group kafka_timeout 12, group kafka_unavailable 3", or "none".
func fmtCodes(counts map[string]int) string {
	if len(counts) == 0 {
		return "none"
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		out = append(out, fmt.Sprintf("%s %d", name, counts[name]))
	}
	return strings.Join(out, ", ")
}

func fmtCount(n int) string {
	if n < 0 {
		return "unknown (no broker log: -kafka-log)"
	}
	return fmt.Sprint(n)
}

// stormClient is one subscriber of the storm: it reads its socket, and when the server closes it with 1012 it
// dials again and subscribes again.
type stormClient struct {
	url, topic, group string // group "": broadcast

	mu        sync.Mutex
	conn      *wsConn
	received  bool      // a notification came on the current socket
	closedAt  time.Time // the 1012
	redialed  time.Time
	resubbed  time.Time
	receiving time.Time      // first notification on the new socket
	retried   map[string]int // by kind of client and error code
	err       error
}

func (c *stormClient) subscribe(conn *wsConn) error {
	for try := 1; ; try++ {
		err := conn.subscribe(c.topic, c.group, c.group == "")
		if err == nil || try == subscribeTries {
			return err
		}
		code := retryableCode(err)
		if code == "" {
			return err
		}
		c.mu.Lock()
		if c.retried == nil {
			c.retried = map[string]int{}
		}
		c.retried[kind(c)+" "+code]++
		c.mu.Unlock()
		time.Sleep(time.Second)
	}
}

// read serves the client until ctx ends.
func (c *stormClient) read(ctx context.Context) {
	for {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		_, frame, err := conn.conn.ReadMessage()
		now := time.Now()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
				c.fail(fmt.Errorf("socket ended: %w", err))
				return
			}
			c.mu.Lock()
			first := c.closedAt.IsZero()
			c.closedAt = now
			c.mu.Unlock()
			if !first {
				c.fail(errors.New("closed with 1012 twice"))
				return
			}
			if err := c.reconnect(ctx); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		if len(frame) == 0 || frame[0] != '[' {
			continue
		}
		c.mu.Lock()
		c.received = true
		if !c.resubbed.IsZero() && c.receiving.IsZero() {
			c.receiving = now
		}
		c.mu.Unlock()
	}
}

func (c *stormClient) reconnect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, stormRedialTimeout)
	defer cancel()
	var conn *wsConn
	for {
		var err error
		if conn, err = dialWS(ctx, c.url); err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("redialling: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.mu.Lock()
	c.conn, c.redialed = conn, time.Now()
	c.mu.Unlock()
	if err := c.subscribe(conn); err != nil {
		return fmt.Errorf("subscribing again: %w", err)
	}
	c.mu.Lock()
	c.resubbed = time.Now()
	c.mu.Unlock()
	return nil
}

func (c *stormClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (b *bench) reloadPhase(ctx context.Context, n int, label, closeDelay string) (*reloadResult, error) {
	before := "write_timeout 10s\n\t\t\t" + closeDelay
	after := "write_timeout 9s\n\t\t\t" + closeDelay
	caddy, err := b.startCaddyWith(ctx, true, before)
	if err != nil {
		return nil, err
	}
	defer caddy.stop()
	topic := b.topic(fmt.Sprintf("reload-%d", n))
	if err := b.kafka.createTopic(ctx, topic); err != nil {
		return nil, err
	}
	defer func() { _ = b.kafka.deleteTopic(context.Background(), topic) }() // best effort: the broker may be gone
	res := &reloadResult{label: label, broadcast: b.cfg.reloadSubs, group: b.cfg.reloadGroupSubs, size: b.cfg.reloadGroupSize,
		rebalances: -1, retried: map[string]int{}}

	// The producer runs through the whole phase, so that every client has something to receive again.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	produced := make(chan error, 1)
	go func() {
		_, err := b.produceAtRate(runCtx, topic, b.cfg.reloadRate, 24*time.Hour)
		produced <- err
	}()

	url := caddy.url("/ws0")
	var clients []*stormClient
	for i := range res.broadcast + res.group {
		c := &stormClient{url: url, topic: topic}
		if i >= res.broadcast {
			c.group = fmt.Sprintf("%s-g%d", topic, (i-res.broadcast)/max(res.size, 1))
		}
		clients = append(clients, c)
	}
	conns, err := dialMany(ctx, url, len(clients), 32)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var setupErr atomic.Value
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i, c := range clients {
		c.conn = conns[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.subscribe(c.conn); err != nil {
				setupErr.CompareAndSwap(nil, fmt.Errorf("subscriber %d: %w", i, err))
			}
		})
	}
	wg.Wait()
	var readers sync.WaitGroup
	defer func() {
		stopRun()
		for _, c := range clients {
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			conn.close()
		}
		readers.Wait()
	}()
	for _, c := range clients {
		readers.Go(func() { c.read(runCtx) })
	}
	if err, _ := setupErr.Load().(error); err != nil {
		return nil, err
	}
	fmt.Printf("  %d subscribers ready in %v\n", len(clients), time.Since(start).Round(time.Millisecond))
	if err := waitUntil(ctx, stormBaseline, func() bool {
		return countClients(clients, func(c *stormClient) bool { return c.received }) == len(clients)
	}); err != nil {
		return nil, fmt.Errorf("before the reload, not every client received: %w", err)
	}

	stabilized := b.stabilizedCount(topic)
	reloaded := time.Now()
	if err := caddy.reload(ctx, after); err != nil {
		return nil, err
	}
	_ = waitUntil(ctx, stormRecoverTimeout, func() bool {
		return countClients(clients, func(c *stormClient) bool { return !c.receiving.IsZero() || c.err != nil }) == len(clients)
	})
	// The groups' last rebalances (members of the old generation leaving) settle a moment after the last join.
	time.Sleep(2 * time.Second)
	if now := b.stabilizedCount(topic); now >= 0 && stabilized >= 0 {
		res.rebalances = now - stabilized
	}

	perSecond := map[int64]int{}
	var gaps, groupGaps []time.Duration
	for _, c := range clients {
		c.mu.Lock()
		if !c.closedAt.IsZero() {
			res.closed++
			d := c.closedAt.Sub(reloaded)
			if res.firstClose == 0 || d < res.firstClose {
				res.firstClose = d
			}
			res.lastClose = max(res.lastClose, d)
		}
		if !c.redialed.IsZero() {
			perSecond[int64(c.redialed.Sub(reloaded)/time.Second)]++
		}
		if !c.receiving.IsZero() {
			res.recovered++
			res.resubscribed = max(res.resubscribed, c.resubbed.Sub(reloaded))
			res.receiving = max(res.receiving, c.receiving.Sub(reloaded))
			gaps = append(gaps, c.receiving.Sub(c.closedAt))
			if c.group != "" {
				groupGaps = append(groupGaps, c.receiving.Sub(c.closedAt))
			}
		}
		if c.err != nil {
			res.failures = append(res.failures, c.err.Error())
		} else if c.receiving.IsZero() {
			res.failures = append(res.failures, fmt.Sprintf("%s client not receiving again within %v", kind(c), stormRecoverTimeout))
		}
		for code, n := range c.retried {
			res.retried[code] += n
		}
		c.mu.Unlock()
	}
	slices.Sort(gaps)
	slices.Sort(groupGaps)
	res.gapP50, res.gapMax = testkit.Percentile(gaps, 0.50), testkit.Percentile(gaps, 1)
	res.groupGapP50, res.groupGapMax = testkit.Percentile(groupGaps, 0.50), testkit.Percentile(groupGaps, 1)
	for _, n := range perSecond {
		res.peakReconnects = max(res.peakReconnects, n)
	}
	stopRun()
	if err := <-produced; err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return res, nil
}

func kind(c *stormClient) string {
	if c.group == "" {
		return "broadcast"
	}
	return "group"
}

func countClients(clients []*stormClient, ok func(*stormClient) bool) int {
	n := 0
	for _, c := range clients {
		c.mu.Lock()
		if ok(c) {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// waitUntil polls cond until it holds, ctx ends, or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// stabilizedCount counts the broker log's "Stabilized group <topic>-g…" lines (Kafka's group coordinator writes
// one per completed rebalance: a new generation), or -1 without a log. Kafka has no request that returns a
// group's generation to an outsider, so its own log is the only count of rebalances.
func (b *bench) stabilizedCount(topic string) int {
	if b.cfg.kafkaLog == "" {
		return -1
	}
	f, err := os.Open(b.cfg.kafkaLog)
	if err != nil {
		return -1
	}
	defer func() { _ = f.Close() }() // read-only, or done with
	needle := "Stabilized group " + topic + "-g"
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), needle) {
			n++
		}
	}
	return n
}

// reloadRows renders the storm's figures as rows of the report.
func (b *bench) reloadRows(row func(scenario, figure, result, target string)) {
	for _, r := range b.reloadResult {
		name := fmt.Sprintf("reload storm: %d broadcast + %d group subscribers (groups of %d), %d msg/s, %s",
			r.broadcast, r.group, r.size, b.cfg.reloadRate, r.label)
		row(name, "sockets closed with 1012 (from / to, after POST /load)", fmt.Sprintf("%d (%s / %s)", r.closed, fmtDur(r.firstClose), fmtDur(r.lastClose)), "")
		row(name, "all resubscribed after", fmtDur(r.resubscribed), "")
		row(name, "all receiving again after", fmtDur(r.receiving), "")
		row(name, "per client, its 1012 to receiving again: p50 / max (group subscribers: p50 / max)",
			fmt.Sprintf("%s / %s (%s / %s)", fmtDur(r.gapP50), fmtDur(r.gapMax), fmtDur(r.groupGapP50), fmtDur(r.groupGapMax)), "")
		row(name, "peak reconnects per second", fmt.Sprint(r.peakReconnects), "")
		row(name, "group rebalances (the broker's Stabilized group lines)", fmtCount(r.rebalances), "")
		row(name, "clients recovered; subscribes retried", fmt.Sprintf("%d / %d; %s", r.recovered, r.broadcast+r.group, fmtCodes(r.retried)), "")
	}
}
