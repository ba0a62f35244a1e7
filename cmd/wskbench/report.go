package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// environment is what a reader needs to compare a result with another: where and how it was measured.
type environment struct {
	date, machine, goVersion, caddyVersion, kafkaVersion, command string
	embedded                                                      bool
	peerVersion                                                   string // Centrifugo's, once installed
}

func describeEnv(cfg config, k *kafkaCluster) environment {
	return environment{
		date:         time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		machine:      machine(),
		goVersion:    runtime.Version(),
		caddyVersion: caddyVersion(cfg.caddyBin),
		kafkaVersion: k.version,
		command:      strings.Join(append([]string{"wskbench"}, os.Args[1:]...), " "),
		embedded:     k.embedded,
	}
}

// section names the part of the results file this run replaces: one per kind of broker.
func (e environment) section() string {
	if e.embedded {
		return "embedded"
	}
	return "kafka"
}

func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close() // read-only
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		_, _ = fmt.Sscanf(string(b), "MemTotal: %d kB", &kb) // no MemTotal: no figure
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d CPUs (%s)%s, Linux %s", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)))
}

func caddyVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	home, err := os.MkdirTemp("", "wskbench-version-")
	if err != nil {
		return "unknown"
	}
	defer func() { _ = os.RemoveAll(home) }() // best effort: a temp folder
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(out) + " unknown")[0]
}

