package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// Bounds of the peer scenario.
const (
	peerProbeTimeout = 60 * time.Second // until a server reads its topic (Centrifugo's consumer group joins)
	peerSettle       = 2 * time.Second  // after the last subscribe, before memory is read
)

// peerResult is one server's run of the peer scenario.
type peerResult struct {
	server string
	latencyResult
	perDelivery   time.Duration // the server's CPU per delivery
	rssPerSocket  float64       // bytes of the server's RSS per subscribed socket
	subscribeTime time.Duration // dialling, handshake and subscribe of every socket
	load          float64       // the 1-minute load average when the run started
}

// peerPair is the two servers' runs at one size, side by side.
type peerPair struct {
	subscribers, rate int
	round             int // 1, 2, …: the pairs at one size, each in the other order than the last
	wskafka, peer     *peerResult
}

// peer runs the same subscriber code against wskafka and Centrifugo, both fed the same records (Centrifugo server
// API publish commands, which wskafka delivers as they are) from a fresh Kafka topic each, alternating runs at
// every size. The topic is fresh per run because Centrifugo's consumer group starts at the beginning of a topic it
// has no commit for (franz-go's default reset offset; v6's kafka consumer has no setting for it), so a topic
// shared between runs would replay the other server's records into its channel.
func (b *bench) peer(ctx context.Context) error {
	bin, err := installCentrifugo(ctx, b.cfg.centrifugoBin, b.cfg.centrifugoVersion, b.dir)
	if err != nil {
		return err
	}
	b.centrifugoBin = bin
	b.env.peerVersion = centrifugoVersion(bin)
	turn := 0
	for i, subs := range b.cfg.peerSubs {
		for round := range b.cfg.peerRounds {
			if err := b.peerPairRun(ctx, subs, b.cfg.peerRates[min(i, len(b.cfg.peerRates)-1)], round+1, turn); err != nil {
				return err
			}
			turn++
		}
	}
	return nil
}

// peerPairRun runs both servers once at one size, wskafka first on even turns and Centrifugo first on odd ones, so
// that neither always runs on the machine the other has just warmed or loaded.
func (b *bench) peerPairRun(ctx context.Context, subs, rate, round, turn int) error {
	pair := peerPair{subscribers: subs, rate: rate, round: round}
	order := []string{"wskafka", "centrifugo"}
	if turn%2 == 1 {
		order = []string{"centrifugo", "wskafka"}
	}
	for _, server := range order {
		res, err := b.peerRun(ctx, server, subs, rate, b.cfg.peerDuration)
		if err != nil {
			return fmt.Errorf("%s, %d subscribers: %w", server, subs, err)
		}
		if server == "wskafka" {
			pair.wskafka = res
		} else {
			pair.peer = res
		}
		fmt.Printf("%s, %d subscribers × %d msg/s for %v (load %.1f): %d/%d delivered, p50 %v, p99 %v, max %v, CPU %v/delivery, RSS %.1f KiB per subscribed socket, subscribed in %v, %d sockets closed by the server\n",
			server, subs, rate, b.cfg.peerDuration, res.load, res.delivered, res.sent*int64(subs), res.p50, res.p99, res.max,
			res.perDelivery, res.rssPerSocket/1024, res.subscribeTime.Round(time.Millisecond), res.closed)
	}
	b.peerResult = append(b.peerResult, pair)
	return nil
}

