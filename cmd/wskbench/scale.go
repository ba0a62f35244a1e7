package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// Bounds of the scale scenario.
const (
	scaleSubscribeTimeout = 10 * time.Minute // one worker dialling and subscribing its share
	scaleFileHeadroom     = 1000             // files a process keeps for itself (Kafka, logs, listeners)
	scaleSourceBase       = "127.0.1.1"      // the first source address; worker w binds scaleSourceBase + w
)

// scaleResult is one run of the scale scenario: many sockets across several Caddy instances and tool processes.
type scaleResult struct {
	sockets, caddies, workers int
	sources                   string // the source addresses the workers bound
	rate                      int
	latencyResult
	rssPerSocket  float64       // bytes of the Caddies' RSS per subscribed socket
	idleCPU       time.Duration // the Caddies' CPU over idleWindow with every socket subscribed and no record
	idleWindow    time.Duration
	perDelivery   time.Duration
	toolCPU       time.Duration  // the workers' CPU while the producer ran
	subscribeTime time.Duration  // from the first worker started to the last subscribed
	retried       map[string]int // subscribes refused and tried again, by error code
	load, loadEnd float64
}

// scale holds scaleSockets sockets subscribed in broadcast mode to one topic, spread over as many Caddy instances
// as the file limit asks (at most scalePerCaddy sockets each: a process here may hold 20,000 open files) and as
// many tool processes (workers: this binary again, with -scale-worker), each binding its sockets to a loopback
// source address of its own, so that no address needs more ephemeral ports than one has (about 28,000). Each Caddy
// reads the topic once. It then measures idle CPU, and the latency of every delivery at scaleRate msg/s.
func (b *bench) scale(ctx context.Context) error {
	for _, total := range b.cfg.scaleSockets {
		res, err := b.scaleRun(ctx, total)
		if err != nil {
			return fmt.Errorf("%d sockets: %w", total, err)
		}
		b.scaleResult = append(b.scaleResult, *res)
		fmt.Printf("%d sockets on %d Caddy (load %.1f → %.1f): %d/%d delivered, p50 %v, p99 %v, max %v; RSS %.1f KiB per subscribed socket; idle CPU %v in %v; CPU %v/delivery; tool workers' CPU %v; %d sockets closed by the server\n",
			total, res.caddies, res.load, res.loadEnd, res.delivered, res.sent*int64(total), res.p50, res.p99, res.max, res.rssPerSocket/1024,
			res.idleCPU, res.idleWindow, res.perDelivery, res.toolCPU, res.closed)
	}
	return nil
}

// scaleWorker is one tool process holding a share of the sockets.
type scaleWorker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   *bufio.Scanner
	out     string // where it writes its latencies
	sockets int
}

