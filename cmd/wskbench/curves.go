package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// curvePoint is one broadcast run of the curves.
type curvePoint struct {
	sweep string // "subscribers" or "rate"
	*peerResult
}

// curves measures wskafka in broadcast mode (the peer scenario's run, wskafka alone) over a sweep of subscriber
// counts at one rate, then over a sweep of rates at one subscriber count, and draws CPU per delivery, p99 and RSS
// per subscribed socket against each, with the peer and scale scenarios' points of the same run beside them.
func (b *bench) curves(ctx context.Context) error {
	for _, n := range b.cfg.curveSubs {
		res, err := b.peerRun(ctx, "wskafka", n, b.cfg.curveRate, b.cfg.curveDuration)
		if err != nil {
			return fmt.Errorf("%d subscribers: %w", n, err)
		}
		b.curveResult = append(b.curveResult, curvePoint{"subscribers", res})
		b.printCurve(res)
	}
	for _, r := range b.cfg.curveRates {
		res, err := b.peerRun(ctx, "wskafka", b.cfg.curveRateSubs, r, b.cfg.curveDuration)
		if err != nil {
			return fmt.Errorf("%d msg/s: %w", r, err)
		}
		b.curveResult = append(b.curveResult, curvePoint{"rate", res})
		b.printCurve(res)
	}
	return nil
}

func (b *bench) printCurve(r *peerResult) {
	fmt.Printf("%d subscribers × %d msg/s (load %.1f): %d/%d delivered, p99 %v, CPU %v/delivery, RSS %.1f KiB per subscribed socket\n",
		r.subscribers, r.rate, r.load, r.delivered, r.sent*int64(r.subscribers), r.p99, r.perDelivery, r.rssPerSocket/1024)
}

// curveFiles are the two pictures of the run: against subscribers, and against the record rate.
func (b *bench) curveFiles() (subscribers, rate string) {
	suffix := ""
	if !b.kafka.embedded {
		suffix = "-kafka"
	}
	return "bench/curves-subscribers" + suffix + ".svg", "bench/curves-rate" + suffix + ".svg"
}