// peerRun starts one server, subscribes the sockets, and produces rate records a second for duration.
func (b *bench) peerRun(ctx context.Context, server string, subs, rate int, duration time.Duration) (*peerResult, error) {
	b.peerRuns++
	topic := b.topic(fmt.Sprintf("peer-%s-%d-%d", server, subs, b.peerRuns))
	if err := b.kafka.createTopic(ctx, topic); err != nil {
		return nil, err
	}
	defer func() { _ = b.kafka.deleteTopic(context.Background(), topic) }() // best effort: the broker may be gone
	var ep endpoint
	var profile bool
	var profiler *caddyProcess
	switch server {
	case "wskafka":
		profile = b.cfg.peerProfile != "" && !b.peerProfiled
		caddy, err := b.startCaddy(ctx, profile)
		if err != nil {
			return nil, err
		}
		defer caddy.stop()
		ep = wskafkaEndpoint(caddy, "/ws0", topic)
		profiler = caddy
	default:
		c, err := b.startCentrifugo(ctx, topic, topic+"-group")
		if err != nil {
			return nil, err
		}
		defer c.stop()
		ep = centrifugoEndpoint(c)
	}
	res := &peerResult{server: server, load: loadAverage()}
	// One subscriber first, reading the probes: then the server reads the topic (Centrifugo's consumer group has
	// joined) and what it makes once (clients, readers, buffers) is not counted per socket.
	warm, err := subscribeSet(ctx, ep, 1, 1, sourceAddrs{})
	if err != nil {
		return nil, err
	}
	defer warm.close()
	probe := centrifugoProbe()
	if err := b.waitFrames(ctx, warm, topic, probe, peerProbeTimeout); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	before, err := testkit.ResidentBytes(ep.pid)
	if err != nil {
		return nil, err
	}
	set, err := subscribeSet(ctx, ep, subs, 64, sourceAddrs{})
	if err != nil {
		return nil, err
	}
	defer set.close()
	res.subscribeTime = set.subscribe
	time.Sleep(peerSettle)
	after, err := testkit.ResidentBytes(ep.pid)
	if err != nil {
		return nil, err
	}
	res.rssPerSocket = float64(after-before) / float64(subs)

	want := int64(rate) * int64(duration/time.Millisecond) / 1000
	set.expect(want * int64(subs))
	meter, err := startCPU(ep.pid)
	if err != nil {
		return nil, err
	}
	profiled := make(chan error, 1)
	if profile {
		b.peerProfiled = true
		go func() { profiled <- profiler.cpuProfile(ctx, int(duration.Seconds()), b.cfg.peerProfile) }()
	} else {
		profiled <- nil
	}
	start := time.Now()
	sent, err := b.produceValuesAtRate(ctx, topic, rate, duration, func(now time.Time) []byte {
		return centrifugoCommand(make([]byte, 0, b.cfg.size), now, b.cfg.size)
	})
	if err != nil {
		return nil, err
	}
	if err := <-profiled; err != nil {
		return nil, err
	}
	select {
	case <-set.allIn:
	case <-time.After(drainTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cpu, _, err := meter.stop()
	if err != nil {
		return nil, err
	}
	set.warning()
	res.latencyResult = *set.latencies()
	res.rate, res.subscribers, res.sent, res.cpu = rate, subs, sent, cpu
	if end := time.Unix(0, set.last.Load()); end.After(start) {
		res.wall = end.Sub(start)
	}
	if res.delivered > 0 {
		res.perDelivery = cpu / time.Duration(res.delivered)
	}
	return res, nil
}

// centrifugoProbe is a publish command without a send time: the subscribers read it, and count nothing.
func centrifugoProbe() []byte {
	return []byte(`{"method":"publish","payload":{"channel":"` + centrifugoChannel + `","data":{"probe":true}}}`)
}

// peerRows adds the peer scenario's rows: each server's figures, then the ratios against the targets of #13 (with
// several rounds, each round's ratios, and the targets judged on their medians).
func (b *bench) peerRows(row func(scenario, figure, result, target string)) {
	rounds := b.cfg.peerRounds > 1
	for i, p := range b.peerResult {
		name := fmt.Sprintf("peer: %d broadcast subscribers, R=%d msg/s, D=%v, S=%d B", p.subscribers, p.rate, b.cfg.peerDuration, b.cfg.size)
		if rounds {
			name += fmt.Sprintf(", round %d", p.round)
		}
		for _, r := range []*peerResult{p.wskafka, p.peer} {
			if r == nil {
				continue
			}
			who := r.server
			if who == "centrifugo" {
				who = "Centrifugo " + b.env.peerVersion
			}
			row(name, who+": delivered / expected (load)", fmt.Sprintf("%d / %d, %d sockets closed by the server (load %.1f)", r.delivered, r.sent*int64(r.subscribers), r.closed, r.load), "")
			row(name, who+": latency p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max)), "")
			row(name, who+": CPU per delivery", fmtDur(r.perDelivery), "")
			row(name, who+": RSS per subscribed socket", fmt.Sprintf("%.1f KiB", r.rssPerSocket/1024), "")
			row(name, who+": all subscribed in", fmtDur(r.subscribeTime), "")
		}
		if p.wskafka == nil || p.peer == nil {
			continue
		}
		w, c := p.wskafka, p.peer
		all := w.delivered == w.sent*int64(w.subscribers) && c.delivered == c.sent*int64(c.subscribers)
		if rounds {
			row(name, "every record delivered by both", fmt.Sprintf("%v", all), "")
			row(name, "wskafka / Centrifugo CPU per delivery", ratio(w.perDelivery, c.perDelivery), "")
			row(name, "wskafka / Centrifugo p99", ratio(w.p99, c.p99), "")
			row(name, "wskafka / Centrifugo RSS per subscribed socket", fmt.Sprintf("%.2f", w.rssPerSocket/c.rssPerSocket), "")
			if i+1 == len(b.peerResult) || b.peerResult[i+1].subscribers != p.subscribers {
				b.peerMedianRows(row, p.subscribers)
			}
			continue
		}
		row(name, "every record delivered by both", fmt.Sprintf("%v", all), b.issueTarget(fmt.Sprintf("peer, %d subscribers: every record delivered by both", p.subscribers), all, "all delivered by both", fmt.Sprintf("wskafka %d/%d, Centrifugo %d/%d", w.delivered, w.sent*int64(w.subscribers), c.delivered, c.sent*int64(c.subscribers))))
		row(name, "wskafka / Centrifugo CPU per delivery", ratio(w.perDelivery, c.perDelivery), b.issueTarget(fmt.Sprintf("peer, %d subscribers: wskafka / Centrifugo CPU per delivery", p.subscribers), w.perDelivery <= c.perDelivery*7/10 && c.perDelivery > 0, "≤ 0.7",
			fmt.Sprintf("%s: %s against %s, load %.1f", ratio(w.perDelivery, c.perDelivery), fmtDur(w.perDelivery), fmtDur(c.perDelivery), w.load)))
		row(name, "wskafka / Centrifugo p99", ratio(w.p99, c.p99), b.issueTarget(fmt.Sprintf("peer, %d subscribers: wskafka / Centrifugo p99", p.subscribers), w.p99 <= c.p99*6/10 && c.p99 > 0, "≤ 0.6",
			fmt.Sprintf("%s: %s against %s", ratio(w.p99, c.p99), fmtDur(w.p99), fmtDur(c.p99))))
		row(name, "wskafka / Centrifugo RSS per subscribed socket", fmt.Sprintf("%.2f", w.rssPerSocket/c.rssPerSocket), "")
	}
}

// peerMedianRows judges the targets at one size on the median ratios of its rounds.
func (b *bench) peerMedianRows(row func(scenario, figure, result, target string), subs int) {
	var cpu, p99 []float64
	all, runs := true, 0
	var cpus, p99s []string
	for _, p := range b.peerResult {
		if p.subscribers != subs || p.wskafka == nil || p.peer == nil {
			continue
		}
		w, c := p.wskafka, p.peer
		runs++
		all = all && w.delivered == w.sent*int64(w.subscribers) && c.delivered == c.sent*int64(c.subscribers)
		cpu = append(cpu, float64(w.perDelivery)/float64(max(c.perDelivery, 1)))
		p99 = append(p99, float64(w.p99)/float64(max(c.p99, 1)))
		cpus = append(cpus, fmt.Sprintf("%.2f (load %.1f)", cpu[len(cpu)-1], w.load))
		p99s = append(p99s, fmt.Sprintf("%.2f", p99[len(p99)-1]))
	}
	name := fmt.Sprintf("peer: %d broadcast subscribers, median of %d rounds", subs, runs)
	row(name, "every record delivered by both, every round", fmt.Sprintf("%v", all), b.issueTarget(fmt.Sprintf("peer, %d subscribers: every record delivered by both", subs), all, "all delivered by both", fmt.Sprintf("%d rounds", runs)))
	row(name, "wskafka / Centrifugo CPU per delivery", fmt.Sprintf("%.2f", median(cpu)), b.issueTarget(fmt.Sprintf("peer, %d subscribers: wskafka / Centrifugo CPU per delivery, median", subs), median(cpu) <= 0.7, "≤ 0.7", "rounds "+strings.Join(cpus, ", ")))
	row(name, "wskafka / Centrifugo p99", fmt.Sprintf("%.2f", median(p99)), b.issueTarget(fmt.Sprintf("peer, %d subscribers: wskafka / Centrifugo p99, median", subs), median(p99) <= 0.6, "≤ 0.6", "rounds "+strings.Join(p99s, ", ")))
}

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}