func (b *bench) scaleRun(ctx context.Context, total int) (*scaleResult, error) {
	perCaddy := min(b.cfg.scalePerCaddy, fileLimit()-scaleFileHeadroom)
	perWorker := min(b.cfg.scalePerWorker, fileLimit()-scaleFileHeadroom)
	if perCaddy <= 0 || perWorker <= 0 {
		return nil, fmt.Errorf("file limit %d leaves no room for sockets", fileLimit())
	}
	res := &scaleResult{sockets: total, caddies: (total + perCaddy - 1) / perCaddy, rate: b.cfg.scaleRate, idleWindow: b.cfg.scaleIdleWindow, load: loadAverage()}
	topic := b.topic(fmt.Sprintf("scale-%d", total))
	if err := b.kafka.createTopic(ctx, topic); err != nil {
		return nil, err
	}
	defer func() { _ = b.kafka.deleteTopic(context.Background(), topic) }() // best effort: the broker may be gone

	// The Caddies, each with one subscriber of the tool's own that reads the probes: then every instance reads the
	// topic, and what it makes once is not counted per socket.
	var caddies []*caddyProcess
	defer func() {
		for _, c := range caddies {
			c.stop()
		}
	}()
	var before []int64
	for i := range res.caddies {
		c, err := b.startCaddy(ctx, i == 0 && b.cfg.scaleProfile != "")
		if err != nil {
			return nil, err
		}
		caddies = append(caddies, c)
		warm, err := subscribeSet(ctx, wskafkaEndpoint(c, "/ws0", topic), 1, 1, sourceAddrs{})
		if err != nil {
			return nil, err
		}
		defer warm.close()
		if err := b.waitFrames(ctx, warm, topic, []byte("probe"), peerProbeTimeout); err != nil {
			return nil, err
		}
	}
	time.Sleep(time.Second)
	for _, c := range caddies {
		rss, err := testkit.ResidentBytes(c.Pid())
		if err != nil {
			return nil, err
		}
		before = append(before, rss)
	}

	// The workers: each Caddy's share split into workers of at most perWorker sockets.
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var workers []*scaleWorker
	defer func() {
		for _, w := range workers {
			_ = w.stdin.Close()
			done := make(chan struct{})
			go func() { _ = w.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = w.cmd.Process.Kill()
				<-done
			}
		}
	}()
	base := net.ParseIP(scaleSourceBase).To4()
	started := time.Now()
	for ci, c := range caddies {
		share := total / res.caddies
		if ci < total%res.caddies {
			share++
		}
		for share > 0 {
			n := min(share, perWorker)
			share -= n
			src := sourceAddrs{base: base, perAddr: 1}.of(len(workers)).(*net.TCPAddr).IP
			profile := ""
			if len(workers) == 0 && b.cfg.scaleProfile != "" {
				profile = b.cfg.scaleProfile + "-worker.pprof"
			}
			w, err := b.startWorker(ctx, self, c.url("/ws0"), topic, src, n, len(workers), profile)
			if err != nil {
				return nil, err
			}
			workers = append(workers, w)
		}
	}
	res.workers = len(workers)
	last := sourceAddrs{base: base, perAddr: 1}.of(len(workers) - 1).(*net.TCPAddr).IP
	res.sources = fmt.Sprintf("%s–%s", base, last)
	if len(workers) == 1 {
		res.sources = base.String()
	}
	fmt.Printf("  %d sockets: %d Caddy instances (at most %d sockets each: the file limit is %d per process), each reading the topic once; "+
		"%d tool worker processes (at most %d sockets each), worker i binding its sockets to source address %s + i (%s)\n",
		total, res.caddies, perCaddy, fileLimit(), res.workers, perWorker, scaleSourceBase, res.sources)
	// Every worker subscribed: each prints one line when its share is.
	res.retried = map[string]int{}
	for i, w := range workers {
		line, err := w.line()
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		_, retried, ok := strings.Cut(line, "; retried ")
		if !strings.HasPrefix(line, "subscribed") || !ok {
			return nil, fmt.Errorf("worker %d: %q, want subscribed", i, line)
		}
		if err := addCodes(res.retried, retried); err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
	}
	res.subscribeTime = time.Since(started)
	fmt.Printf("  all %d subscribed in %v; subscribes retried: %s\n", total, res.subscribeTime.Round(time.Millisecond), fmtCodes(res.retried))
	time.Sleep(peerSettle)
	for i, c := range caddies {
		rss, err := testkit.ResidentBytes(c.Pid())
		if err != nil {
			return nil, err
		}
		res.rssPerSocket += float64(rss - before[i])
	}
	res.rssPerSocket /= float64(total)
	if b.cfg.scaleProfile != "" {
		if err := caddies[0].heapProfile(ctx, b.cfg.scaleProfile+"-heap.pprof"); err != nil {
			return nil, err
		}
		if err := caddies[0].fetchPprof(ctx, "goroutine", time.Minute, b.cfg.scaleProfile+"-goroutine.pprof"); err != nil {
			return nil, err
		}
		if err := caddies[0].fetchDebug(ctx, "vars", time.Minute, b.cfg.scaleProfile+"-vars.json"); err != nil {
			return nil, err
		}
	}

	caddyCPU := func() (time.Duration, error) {
		var sum time.Duration
		for _, c := range caddies {
			t, err := testkit.CPUTime(c.Pid())
			if err != nil {
				return 0, err
			}
			sum += t
		}
		return sum, nil
	}
	idleStart, err := caddyCPU()
	if err != nil {
		return nil, err
	}
	if b.cfg.scaleProfile != "" {
		if err := caddies[0].cpuProfile(ctx, int(res.idleWindow.Seconds()), b.cfg.scaleProfile+"-idle.pprof"); err != nil {
			return nil, err
		}
	} else {
		select {
		case <-time.After(res.idleWindow):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	idleEnd, err := caddyCPU()
	if err != nil {
		return nil, err
	}
	res.idleCPU = idleEnd - idleStart

	perSocket := int64(b.cfg.scaleRate) * int64(b.cfg.scaleDuration/time.Millisecond) / 1000
	deadline := time.Now().Add(b.cfg.scaleDuration + drainTimeout)
	for _, w := range workers {
		if _, err := fmt.Fprintf(w.stdin, "expect %d %d\n", perSocket, deadline.UnixNano()); err != nil {
			return nil, err
		}
	}
	workerCPU := func() time.Duration {
		var sum time.Duration
		for _, w := range workers {
			t, _ := testkit.CPUTime(w.cmd.Process.Pid)
			sum += t
		}
		return sum
	}
	cpuStart, err := caddyCPU()
	if err != nil {
		return nil, err
	}
	toolStart := workerCPU()
	profiled := make(chan error, 1)
	if b.cfg.scaleProfile != "" {
		go func() {
			profiled <- caddies[0].cpuProfile(ctx, int(b.cfg.scaleDuration.Seconds()), b.cfg.scaleProfile+"-deliver.pprof")
		}()
	} else {
		profiled <- nil
	}
	sent, err := b.produceValuesAtRate(ctx, topic, b.cfg.scaleRate, b.cfg.scaleDuration, func(now time.Time) []byte {
		return centrifugoCommand(make([]byte, 0, b.cfg.size), now, b.cfg.size)
	})
	if err != nil {
		return nil, err
	}
	if err := <-profiled; err != nil {
		return nil, err
	}
	var closed int
	for i, w := range workers {
		var line string
		if line, err = w.line(); err != nil || !strings.HasPrefix(line, "done") {
			return nil, fmt.Errorf("worker %d: %q: %v", i, line, err)
		}
		var delivered int64
		var c int
		if _, err := fmt.Sscanf(line, "done %d %d", &delivered, &c); err != nil {
			return nil, fmt.Errorf("worker %d: %q: %w", i, line, err)
		}
		closed += c
	}
	cpuEnd, err := caddyCPU()
	if err != nil {
		return nil, err
	}
	res.toolCPU = workerCPU() - toolStart
	var all []time.Duration
	for i, w := range workers {
		l, err := readLatencies(w.out)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		all = append(all, l...)
	}
	res.latencyResult = *newLatencyResult(all)
	res.rate, res.subscribers, res.sent, res.cpu, res.closed = b.cfg.scaleRate, total, sent, cpuEnd-cpuStart, closed
	if res.delivered > 0 {
		res.perDelivery = res.cpu / time.Duration(res.delivered)
	}
	res.loadEnd = loadAverage()
	return res, nil
}

// startWorker starts this binary as a worker holding n sockets to url, bound to src, recording its CPU profile
// while it reads the records to profile (when not empty).
func (b *bench) startWorker(ctx context.Context, self, url, topic string, src net.IP, n, index int, profile string) (*scaleWorker, error) {
	w := &scaleWorker{out: filepath.Join(b.dir, fmt.Sprintf("worker-%d.latencies", index)), sockets: n}
	w.cmd = exec.CommandContext(ctx, self, "-scale-worker", "-worker-url", url, "-worker-n", fmt.Sprint(n),
		"-worker-src", src.String(), "-worker-out", w.out, "-worker-topic", topic, "-worker-profile", profile)
	w.cmd.Stderr = os.Stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w.lines = bufio.NewScanner(stdout)
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a worker: %w", err)
	}
	return w, nil
}

func (w *scaleWorker) line() (string, error) {
	if !w.lines.Scan() {
		if err := w.lines.Err(); err != nil {
			return "", err
		}
		return "", errors.New("the worker exited")
	}
	return w.lines.Text(), nil
}

// runWorker is the tool as a scale worker (-scale-worker): it subscribes its sockets, says "subscribed", waits for
// "expect <records per socket> <deadline ns>" on stdin, reads until every record arrived or the deadline, writes
// every latency (int64 ns, little endian) to -worker-out and says "done <delivered> <closed by the server>".
func runWorker(args []string) error {
	fs := flag.NewFlagSet("wskbench -scale-worker", flag.ExitOnError)
	url := fs.String("worker-url", "", "the WebSocket URL")
	n := fs.Int("worker-n", 0, "sockets")
	src := fs.String("worker-src", "", "the source address to bind")
	out := fs.String("worker-out", "", "where the latencies go")
	topic := fs.String("worker-topic", "", "the topic to subscribe to")
	profile := fs.String("worker-profile", "", "where the CPU profile of reading the records goes (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := raiseFileLimit(*n + scaleFileHeadroom); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaleSubscribeTimeout)
	defer cancel()
	set, err := subscribePolled(ctx, *url, *topic, *n, 64, sourceAddrs{base: net.ParseIP(*src), perAddr: *n + 1})
	if err != nil {
		return err
	}
	fmt.Printf("subscribed %d in %v; retried %s\n", *n, set.subscribe, fmtCodes(set.retried))
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return errors.New("no expect line")
	}
	var perSocket, deadline int64
	if _, err := fmt.Sscanf(in.Text(), "expect %d %d", &perSocket, &deadline); err != nil {
		set.close()
		return fmt.Errorf("%q: %w", in.Text(), err)
	}
	var profileFile *os.File
	if *profile != "" {
		if profileFile, err = os.Create(*profile); err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(profileFile); err != nil {
			return err
		}
	}
	set.expect(perSocket * int64(*n))
	select {
	case <-set.allIn:
	case <-time.After(time.Until(time.Unix(0, deadline))):
	}
	if profileFile != nil {
		pprof.StopCPUProfile()
		if err := profileFile.Close(); err != nil {
			return err
		}
	}
	set.close() // the readers stopped: their latencies are final
	set.warning()
	all := slices.Concat(set.perConn...)
	buf := make([]byte, 0, 8*len(all))
	for _, l := range all {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(l))
	}
	if err := os.WriteFile(*out, buf, 0o644); err != nil {
		return err
	}
	fmt.Printf("done %d %d\n", len(all), set.closed.Load())
	return nil
}

