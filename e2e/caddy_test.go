package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Bounds of the process harness.
const (
	startTimeout = 30 * time.Second // until Caddy serves its port (and, with TLS, its certificate)
	stopTimeout  = 15 * time.Second // after SIGTERM, before SIGKILL
	startTries   = 3                // a port picked free may be taken before Caddy binds it
)

// caddyOptions says what Caddy to start.
type caddyOptions struct {
	bin string // the binary; default caddyBin
	tls bool   // serve https with `tls internal` (Caddy's own CA) instead of plain http
	// groupID is the consumer group of subscribes that name none; default: unique to the test.
	groupID string
	// wskafka are extra lines for the wskafka block.
	wskafka string
	// brokers replace the suite's brokers (the SASL_SSL listener's address).
	brokers []string
	// env is added to Caddy's environment, for {env.*} placeholders.
	env []string
	// admin opens Caddy's admin API on a loopback port of its own, for reloads (POST /load).
	admin bool
	// clientID is the Kafka client_id; default wskafka-e2e. A reload that changes it changes the Kafka settings.
	clientID string
}

// caddyServer is one Caddy subprocess with its own Caddyfile, storage and log in the test's temp dir.
type caddyServer struct {
	t       *testing.T
	dir     string
	dataDir string // XDG_DATA_HOME: Caddy keeps its storage, the local CA included, in <dataDir>/caddy
	logPath string
	port    int
	admin   int // the admin API's port; 0 when it is off
	tls     bool
	groupID string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
}

// caddyfileTemplate is the site the suite serves: wskafka on /ws, a plain answer elsewhere. Intervals are short so
// that the tests are quick; the protocol does not depend on them.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
{{- if .Admin}}
	admin 127.0.0.1:{{.Admin}}
{{- else}}
	admin off
{{- end}}
	persist_config off
	skip_install_trust
{{- if .Debug}}
	debug
{{- end}}
{{- if .TLS}}
	auto_https disable_redirects
{{- end}}
}

