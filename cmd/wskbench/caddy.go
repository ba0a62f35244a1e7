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
	"syscall"
	"text/template"
	"time"
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
	dir       string
	port      int
	adminPort int
	cmd       *exec.Cmd
	logPath   string
	exited    chan struct{}
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
			return false, fmt.Errorf("caddy validate of the probe config: %w\n%s", err, tail(string(out), 10))
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
		c := &caddyProcess{dir: filepath.Join(b.dir, fmt.Sprintf("caddy-%d", b.caddies)), exited: make(chan struct{}),
			brokers: b.kafka.brokers, groupID: b.topic("group"), limits: b.limits}
		var err error
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		if admin {
			if c.adminPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		if err := c.start(b.cfg.caddyBin, extra); err != nil {
			return nil, err
		}
		if lastErr = c.waitReady(ctx); lastErr == nil {
			return c, nil
		}
		c.stop()
		if !strings.Contains(c.log(), "address already in use") {
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

func (c *caddyProcess) start(bin, extra string) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	caddyfile, err := c.caddyfile(extra)
	if err != nil {
		return err
	}
	path := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(path, caddyfile, 0o644); err != nil {
		return err
	}
	c.logPath = filepath.Join(c.dir, "caddy.log")
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	c.cmd = exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Dir = c.dir
	// Caddy's storage, config and home stay in the temp dir, never in the user's.
	c.cmd.Env = append(os.Environ(),
		"HOME="+c.dir,
		"XDG_DATA_HOME="+filepath.Join(c.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"),
	)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	return nil
}

func (c *caddyProcess) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(caddyStartTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("caddy exited (%v); log:\n%s", c.cmd.ProcessState, tail(c.log(), 20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return fmt.Errorf("no answer on %s within %v: %v; log:\n%s", addr, caddyStartTimeout, lastErr, tail(c.log(), 20))
}

func (c *caddyProcess) pid() int { return c.cmd.Process.Pid }

// url is the WebSocket endpoint of a route: "/ws" (defaults) or "/ws0" (consumer mq_interval 0).
func (c *caddyProcess) url(route string) string {
	return fmt.Sprintf("ws://127.0.0.1:%d%s", c.port, route)
}

// stop ends Caddy's process group: SIGTERM (sockets closed, publishes flushed), then SIGKILL.
func (c *caddyProcess) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	syscall.Kill(-c.pid(), syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(caddyStopTimeout):
		fmt.Fprintf(os.Stderr, "wskbench: caddy (pid %d) did not stop within %v; killing it\n", c.pid(), caddyStopTimeout)
		syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.exited
	}
}

func (c *caddyProcess) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
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
	defer resp.Body.Close()
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
		f.Close()
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
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