// addCodes adds counts printed by fmtCodes ("kafka_timeout 2, kafka_unavailable 5" or "none") to counts.
func addCodes(counts map[string]int, printed string) error {
	if printed == "none" {
		return nil
	}
	for _, item := range strings.Split(printed, ", ") {
		name, n, ok := strings.Cut(item, " ")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return fmt.Errorf("counts %q: %q is no name and number", printed, item)
		}
		counts[name] += v
	}
	return nil
}

func readLatencies(path string) ([]time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, len(b)/8)
	for i := 0; i+8 <= len(b); i += 8 {
		out = append(out, time.Duration(binary.LittleEndian.Uint64(b[i:])))
	}
	return out, nil
}

// fileLimit is this process's RLIMIT_NOFILE (soft), which the Caddies and workers it starts inherit.
func fileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(lim.Cur)
}

// scaleRows adds the scale scenario's rows with #13's targets.
func (b *bench) scaleRows(row func(scenario, figure, result, target string)) {
	for _, r := range b.scaleResult {
		name := fmt.Sprintf("many sockets: %d broadcast subscribers on %d Caddy, R=%d msg/s, D=%v", r.sockets, r.caddies, r.rate, b.cfg.scaleDuration)
		expected := r.sent * int64(r.sockets)
		row(name, "arranged", fmt.Sprintf("%d Caddy instances, %d tool processes, source addresses %s (load %.1f at the start, %.1f at the end)", r.caddies, r.workers, r.sources, r.load, r.loadEnd), "")
		row(name, "delivered / expected", fmt.Sprintf("%d / %d (%d sockets closed by the server)", r.delivered, expected, r.closed), "")
		row(name, "latency p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max)),
			b.issueTarget(fmt.Sprintf("many sockets, %d on %d Caddy at %d msg/s: every record delivered, p99", r.sockets, r.caddies, r.rate), r.delivered == expected && r.p99 <= 250*time.Millisecond, "all delivered, p99 ≤ 250 ms",
				fmt.Sprintf("%d/%d, p99 %s, load %.1f", r.delivered, expected, fmtDur(r.p99), r.load)))
		row(name, "RSS per subscribed socket", fmt.Sprintf("%.1f KiB", r.rssPerSocket/1024), b.issueTarget(fmt.Sprintf("many sockets, %d: RSS per subscribed socket", r.sockets), r.rssPerSocket <= 25*1024, "≤ 25 KiB", fmt.Sprintf("%.1f KiB", r.rssPerSocket/1024)))
		// Idle, each instance still long-polls its topic (a fetch per partition every fetch_max_wait): the target is
		// per instance, not per socket.
		perCaddy := r.idleCPU / time.Duration(r.caddies)
		row(name, "idle CPU (every socket subscribed, no record), per Caddy", fmt.Sprintf("%s in %v (%.2f%% of a core)", fmtDur(perCaddy), r.idleWindow, 100*perCaddy.Seconds()/r.idleWindow.Seconds()),
			b.issueTarget(fmt.Sprintf("many sockets, %d: idle CPU", r.sockets), perCaddy <= r.idleWindow/100, "nil (≤ 1% of a core per instance)", fmt.Sprintf("%s in %v per Caddy", fmtDur(perCaddy), r.idleWindow)))
		row(name, "Caddy CPU per delivery; the tool's CPU", fmt.Sprintf("%s; %s", fmtDur(r.perDelivery), fmtDur(r.toolCPU)), "")
		row(name, "all subscribed in; subscribes retried", fmtDur(r.subscribeTime)+"; "+fmtCodes(r.retried), "")
	}
}
