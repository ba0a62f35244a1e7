package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// centrifugoModule is the peer's Go module: the tool installs it with `go install` into a folder of the run, so
// that it never becomes a dependency of this module.
const centrifugoModule = "github.com/centrifugal/centrifugo/v6"

// centrifugoInstallTimeout bounds `go install` (a first build compiles Centrifugo and its dependencies).
const centrifugoInstallTimeout = 10 * time.Minute

// centrifugoChannel is the channel the peer's publish commands go to and its subscribers subscribe to.
const centrifugoChannel = "wskbench"

// installCentrifugo returns the Centrifugo binary of the run: bin when given, else `go install`ed at version into
// dir (GOBIN=dir, from the Go module proxy; Go's build cache makes the next run's install a link step).
func installCentrifugo(ctx context.Context, bin, version, dir string) (string, error) {
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("-centrifugo: %w", err)
		}
		return abs, nil
	}
	gobin := filepath.Join(dir, "centrifugo-bin")
	if err := os.MkdirAll(gobin, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, centrifugoInstallTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", centrifugoModule+"@"+version)
	cmd.Dir = gobin // outside this module: its go.mod is neither read nor changed
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", centrifugoModule, version, err, testkit.Tail(string(out), 20))
	}
	path := filepath.Join(gobin, "centrifugo")
	fmt.Printf("wskbench: installed %s@%s into %s in %v\n", centrifugoModule, version, gobin, time.Since(start).Round(time.Second))
	return path, nil
}

// centrifugoProcess is one Centrifugo started by the tool, configured to consume a Kafka topic whose records are
// server API commands (its "async consumer" of type kafka: each record's value is {"method":"publish","payload":…}).
type centrifugoProcess struct {
	*testkit.Process
	port int
}

// centrifugoConfig is the peer's configuration: loopback only, anonymous clients allowed to subscribe to any
// channel (as wskafka's bench routes have no authentication), usage statistics off (the machine reaches no one),
// the memory broker (one node, no history), and one Kafka consumer. Keepalive stays at its default (the
// subscribers answer its pings); wskafka's is off in the bench, which costs it nothing while no ping is due.
func centrifugoConfig(port int, brokers []string, topic, group string) ([]byte, error) {
	config := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "warn"},
		"usage_stats": map[string]any{"disabled": true},
		"client": map[string]any{
			"insecure":        true,
			"allowed_origins": []string{"*"},
		},
		"consumers": []any{map[string]any{
			"name":    "wskbench",
			"enabled": true,
			"type":    "kafka",
			"kafka": map[string]any{
				"brokers":        brokers,
				"topics":         []string{topic},
				"consumer_group": group,
				// wskafka's fetch settings (fetch_max_wait 100ms): Centrifugo's default 500 ms would only delay an
				// idle partition's next poll, but the two should wait alike.
				"fetch_max_wait": "100ms",
			},
		}},
	}
	return json.MarshalIndent(config, "", "  ")
}

// startCentrifugo starts the peer on a free loopback port and waits (bounded) until it serves.
func (b *bench) startCentrifugo(ctx context.Context, topic, group string) (*centrifugoProcess, error) {
	var lastErr error
	for range caddyStartTries {
		b.caddies++
		dir := filepath.Join(b.dir, fmt.Sprintf("centrifugo-%d", b.caddies))
		port, err := testkit.FreePort()
		if err != nil {
			return nil, err
		}
		config, err := centrifugoConfig(port, b.kafka.brokers, topic, group)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "config.json")
		if err := os.WriteFile(path, config, 0o644); err != nil {
			return nil, err
		}
		p, err := testkit.StartProcess(dir, "centrifugo.log", b.centrifugoBin, []string{"--config", path}, nil)
		if err != nil {
			return nil, err
		}
		c := &centrifugoProcess{Process: p, port: port}
		if lastErr = p.WaitReady(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), caddyStartTimeout, nil); lastErr == nil {
			return c, nil
		}
		c.stop()
		if !strings.Contains(p.Log(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("centrifugo did not start: %w", lastErr)
}

func (c *centrifugoProcess) url() string {
	return fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", c.port)
}

// stop ends the process group: SIGTERM, then SIGKILL.
func (c *centrifugoProcess) stop() {
	if c.Stop(caddyStopTimeout) {
		fmt.Fprintf(os.Stderr, "wskbench: centrifugo (pid %d) did not stop within %v; killed it\n", c.Pid(), caddyStopTimeout)
	}
}

// centrifugoVersion is the module version built into the binary (`go version -m`: a `go install`ed build stamps
// it there, while `centrifugo version` says v0.0.0 without the release's ldflags).
func centrifugoVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == centrifugoModule {
			return f[2]
		}
	}
	return "unknown"
}

// centrifugoCommand is the record value the peer's Kafka consumer takes: a server API publish command whose data
// carries the send time after stampMarker, padded to size bytes in all (the size of the other scenarios' values).
func centrifugoCommand(buf []byte, now time.Time, size int) []byte {
	buf = append(buf[:0], `{"method":"publish","payload":{"channel":"`+centrifugoChannel+`","data":{"v":"`...)
	buf = append(buf, stampMarker...)
	buf = strconv.AppendInt(buf, now.UnixNano(), 10)
	const closing = `"}}}`
	for len(buf)+len(closing) < size {
		buf = append(buf, 'x')
	}
	return append(buf, closing...)
}