// writeCurves draws the curves of the run, when there are any.
func (b *bench) writeCurves() ([]string, error) {
	if len(b.curveResult) == 0 {
		return nil, nil // the pictures of an earlier run stay as they are
	}
	subsPath, ratePath := b.curveFiles()
	figures := func(xOf func(*peerResult) float64, pick func(curvePoint) bool) (cpu, p99, rss []point) {
		for _, c := range b.curveResult {
			if !pick(c) {
				continue
			}
			x := xOf(c.peerResult)
			cpu = append(cpu, point{x, float64(c.perDelivery) / float64(time.Microsecond)})
			p99 = append(p99, point{x, float64(c.p99) / float64(time.Millisecond)})
			rss = append(rss, point{x, c.rssPerSocket / 1024})
		}
		return
	}
	subscribers := func(r *peerResult) float64 { return float64(r.subscribers) }
	var written []string

	// Against subscribers: the sweep, the scale runs (1 msg/s, many instances), and the peer runs of the same run.
	cpu, p99, rss := figures(subscribers, func(c curvePoint) bool { return c.sweep == "subscribers" })
	sweepName := fmt.Sprintf("wskafka, %d msg/s", b.cfg.curveRate)
	panels := []chartPanel{
		{title: "CPU per delivery", xLabel: "subscribers", yLabel: "µs of the server's CPU", logX: true},
		{title: "p99 latency", xLabel: "subscribers", yLabel: "ms, record sent to socket read", logX: true, logY: true},
		{title: "RSS per subscribed socket", xLabel: "subscribers", yLabel: "KiB", logX: true},
	}
	add := func(name, color string, cpu, p99, rss []point) {
		if len(cpu) == 0 {
			return
		}
		panels[0].series = append(panels[0].series, series{name, color, cpu})
		panels[1].series = append(panels[1].series, series{name, color, p99})
		panels[2].series = append(panels[2].series, series{name, color, rss})
	}
	add(sweepName, "#2a6fb0", cpu, p99, rss)
	var sc, sp, sr []point
	for _, r := range b.scaleResult {
		x := float64(r.sockets)
		sc = append(sc, point{x, float64(r.perDelivery) / float64(time.Microsecond)})
		sp = append(sp, point{x, float64(r.p99) / float64(time.Millisecond)})
		sr = append(sr, point{x, r.rssPerSocket / 1024})
	}
	add(fmt.Sprintf("wskafka, %d msg/s (scale runs)", b.cfg.scaleRate), "#3a9a4a", sc, sp, sr)
	for _, peer := range []struct{ name, color string }{{"wskafka", "#7a4ab0"}, {"centrifugo", "#d0502a"}} {
		var pc, pp, pr []point
		for _, p := range b.peerResult {
			r := p.wskafka
			if peer.name == "centrifugo" {
				r = p.peer
			}
			if r == nil {
				continue
			}
			x := float64(r.subscribers)
			pc = append(pc, point{x, float64(r.perDelivery) / float64(time.Microsecond)})
			pp = append(pp, point{x, float64(r.p99) / float64(time.Millisecond)})
			pr = append(pr, point{x, r.rssPerSocket / 1024})
		}
		add(peer.name+" (peer runs)", peer.color, pc, pp, pr)
	}
	if len(panels[0].series) > 0 {
		caption := fmt.Sprintf("%s broker, %s; broadcast mode, mq_interval 0", b.env.section(), b.env.date)
		if len(b.peerResult) > 0 {
			caption += fmt.Sprintf("; peer runs: %s msg/s at %s subscribers", joinInts(b.cfg.peerRates), joinInts(b.cfg.peerSubs))
		}
		if err := writeCharts(subsPath, caption, panels); err != nil {
			return nil, err
		}
		written = append(written, subsPath)
	}

	// Against the record rate, at one subscriber count.
	cpu, p99, rss = figures(func(r *peerResult) float64 { return float64(r.rate) }, func(c curvePoint) bool { return c.sweep == "rate" })
	if len(cpu) > 0 {
		name := fmt.Sprintf("wskafka, %d subscribers", b.cfg.curveRateSubs)
		panels := []chartPanel{
			{title: "CPU per delivery", xLabel: "records per second", yLabel: "µs of the server's CPU", logX: true, series: []series{{name, "#2a6fb0", cpu}}},
			{title: "p99 latency", xLabel: "records per second", yLabel: "ms, record sent to socket read", logX: true, logY: true, series: []series{{name, "#2a6fb0", p99}}},
			{title: "RSS per subscribed socket", xLabel: "records per second", yLabel: "KiB", logX: true, series: []series{{name, "#2a6fb0", rss}}},
		}
		caption := fmt.Sprintf("%s broker, %s; broadcast mode, mq_interval 0, %d subscribers", b.env.section(), b.env.date, b.cfg.curveRateSubs)
		if err := writeCharts(ratePath, caption, panels); err != nil {
			return nil, err
		}
		written = append(written, ratePath)
	}
	return written, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// curveRows adds a row per point of the curves.
func (b *bench) curveRows(row func(scenario, figure, result, target string)) {
	for _, c := range b.curveResult {
		name := fmt.Sprintf("curve (%s): %d broadcast subscribers, R=%d msg/s, D=%v", c.sweep, c.subscribers, c.rate, b.cfg.curveDuration)
		row(name, "delivered / expected; p50 / p99 / max; CPU per delivery; RSS per subscribed socket (load)",
			fmt.Sprintf("%d / %d; %s / %s / %s; %s; %.1f KiB (load %.1f)", c.delivered, c.sent*int64(c.subscribers), fmtDur(c.p50), fmtDur(c.p99), fmtDur(c.max),
				fmtDur(c.perDelivery), c.rssPerSocket/1024, c.load), "")
	}
}