// report renders the run as markdown: conditions, then one row per figure with its target.
func (b *bench) report() string {
	var w bytes.Buffer
	e := b.env
	b.targets = nil
	fmt.Fprintf(&w, "### %s broker, %s\n\n", e.section(), e.date)
	row := b.reportHeader(&w)
	if p := b.produceResult; p != nil {
		name := fmt.Sprintf("produce: C=%d, N=%d, S=%d B, median of %d", p.conns, p.messages, p.size, len(p.rounds))
		row(name, "bridge rate", fmt.Sprintf("%.0f msg/s", p.medianBridge), "")
		row(name, "raw kafka-go Writer rate (async, batches of 1000)", fmt.Sprintf("%.0f msg/s", p.medianRaw), "")
		row(name, "bridge / raw", fmt.Sprintf("%.2f", p.medianRatio), b.issueTarget("produce: bridge / raw kafka-go rate", p.medianRatio >= 0.45, "≥ 0.45", fmt.Sprintf("%.2f", p.medianRatio)))
		cpuTarget := "≤ 1.0 µs (100 B), embedded"
		if e.embedded {
			cpuTarget = b.issueTarget("produce: Caddy CPU per 100-byte publish, embedded", p.medianCPU <= time.Microsecond, cpuTarget, fmtDur(p.medianCPU))
		} else {
			cpuTarget = "(#13's ≤ 1.0 µs is for the embedded broker)"
		}
		row(name, "Caddy CPU per published message", fmtDur(p.medianCPU), cpuTarget)
		var rounds []string
		for _, r := range p.rounds {
			rounds = append(rounds, fmt.Sprintf("%.0f/%.0f=%.2f, %s", r.bridgeRate, r.rawRate, r.bridgeRate/r.rawRate, fmtDur(r.bridgeCPU)))
		}
		row(name, "rounds (bridge/raw msg/s = ratio, CPU/msg)", strings.Join(rounds, "; "), "")
	}
	for _, c := range b.consumeResult {
		name := fmt.Sprintf("consume: 1 subscriber, %s, R=%d msg/s, D=%v, S=%d B", c.label, c.rate, b.cfg.duration, b.cfg.size)
		target := ""
		if c.label == "mq_interval 0" {
			switch c.rate {
			case 5000:
				target = verdict(c.delivered == c.sent && c.p99 <= 5*time.Millisecond, "all delivered, p99 ≤ 5 ms")
			case 20000:
				target = verdict(c.p99 <= 10*time.Millisecond, "p99 ≤ 10 ms")
				for _, raw := range b.consumeResult {
					if raw.label == rawLabel && raw.rate == c.rate {
						target += "; " + b.issueTarget("consume at 20,000 msg/s: p99 against the raw franz-go consumer's", c.p99 <= 2*raw.p99 && c.delivered == c.sent, "≤ 2 × raw",
							fmt.Sprintf("%s against %s raw: %.2f ×", fmtDur(c.p99), fmtDur(raw.p99), float64(c.p99)/float64(max(raw.p99, 1))))
					}
				}
			}
		}
		row(name, "delivered / sent", fmt.Sprintf("%d / %d", c.delivered, c.sent), "")
		row(name, "latency p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtDur(c.p50), fmtDur(c.p99), fmtDur(c.max)), target)
	}
	if i := b.idleResult; i != nil {
		name := fmt.Sprintf("idle: K=%d sockets", i.sockets)
		row(name, "Caddy RSS before / after", fmt.Sprintf("%.1f MiB / %.1f MiB", mib(i.rssBefore), mib(i.rssAfter)), "")
		row(name, "RSS per socket", fmt.Sprintf("%.1f KiB (%.0f sockets per GiB)", i.perSocket/1024, i.perGiB),
			verdict(i.perGiB >= 28000, "≥ 28,000 per GiB (≤ 36 KiB)"))
		row(name, "idle CPU", fmt.Sprintf("%s in %v (%.2f%% of a core)", fmtDur(i.idleCPU), i.window.Round(time.Second), 100*i.idleCPU.Seconds()/i.window.Seconds()), "")
	}
	for _, f := range b.fanoutResult {
		name := fmt.Sprintf("fan-out: %s, %d subscribers, R=%d msg/s, D=%v, mq_interval 0", f.mode, f.subscribers, f.rate, b.cfg.fanoutDuration)
		target := ""
		if f.mode == "broadcast" {
			target = verdict(f.p99 <= 50*time.Millisecond && f.delivered == f.sent*int64(f.subscribers), "all delivered, p99 ≤ 50 ms (1,000 × 100 msg/s)")
		}
		row(name, "delivered / expected", fmt.Sprintf("%d / %d (%d sockets closed by the server)", f.delivered, f.sent*int64(f.subscribers), f.closed), "")
		row(name, "deliveries per second", fmt.Sprintf("%.0f", f.perSecond), "")
		row(name, "latency p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtDur(f.p50), fmtDur(f.p99), fmtDur(f.max)), target)
		row(name, "Caddy CPU per delivery", fmtDur(f.perDelivery), "")
	}
	b.writeTargets(&w)
	if p := b.produceResult; p != nil && p.profilePath != "" {
		fmt.Fprintf(&w, "\nCPU profile of Caddy during an extra produce round (%d publishes in %d s): `%s`.\n", p.profileMessages, p.profileSeconds, p.profilePath)
	}
	if b.cfg.fanoutProfile != "" && len(b.fanoutResult) > 0 && b.fanoutResult[0].mode == "broadcast" {
		fmt.Fprintf(&w, "\nCPU profile of Caddy during the broadcast fan-out, while the producer ran: `%s`.\n", b.cfg.fanoutProfile)
	}
	if b.cfg.consumeProfile != "" && len(b.consumeResult) > 0 {
		fmt.Fprintf(&w, "\nCPU profile of Caddy during the consume run with mq_interval 0 at %d msg/s, while the producer ran: `%s`.\n", slices.Max(b.cfg.rates), b.cfg.consumeProfile)
	}
	if b.cfg.plot != "" && len(b.consumeResult)+len(b.fanoutResult) > 0 {
		fmt.Fprintf(&w, "\nLatency histograms: `%s`.\n", b.cfg.plot)
	}

	return w.String()
}

// reportHeader writes the conditions of the run and the table's head, and returns the function that adds a row.
func (b *bench) reportHeader(w *bytes.Buffer) func(scenario, figure, result, target string) {
	e := b.env
	broker := "embedded: franz-go kfake in the tool's process, shared with Caddy over loopback"
	if !e.embedded {
		broker = "Apache Kafka " + e.kafkaVersion + " at " + strings.Join(b.kafka.brokers, ",")
	}
	fmt.Fprintf(w, "- machine: %s\n- Go %s, Caddy %s, broker: %s\n- command: `%s`\n", e.machine, e.goVersion, e.caddyVersion, broker, e.command)
	fmt.Fprintf(w, "- topics: %d partitions, replication 1, fresh per run\n\n", b.cfg.partitions)
	fmt.Fprintf(w, "| scenario | figure | result | target |\n|---|---|---|---|\n")
	return func(scenario, figure, result, target string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", scenario, figure, result, target)
	}
}

// writeTargets lists the targets of #13 met or missed in the section just rendered.
func (b *bench) writeTargets(w *bytes.Buffer) {
	if len(b.targets) > 0 {
		fmt.Fprintf(w, "\nThe targets of #13 measured in this run:\n\n%s\n", strings.Join(b.targets, "\n"))
	}
}

// scaleReport renders the many-sockets runs as markdown, a section of their own, with their targets.
func (b *bench) scaleReport() string {
	var w bytes.Buffer
	b.targets = nil
	fmt.Fprintf(&w, "### %s broker, many sockets, %s\n\n", b.env.section(), b.env.date)
	b.scaleRows(b.reportHeader(&w))
	b.writeTargets(&w)
	return w.String()
}

// peerReport renders the peer, the subscribe storms and the curves as markdown, a section of their own.
func (b *bench) peerReport() string {
	var w bytes.Buffer
	b.targets = nil
	fmt.Fprintf(&w, "### %s broker, against Centrifugo, subscribe storms, curves, %s\n\n", b.env.section(), b.env.date)
	if b.env.peerVersion != "" {
		how := "`go install`ed by the tool"
		if b.cfg.centrifugoBin != "" {
			how = "the binary given with -centrifugo"
		}
		fmt.Fprintf(&w, "- peer: Centrifugo %s (%s, %s), memory broker, its Kafka consumer reading publish commands\n", b.env.peerVersion, centrifugoModule, how)
	}
	row := b.reportHeader(&w)
	b.peerRows(row)
	b.stormRows(row)
	b.curveRows(row)
	b.writeTargets(&w)
	for _, p := range b.curvePictures {
		fmt.Fprintf(&w, "\n![%s](%s)\n", strings.TrimSuffix(filepath.Base(p), ".svg"), p)
	}
	return w.String()
}

// reloadReport renders the reload storm as markdown, a section of its own.
func (b *bench) reloadReport() string {
	var w bytes.Buffer
	fmt.Fprintf(&w, "### %s broker, reload storm, %s\n\n", b.env.section(), b.env.date)
	b.reloadRows(b.reportHeader(&w))
	return w.String()
}

// issueTarget is verdict for a target of #13, also listed under the table with the figure that decides it.
func (b *bench) issueTarget(what string, met bool, target, figure string) string {
	v := verdict(met, target)
	b.targets = append(b.targets, fmt.Sprintf("- %s: %s (%s)", what, v, figure))
	return v
}

func verdict(met bool, target string) string {
	if met {
		return target + ": met"
	}
	return target + ": **missed**"
}

// fmtDur prints a duration with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3g s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3g ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3g µs", float64(d)/float64(time.Microsecond))
	}
}

// writeSection replaces the part of path between this section's markers with body, or appends it.
func writeSection(path, section, body string) error {
	begin := fmt.Sprintf("<!-- wskbench:begin %s -->\n", section)
	end := fmt.Sprintf("<!-- wskbench:end %s -->\n", section)
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	block := begin + body + end
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(end):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s += "\n"
		}
		s += block
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
