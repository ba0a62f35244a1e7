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
	"testing"
	"text/template"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
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
	// site is a whole Caddyfile in place of caddyfileTemplate, rendered with the same values.
	site *template.Template
}

// caddyServer is one Caddy subprocess with its own Caddyfile, storage and log in the test's temp dir.
type caddyServer struct {
	*testkit.Process
	t       *testing.T
	port    int
	admin   int // the admin API's port; 0 when it is off
	tls     bool
	groupID string
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
		c := &caddyServer{t: t, tls: opts.tls, groupID: opts.groupID}
		c.port = freePort(t)
		if opts.admin {
			c.admin = freePort(t)
		}
		caddyfile, err := c.caddyfile(opts)
		if err != nil {
			t.Fatal(err)
		}
		if c.Process, err = testkit.StartCaddy(opts.bin, t.TempDir(), caddyfile, opts.env); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.stop)
		probe := c.probe
		if !c.tls {
			probe = nil // a TCP connection
		}
		err = c.WaitReady(context.Background(), net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), startTimeout, probe)
		if err == nil {
			return c
		}
		lastErr = err
		select {
		case <-c.Exited:
			if strings.Contains(c.Log(), "address already in use") {
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
	site := caddyfileTemplate
	if opts.site != nil {
		site = opts.site
	}
	var caddyfile bytes.Buffer
	err := site.Execute(&caddyfile, map[string]any{
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

// probe completes a TLS handshake with Caddy, verified against its own root certificate.
func (c *caddyServer) probe(addr string) error {
	pool, err := c.loadRoots()
	if err != nil {
		return err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err == nil {
		_ = conn.Close()
	}
	return err
}

// rootPath is where Caddy writes its local CA's root certificate.
func (c *caddyServer) rootPath() string {
	return filepath.Join(c.DataDir(), "caddy", "pki", "authorities", "local", "root.crt")
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

// stop ends Caddy, and prints the tail of its log when the test failed.
func (c *caddyServer) stop() {
	if c.Stop(stopTimeout) {
		c.t.Logf("caddy (pid %d) did not stop within %v; killed it", c.Pid(), stopTimeout)
	}
	if c.t.Failed() {
		c.t.Logf("tail of %s:\n%s", c.LogPath, testkit.Tail(c.Log(), 60))
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
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
			err = fmt.Errorf("caddy %s: %w\n%s", strings.Join(args, " "), err, testkit.Tail(stderr.String(), 20))
		}
	}
	return stdout.String(), err
}
