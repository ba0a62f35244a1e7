// Command wskbench measures a Caddy binary with the wskafka module against Kafka: publish throughput against a raw
// kafka-go Writer, consume latency against a raw franz-go consumer, the cost of idle sockets, fan-out to many
// subscribers, and a reload storm (every subscriber closed with 1012 by a config reload, and back). Every figure is measured in one run on one broker, next to its baseline, because the machine it
// runs on is rarely quiet.
//
//	go build -o caddy ./cmd/caddy
//	go run ./cmd/wskbench -caddy ./caddy [-brokers host:port,…] [-only produce,consume,idle,fanout,reload] [-out BENCHMARKS.md]
//
// Without -brokers (or KAFKA_BROKERS) it starts franz-go's in-process kfake broker, shared by its own Kafka
// clients and the Caddy processes it starts. It builds nothing; `make bench` builds ./caddy and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is every flag of the tool.
type config struct {
	caddyBin   string
	brokers    []string
	only       []string
	out        string
	plot       string
	profile    string
	profileSec int
	// fanoutProfile is where a CPU profile of Caddy during the broadcast fan-out goes ("": none).
	fanoutProfile string
	// consumeProfile is where a CPU profile of Caddy during the consume run with mq_interval 0 at the highest rate
	// goes ("": none).
	consumeProfile string
	partitions     int
	logDir         string

	// produce
	conns    int
	messages int
	size     int
	rounds   int

	framesPerWrite int

	// consume
	rates    []int
	duration time.Duration

	// idle
	idleSockets int
	idleWindow  time.Duration

	// fanout
	fanoutSubs      int
	fanoutGroupSubs int
	fanoutRate      int
	fanoutDuration  time.Duration

	// reload
	reloadSubs       int
	reloadGroupSubs  int
	reloadGroupSize  int
	reloadRate       int
	reloadCloseDelay time.Duration
	// kafkaLog is the broker's log, whose "Stabilized group" lines count the storm's rebalances ("": unknown).
	kafkaLog string

	// peer
	centrifugoBin     string
	centrifugoVersion string
	peerSubs          []int
	peerRates         []int
	peerDuration      time.Duration
	peerRounds        int

	// storm
	stormSubs      int
	stormGroupSubs int

	// scale
	scaleSockets    []int
	scalePerCaddy   int
	scalePerWorker  int
	scaleRate       int
	scaleDuration   time.Duration
	scaleIdleWindow time.Duration
	// scaleProfile is the prefix of CPU profiles of the first Caddy while idle and while delivering ("": none).
	scaleProfile string
	// peerProfile is where a CPU profile of wskafka's first peer run goes ("": none).
	peerProfile string

	// curves
	curveSubs     []int
	curveRate     int
	curveRates    []int
	curveRateSubs int
	curveDuration time.Duration
}

var scenarios = []string{"produce", "consume", "idle", "fanout", "reload", "peer", "storm", "scale", "curves"}