{{if .TLS}}https{{else}}http{{end}}://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
{{- if .TLS}}
	tls internal
{{- end}}
	route /ws {
		wskafka {
			brokers {{.Brokers}}
			client_id {{.ClientID}}
			producer {
				mq_interval 20ms
			}
			consumer {
				group_id {{.GroupID}}
				mq_interval 20ms
				commit_interval 200ms
			}
{{.Extra}}
		}
	}
	respond "wskafka e2e" 200
}
`))

// startCaddy starts Caddy and waits (bounded) until it serves; t.Cleanup stops it and, if the test failed,
// prints the tail of its log.
func startCaddy(t *testing.T, opts caddyOptions) *caddyServer {
	t.Helper()
	if opts.bin == "" {
		opts.bin = caddyBin
	}
	if opts.groupID == "" {
		opts.groupID = uniqueName(t, "default-group")
	}
	var lastErr error
	for try := 0; try < startTries; try++ {
		c := &caddyServer{t: t, dir: t.TempDir(), tls: opts.tls, groupID: opts.groupID, exited: make(chan struct{})}
		c.dataDir = filepath.Join(c.dir, "data")
		c.logPath = filepath.Join(c.dir, "caddy.log")
		c.port = freePort(t)
		if opts.admin {
			c.admin = freePort(t)
		}
		if err := c.start(opts); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.stop)
		err := c.waitReady()
		if err == nil {
			return c
		}
		lastErr = err
		select {
		case <-c.exited:
			if strings.Contains(c.log(), "address already in use") {
				t.Logf("port %d was taken; trying another", c.port)
				continue
			}
		default:
		}
		break
	}
	t.Fatalf("caddy did not start: %v", lastErr)
	return nil
}

// caddyfile renders the Caddyfile of opts for this server's ports.
func (c *caddyServer) caddyfile(opts caddyOptions) ([]byte, error) {
	addrs := brokers
	if opts.brokers != nil {
		addrs = opts.brokers
	}
	if opts.clientID == "" {
		opts.clientID = "wskafka-e2e"
	}
	var caddyfile bytes.Buffer
	err := caddyfileTemplate.Execute(&caddyfile, map[string]any{
		"TLS":      opts.tls,
		"Port":     c.port,
		"Admin":    c.admin,
		"Brokers":  strings.Join(addrs, " "),
		"GroupID":  opts.groupID,
		"ClientID": opts.clientID,
		"Extra":    opts.wskafka,
		// E2E_CADDY_DEBUG=1 logs at debug level (kafka-go's own log included) for post-mortems.
		"Debug": os.Getenv("E2E_CADDY_DEBUG") == "1",
	})
	return caddyfile.Bytes(), err
}

func (c *caddyServer) start(opts caddyOptions) error {
	caddyfile, err := c.caddyfile(opts)
	if err != nil {
		return err
	}
	path := filepath.Join(c.dir, "Caddyfile")
	if err := os.WriteFile(path, caddyfile, 0o644); err != nil {
		return err
	}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	c.cmd = exec.Command(opts.bin, "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Dir = c.dir
	// Caddy's storage, config and home stay in the temp dir: tests never touch ~/.local/share/caddy.
	c.cmd.Env = append(os.Environ(),
		"HOME="+c.dir,
		"XDG_DATA_HOME="+c.dataDir,
		"XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"),
	)
	c.cmd.Env = append(c.cmd.Env, opts.env...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", opts.bin, err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	return nil
}

// waitReady polls until Caddy accepts connections on its port (and, with TLS, completes a handshake verified
// against its own root certificate), or it exits, or startTimeout passes.
func (c *caddyServer) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("caddy exited (%v); log:\n%s", c.cmd.ProcessState, tail(c.log(), 30))
		default:
		}
		lastErr = c.probe(addr)
		if lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return fmt.Errorf("%w after %v waiting for %s: %v; log:\n%s", errTimeout, startTimeout, addr, lastErr, tail(c.log(), 30))
}

func (c *caddyServer) probe(addr string) error {
	dialer := &net.Dialer{Timeout: time.Second}
	if !c.tls {
		conn, err := dialer.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	}
	pool, err := c.loadRoots()
	if err != nil {
		return err
	}
	conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err == nil {
		conn.Close()
	}
	return err
}

// rootPath is where Caddy writes its local CA's root certificate.
func (c *caddyServer) rootPath() string {
	return filepath.Join(c.dataDir, "caddy", "pki", "authorities", "local", "root.crt")
}

func (c *caddyServer) loadRoots() (*x509.CertPool, error) {
	pem, err := os.ReadFile(c.rootPath())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", c.rootPath())
	}
	return pool, nil
}

// tlsConfig trusts Caddy's local CA and nothing else; verification stays on.
func (c *caddyServer) tlsConfig(t *testing.T) *tls.Config {
	t.Helper()
	pool, err := c.loadRoots()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool}
}

// url is the WebSocket endpoint.
func (c *caddyServer) url() string {
	scheme := "ws"
	if c.tls {
		scheme = "wss"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d/ws", scheme, c.port)
}

func (c *caddyServer) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// stop ends Caddy's process group: SIGTERM (Caddy flushes publishes and closes sockets), then SIGKILL.
func (c *caddyServer) stop() {
	select {
	case <-c.exited:
	default:
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(stopTimeout):
			c.t.Logf("caddy (pid %d) did not stop within %v; killing it", c.cmd.Process.Pid, stopTimeout)
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exited
		}
	}
	if c.t.Failed() {
		c.t.Logf("tail of %s:\n%s", c.logPath, tail(c.log(), 60))
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runCaddy runs a one-shot caddy command (list-modules, adapt, validate) with a bound, in a private home.
func runCaddy(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = projectRoot
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) || ctx.Err() != nil {
			err = fmt.Errorf("caddy %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.String(), 20))
		}
	}
	return stdout.String(), err
}
