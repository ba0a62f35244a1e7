package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// Bounds of the Caddy process.
const (
	caddyStartTimeout = 30 * time.Second // until it serves its port
	caddyStopTimeout  = 15 * time.Second // after SIGTERM, before SIGKILL
	caddyStartTries   = 3                // a port picked free may be taken before Caddy binds it
)

// liftedLimits is the module's limits block with the bounds a benchmark would hit by design lifted: one client
// (the tool, one IP) opens thousands of sockets and publishes as fast as it can. Keepalive is off: the tool
// answers pings only on sockets it reads, and the fan-out scenario holds hundreds of sockets unread while a
// thousand consumer groups join (longer than ping_interval + pong_timeout on a real broker). Memory bounds stay
// at their defaults, since they are part of what is measured. Used when the binary knows the block.
const liftedLimits = `limits {
				max_connections -1
				max_connections_per_client -1
				publish_rate -1
				publish_bytes_rate -1
				ping_interval off
			}`

// caddyfileTemplate serves two routes on loopback: /ws with the module's defaults (the settings a deployment
// starts from) and /ws0 with consumer mq_interval 0 (each notification sent as soon as it arrives). Extra lines
// go into both wskafka blocks (the reload storm's settings).
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
{{- if .AdminPort}}
	admin 127.0.0.1:{{.AdminPort}}
{{- else}}
	admin off
{{- end}}
	persist_config off
	skip_install_trust
	auto_https off
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	route /ws {
		wskafka {
			brokers {{.Brokers}}
			client_id wskbench
			{{.Limits}}
			{{.Extra}}
			consumer {
				group_id {{.GroupID}}
			}
		}
	}
	route /ws0 {
		wskafka {
			brokers {{.Brokers}}
			client_id wskbench
			{{.Limits}}
			{{.Extra}}
			consumer {
				group_id {{.GroupID}}
				mq_interval 0
			}
		}
	}
	respond "wskbench" 200
}
`))

// caddyProcess is one Caddy started by the tool, in its own process group, home and temp dir.
type caddyProcess struct {
	*testkit.Process
	dir       string
	port      int
	adminPort int
	// What the Caddyfile was rendered from, for a reload that changes only the extra lines.
	brokers         []string
	groupID, limits string
}

// probeLimits returns liftedLimits if the binary accepts it (`caddy validate` of a config with the block), else
// "": builds of the module from before the block have none of its bounds.
func probeLimits(bin, dir string) (string, error) {
	ok, err := probeSetting(bin, dir, liftedLimits, "limits")
	if !ok {
		return "", err
	}
	return liftedLimits, nil
}

// probeSetting reports whether the binary validates a wskafka block with lines; a refusal that names what is
// false (an unknown setting) is a no, any other failure an error.
func probeSetting(bin, dir, lines, what string) (bool, error) {
	probe := filepath.Join(dir, "probe")
	if err := os.MkdirAll(probe, 0o755); err != nil {
		return false, err
	}
	path := filepath.Join(probe, "Caddyfile")
	config := "{\n\tadmin off\n}\nhttp://127.0.0.1:1 {\n\twskafka {\n\t\t\tbrokers 127.0.0.1:1\n\t\t\t" + lines + "\n\t}\n}\n"
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = probe
	cmd.Env = append(os.Environ(), "HOME="+probe, "XDG_DATA_HOME="+filepath.Join(probe, "data"), "XDG_CONFIG_HOME="+filepath.Join(probe, "config"))
	if out, err := cmd.CombinedOutput(); err != nil {
		if !strings.Contains(string(out), what) {
			return false, fmt.Errorf("caddy validate of the probe config: %w\n%s", err, testkit.Tail(string(out), 10))
		}
		return false, nil
	}
	return true, nil
}

// startCaddy starts Caddy with the generated Caddyfile and waits (bounded) until it serves.
func (b *bench) startCaddy(ctx context.Context, admin bool) (*caddyProcess, error) {
	return b.startCaddyWith(ctx, admin, "")
}

// startCaddyWith is startCaddy with extra lines in the wskafka blocks.
func (b *bench) startCaddyWith(ctx context.Context, admin bool, extra string) (*caddyProcess, error) {
	var lastErr error
	for range caddyStartTries {
		b.caddies++
		c := &caddyProcess{dir: filepath.Join(b.dir, fmt.Sprintf("caddy-%d", b.caddies)),
			brokers: b.kafka.brokers, groupID: b.topic("group"), limits: b.limits}
		var err error
		if c.port, err = testkit.FreePort(); err != nil {
			return nil, err
		}
		if admin {
			if c.adminPort, err = testkit.FreePort(); err != nil {
				return nil, err
			}
		}
		caddyfile, err := c.caddyfile(extra)
		if err != nil {
			return nil, err
		}
		if c.Process, err = testkit.StartCaddy(b.cfg.caddyBin, c.dir, caddyfile, nil); err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
		if lastErr = c.WaitReady(ctx, addr, caddyStartTimeout, nil); lastErr == nil {
			return c, nil
		}
		c.stop()
		if !strings.Contains(c.Log(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("caddy did not start: %w", lastErr)
}

// caddyfile renders the process's Caddyfile with extra lines in its wskafka blocks.
func (c *caddyProcess) caddyfile(extra string) ([]byte, error) {
	var caddyfile bytes.Buffer
	err := caddyfileTemplate.Execute(&caddyfile, map[string]any{
		"Port":      c.port,
		"AdminPort": c.adminPort,
		"Brokers":   strings.Join(c.brokers, " "),
		"GroupID":   c.groupID,
		"Limits":    c.limits,
		"Extra":     extra,
	})
	return caddyfile.Bytes(), err
}

// url is the WebSocket endpoint of a route: "/ws" (defaults) or "/ws0" (consumer mq_interval 0).
func (c *caddyProcess) url(route string) string {
	return fmt.Sprintf("ws://127.0.0.1:%d%s", c.port, route)
}

// stop ends Caddy's process group: SIGTERM (sockets closed, publishes flushed), then SIGKILL.
func (c *caddyProcess) stop() {
	if c.Stop(caddyStopTimeout) {
		fmt.Fprintf(os.Stderr, "wskbench: caddy (pid %d) did not stop within %v; killed it\n", c.Pid(), caddyStopTimeout)
	}
}

// cpuProfile fetches a CPU profile of the given length from Caddy's admin API into path.
func (c *caddyProcess) cpuProfile(ctx context.Context, seconds int, path string) error {
	if c.adminPort == 0 {
		return fmt.Errorf("caddy was started without its admin API")
	}
	return c.fetchPprof(ctx, fmt.Sprintf("profile?seconds=%d", seconds), time.Duration(seconds)*time.Second+30*time.Second, path)
}

// heapProfile fetches a heap profile from Caddy's admin API into path.
func (c *caddyProcess) heapProfile(ctx context.Context, path string) error {
	if c.adminPort == 0 {
		return fmt.Errorf("caddy was started without its admin API")
	}
	return c.fetchPprof(ctx, "heap", time.Minute, path)
}

// fetchPprof writes what /debug/pprof/<query> of Caddy's admin API answers into path.
func (c *caddyProcess) fetchPprof(ctx context.Context, query string, timeout time.Duration, path string) error {
	return c.fetchDebug(ctx, "pprof/"+query, timeout, path)
}

// fetchDebug writes what /debug/<query> of Caddy's admin API answers into path (pprof/…, or vars: expvar's
// memstats, whose StackInuse and HeapInuse split the resident memory).
func (c *caddyProcess) fetchDebug(ctx context.Context, query string, timeout time.Duration, path string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/%s", c.adminPort, query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only, or done with
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("fetching %s: %s: %s", url, resp.Status, body)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close() // the error being returned says more
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// reload loads the Caddyfile again with other extra lines through the admin API (POST /load, adapted by Caddy
// from text/caddyfile); it returns when Caddy answers.
func (c *caddyProcess) reload(ctx context.Context, extra string) error {
	if c.adminPort == 0 {
		return fmt.Errorf("caddy was started without its admin API")
	}
	caddyfile, err := c.caddyfile(extra)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/load", c.adminPort)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only, or done with
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