func main() {
	var cfg config
	if len(os.Args) > 1 && os.Args[1] == "-scale-worker" {
		if err := runWorker(os.Args[2:]); err != nil {
			fatalf("worker: %v", err)
		}
		return
	}
	var brokers, only, rates, peerSubs, peerRates, scaleSockets, curveSubs, curveRates string
	flag.StringVar(&cfg.caddyBin, "caddy", "./caddy", "the Caddy binary with the wskafka module (go build -o caddy ./cmd/caddy)")
	flag.StringVar(&brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka bootstrap brokers, comma separated; empty: an in-process kfake broker")
	flag.StringVar(&only, "only", strings.Join(scenarios, ","), "scenarios to run, comma separated: "+strings.Join(scenarios, ", "))
	flag.StringVar(&cfg.out, "out", "", "markdown file whose results section for this broker is replaced (e.g. BENCHMARKS.md); empty: stdout only")
	flag.StringVar(&cfg.plot, "plot", "", "PNG histogram of the latencies (default bench/latency.png, bench/latency-kafka.png with -brokers); \"-\": none")
	flag.StringVar(&cfg.profile, "profile", "", "write a CPU profile of Caddy during an extra produce round here (enables Caddy's admin API on loopback)")
	flag.IntVar(&cfg.profileSec, "profile-seconds", 10, "length of the CPU profile")
	flag.StringVar(&cfg.fanoutProfile, "fanout-profile", "", "write a CPU profile of Caddy while the broadcast fan-out's producer runs here (enables Caddy's admin API on loopback)")
	flag.StringVar(&cfg.consumeProfile, "consume-profile", "", "write a CPU profile of Caddy while the consume scenario's producer runs at the highest rate with mq_interval 0 here (enables Caddy's admin API on loopback)")
	flag.IntVar(&cfg.partitions, "partitions", 4, "partitions of every topic the tool creates")
	flag.StringVar(&cfg.logDir, "logs", "", "keep Caddy's Caddyfiles and logs here (default: a temp dir, removed)")

	flag.IntVar(&cfg.conns, "c", 10, "produce: WebSocket connections (C)")
	flag.IntVar(&cfg.messages, "n", 1000000, "produce: messages per run (N)")
	flag.IntVar(&cfg.size, "s", 100, "produce and consume: message size in bytes (S)")
	flag.IntVar(&cfg.framesPerWrite, "frames-per-write", 32, "produce: publish frames each socket writes with one system call (1: one each, as a naive client does)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "produce: rounds of bridge and raw runs; the median is reported")

	flag.StringVar(&rates, "r", "5000,20000", "consume: producer rates in msg/s (R), comma separated")
	flag.DurationVar(&cfg.duration, "d", 10*time.Second, "consume: how long each rate is produced (D)")

	flag.IntVar(&cfg.idleSockets, "k", 10000, "idle: sockets held open (K)")
	flag.DurationVar(&cfg.idleWindow, "idle-window", 10*time.Second, "idle: how long idle CPU is measured")

	flag.IntVar(&cfg.fanoutSubs, "subs", 1000, "fanout: subscribers in broadcast mode")
	flag.IntVar(&cfg.fanoutGroupSubs, "group-subs", 1000, "fanout: subscribers with a consumer group each")
	flag.IntVar(&cfg.fanoutRate, "fanout-r", 100, "fanout: producer rate in msg/s")
	flag.DurationVar(&cfg.fanoutDuration, "fanout-d", 10*time.Second, "fanout: how long the producer runs")

	flag.IntVar(&cfg.reloadSubs, "reload-subs", 1000, "reload: broadcast subscribers")
	flag.IntVar(&cfg.reloadGroupSubs, "reload-group-subs", 200, "reload: group subscribers")
	flag.IntVar(&cfg.reloadGroupSize, "reload-group-size", 4, "reload: members per consumer group (at most -partitions, so that every member receives)")
	flag.IntVar(&cfg.reloadRate, "reload-r", 200, "reload: producer rate in msg/s during the storm")
	flag.DurationVar(&cfg.reloadCloseDelay, "reload-close-delay", 10*time.Second, "reload: close_delay of the spread phase")
	flag.StringVar(&cfg.kafkaLog, "kafka-log", defaultKafkaLog(), "reload: the broker's server.log, to count rebalances (default: scripts/kafka's, when it exists)")
	flag.StringVar(&cfg.centrifugoBin, "centrifugo", "", "peer: a Centrifugo binary to use (default: go install "+centrifugoModule+"@-centrifugo-version into the run's temp dir)")
	flag.StringVar(&cfg.centrifugoVersion, "centrifugo-version", "v6.9.1", "peer: the Centrifugo version to install")
	flag.StringVar(&peerSubs, "peer-subs", "1000,10000", "peer: subscriber counts, comma separated")
	flag.StringVar(&peerRates, "peer-r", "100,10", "peer: producer rate in msg/s at each subscriber count (the last one repeats)")
	flag.DurationVar(&cfg.peerDuration, "peer-d", 10*time.Second, "peer: how long the producer runs")
	flag.IntVar(&cfg.peerRounds, "peer-rounds", 1, "peer: pairs of runs at each size, alternating which server goes first; with more than one, the targets are judged on the median ratios")
	flag.IntVar(&cfg.stormSubs, "storm-subs", 10000, "storm: sockets subscribing in broadcast mode at once")
	flag.IntVar(&cfg.stormGroupSubs, "storm-group-subs", 1000, "storm: sockets subscribing to one consumer group at once")
	flag.StringVar(&scaleSockets, "scale", "19000", "scale: total sockets of each run, comma separated (100000: six Caddy instances)")
	flag.IntVar(&cfg.scalePerCaddy, "scale-per-caddy", 19000, "scale: most sockets on one Caddy (a process may hold at most the file limit)")
	flag.IntVar(&cfg.scalePerWorker, "scale-per-worker", 9500, "scale: most sockets in one tool worker process")
	flag.IntVar(&cfg.scaleRate, "scale-r", 1, "scale: producer rate in msg/s (each socket receives every record)")
	flag.DurationVar(&cfg.scaleDuration, "scale-d", 30*time.Second, "scale: how long the producer runs")
	flag.DurationVar(&cfg.scaleIdleWindow, "scale-idle-window", 30*time.Second, "scale: how long idle CPU is measured, once subscribed: one ping_interval (30s) holds one keepalive ping to every socket")
	flag.StringVar(&curveSubs, "curve-subs", "100,1000,10000", "curves: subscriber counts of the sweep against subscribers")
	flag.IntVar(&cfg.curveRate, "curve-r", 10, "curves: the record rate of the sweep against subscribers")
	flag.StringVar(&curveRates, "curve-rates", "10,30,100,300", "curves: record rates of the sweep against the rate")
	flag.IntVar(&cfg.curveRateSubs, "curve-rate-subs", 1000, "curves: subscribers of the sweep against the rate")
	flag.DurationVar(&cfg.curveDuration, "curve-d", 10*time.Second, "curves: how long the producer runs at each point")
	flag.StringVar(&cfg.scaleProfile, "scale-profile", "", "scale: write CPU profiles of the first Caddy to <this>-idle.pprof (the idle window) and <this>-deliver.pprof (while the producer runs), its heap, goroutines and memstats once subscribed to <this>-heap.pprof, <this>-goroutine.pprof and <this>-vars.json; the first tool worker's CPU while it reads the records to <this>-worker.pprof")
	flag.StringVar(&cfg.peerProfile, "peer-profile", "", "peer: write a CPU profile of Caddy during wskafka's first peer run here")
	flag.Parse()

	// Caddy runs in a directory of its own: a relative path would not find it there.
	bin, err := filepath.Abs(cfg.caddyBin)
	if err != nil {
		fatalf("-caddy: %v", err)
	}
	cfg.caddyBin = bin
	cfg.brokers = splitList(brokers)
	cfg.only = splitList(only)
	for _, s := range cfg.only {
		if !slices.Contains(scenarios, s) {
			fatalf("-only: unknown scenario %q (want %s)", s, strings.Join(scenarios, ", "))
		}
	}
	cfg.rates = positiveInts("-r", rates)
	cfg.peerSubs = positiveInts("-peer-subs", peerSubs)
	cfg.peerRates = positiveInts("-peer-r", peerRates)
	cfg.scaleSockets = positiveInts("-scale", scaleSockets)
	cfg.curveSubs = positiveInts("-curve-subs", curveSubs)
	cfg.curveRates = positiveInts("-curve-rates", curveRates)
	if len(cfg.peerRates) == 0 {
		fatalf("-peer-r: no rate")
	}
	if cfg.peerRounds < 1 {
		fatalf("-peer-rounds must be at least 1")
	}
	if cfg.framesPerWrite < 1 {
		fatalf("-frames-per-write must be at least 1")
	}
	if cfg.reloadGroupSize < 1 || cfg.reloadGroupSize > cfg.partitions {
		fatalf("-reload-group-size must be between 1 and -partitions (%d): a member without a partition receives nothing", cfg.partitions)
	}
	if cfg.size < 19 {
		fatalf("-s must be at least 19: a value carries its send time as 19 digits")
	}
	if _, err := os.Stat(cfg.caddyBin); err != nil {
		fatalf("-caddy: %v (build it with: go build -o caddy ./cmd/caddy)", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		stop()
		fatalf("%v", err)
	}
}

func run(ctx context.Context, cfg config) error {
	if err := raiseFileLimit(max(cfg.idleSockets, cfg.fanoutSubs, cfg.fanoutGroupSubs, cfg.reloadSubs+cfg.reloadGroupSubs, slices.Max(append(cfg.peerSubs, 0)), cfg.stormSubs, cfg.scalePerCaddy, cfg.scalePerWorker, slices.Max(append(cfg.curveSubs, 0))) + 4096); err != nil {
		return err
	}
	kafka, err := openKafka(cfg.brokers, cfg.partitions)
	if err != nil {
		return err
	}
	defer kafka.close()

	workDir, err := os.MkdirTemp("", "wskbench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(workDir) }() // best effort: a temp folder
	if cfg.logDir != "" {
		workDir = cfg.logDir
		if err := os.MkdirAll(workDir, 0o755); err != nil {
			return err
		}
	}
	if kafka.embedded {
		// The in-process broker writes no log; a scripts/kafka log would be another broker's.
		cfg.kafkaLog = ""
	}
	b := &bench{cfg: cfg, kafka: kafka, dir: workDir, runID: time.Now().UTC().Format("20060102-150405")}
	switch cfg.plot {
	case "":
		cfg.plot = "bench/latency.png"
		if !kafka.embedded {
			cfg.plot = "bench/latency-kafka.png"
		}
	case "-":
		cfg.plot = ""
	}
	b.cfg.plot = cfg.plot
	if b.limits, err = probeLimits(cfg.caddyBin, workDir); err != nil {
		return err
	}
	if b.limits != "" {
		fmt.Println("wskbench: the module has a limits block: connection and publish-rate bounds lifted for the run")
	}
	b.env = describeEnv(cfg, kafka)
	fmt.Printf("wskbench: %s, %d CPUs, %s, Kafka %s (%s), caddy %s\n", b.env.date, runtime.NumCPU(), runtime.Version(),
		b.env.kafkaVersion, strings.Join(kafka.brokers, ","), cfg.caddyBin)

	for _, s := range cfg.only {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Printf("\n== %s\n", s)
		var err error
		switch s {
		case "produce":
			err = b.produce(ctx)
		case "consume":
			err = b.consume(ctx)
		case "idle":
			err = b.idle(ctx)
		case "fanout":
			err = b.fanout(ctx)
		case "reload":
			err = b.reload(ctx)
		case "peer":
			err = b.peer(ctx)
		case "storm":
			err = b.substorm(ctx)
		case "scale":
			err = b.scale(ctx)
		case "curves":
			err = b.curves(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if cfg.plot != "" && len(b.consumeResult)+len(b.fanoutResult) > 0 {
		if err := writeHistogram(cfg.plot, b.histogramPanels()); err != nil {
			return err
		}
		fmt.Printf("wskbench: latency histograms in %s\n", cfg.plot)
	}
	if b.curvePictures, err = b.writeCurves(); err != nil {
		return err
	}
	for _, p := range b.curvePictures {
		fmt.Printf("wskbench: curves in %s\n", p)
	}
	// The reload storm, the peer (with the subscribe storms and the curves) and the many-sockets runs have sections of
	// their own, so that `-only reload`, `-only peer,storm,curves` or a 100,000-socket `-only scale` leaves the other
	// results as they are.
	for _, r := range []struct {
		ran     bool
		section string
		render  func() string
	}{
		{slices.ContainsFunc(cfg.only, func(s string) bool { return slices.Contains([]string{"produce", "consume", "idle", "fanout"}, s) }), b.env.section(), b.report},
		{slices.Contains(cfg.only, "reload"), b.env.section() + "-reload", b.reloadReport},
		{slices.ContainsFunc(cfg.only, func(s string) bool { return slices.Contains([]string{"peer", "storm", "curves"}, s) }), b.env.section() + "-peer", b.peerReport},
		{slices.Contains(cfg.only, "scale"), b.env.section() + "-scale", b.scaleReport},
	} {
		if !r.ran {
			continue
		}
		report := r.render()
		fmt.Printf("\n%s", report)
		if cfg.out != "" {
			if err := writeSection(cfg.out, r.section, report); err != nil {
				return err
			}
			fmt.Printf("wskbench: results written to %s\n", cfg.out)
		}
	}
	return nil
}

// defaultKafkaLog is scripts/kafka's broker log (KAFKA_STATE_DIR, else .kafka), when it exists.
func defaultKafkaLog() string {
	dir := os.Getenv("KAFKA_STATE_DIR")
	if dir == "" {
		dir = ".kafka"
	}
	path := filepath.Join(dir, "server.log")
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// bench is one run: its settings, broker, and the results collected so far.
type bench struct {
	cfg   config
	kafka *kafkaCluster
	dir   string
	runID string
	env   environment

	caddies int    // Caddy processes started so far, to name their files
	limits  string // the limits block of the Caddyfile (see liftedLimits)

	produceResult *produceResult
	consumeResult []latencyResult
	idleResult    *idleResult
	fanoutResult  []fanoutResult
	reloadResult  []reloadResult
	peerResult    []peerPair
	stormResult   []stormResult
	scaleResult   []scaleResult
	curveResult   []curvePoint
	curvePictures []string // the SVG files written
	targets       []string // #13's targets in the report being rendered, met or missed

	centrifugoBin string // the peer's binary, once installed
	peerRuns      int    // runs of peerRun so far, to name their topics
	peerProfiled  bool   // the peer profile is written
}

// topic returns a name unique to this run: a real broker keeps topics between runs.
func (b *bench) topic(what string) string {
	return fmt.Sprintf("wskbench-%s-%s", b.runID, what)
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// raiseFileLimit lifts RLIMIT_NOFILE to want (the hard limit too when allowed); Caddy inherits it.
func raiseFileLimit(want int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the file limit: %w", err)
	}
	if lim.Cur >= uint64(want) {
		return nil
	}
	if lim.Max < uint64(want) {
		raised := syscall.Rlimit{Cur: uint64(want), Max: uint64(want)}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return nil
		}
		fmt.Fprintf(os.Stderr, "wskbench: cannot raise the file limit to %d, using the hard limit %d\n", want, lim.Max)
	}
	lim.Cur = min(uint64(want), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising the file limit to %d: %w", lim.Cur, err)
	}
	return nil
}

// positiveInts parses a comma-separated list of positive integers, or exits naming the flag.
func positiveInts(flagName, list string) []int {
	var out []int
	for _, r := range splitList(list) {
		var n int
		if _, err := fmt.Sscan(r, &n); err != nil || n <= 0 {
			fatalf("%s: %q is not a positive number", flagName, r)
		}
		out = append(out, n)
	}
	return out
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wskbench: "+format+"\n", args...)
	os.Exit(1)
}
