package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Caddy is a Caddy process run by a test or a benchmark: its Caddyfile, storage, home and log in a folder of its
// own, never the user's, and a process group of its own, so that stopping it stops everything it started.
type Caddy struct {
	Dir     string
	LogPath string
	Cmd     *exec.Cmd
	// Exited is closed once the process has exited and been reaped.
	Exited chan struct{}
}

// StartCaddy writes caddyfile to dir/Caddyfile and runs bin on it, with env added to the environment; the
// process's output goes to dir/caddy.log. It does not wait for Caddy to serve: see WaitReady.
func StartCaddy(bin, dir string, caddyfile []byte, env []string) (*Caddy, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, caddyfile, 0o644); err != nil {
		return nil, err
	}
	c := &Caddy{Dir: dir, LogPath: filepath.Join(dir, "caddy.log"), Exited: make(chan struct{})}
	logFile, err := os.Create(c.LogPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }() // the child has its own descriptor
	c.Cmd = exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	c.Cmd.Dir = dir
	c.Cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+c.DataDir(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	c.Cmd.Env = append(c.Cmd.Env, env...)
	c.Cmd.Stdout, c.Cmd.Stderr = logFile, logFile
	c.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		_ = c.Cmd.Wait() // how it ended is in ProcessState
		close(c.Exited)
	}()
	return c, nil
}

// DataDir is the process's XDG_DATA_HOME: Caddy keeps its storage, its local CA included, under DataDir/caddy.
func (c *Caddy) DataDir() string { return filepath.Join(c.Dir, "data") }

// Pid is the process's id, also its process group's.
func (c *Caddy) Pid() int { return c.Cmd.Process.Pid }

// readyPoll is how often WaitReady probes.
const readyPoll = 50 * time.Millisecond

// WaitReady probes until probe succeeds (nil probe: a TCP connection to addr), the process exits, ctx ends or
// timeout passes; the error then has the tail of the log.
func (c *Caddy) WaitReady(ctx context.Context, addr string, timeout time.Duration, probe func(addr string) error) error {
	if probe == nil {
		probe = func(addr string) error {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = conn.Close()
			}
			return err
		}
	}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-c.Exited:
			return fmt.Errorf("caddy exited (%v); log:\n%s", c.Cmd.ProcessState, Tail(c.Log(), 30))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if lastErr = probe(addr); lastErr == nil {
			return nil
		}
		time.Sleep(readyPoll)
	}
	return fmt.Errorf("%w after %v waiting for %s: %v; log:\n%s", ErrTimeout, timeout, addr, lastErr, Tail(c.Log(), 30))
}

// ErrTimeout marks a bounded wait that ran out.
var ErrTimeout = errors.New("timed out")

// Stop ends the process group: SIGTERM (Caddy closes its sockets and flushes publishes), then SIGKILL after
// timeout. It reports whether the group had to be killed.
func (c *Caddy) Stop(timeout time.Duration) (killed bool) {
	select {
	case <-c.Exited:
		return false
	default:
	}
	_ = syscall.Kill(-c.Pid(), syscall.SIGTERM) // an error means it is gone already
	select {
	case <-c.Exited:
		return false
	case <-time.After(timeout):
		_ = syscall.Kill(-c.Pid(), syscall.SIGKILL)
		<-c.Exited
		return true
	}
}

// Log is what the process has written so far.
func (c *Caddy) Log() string {
	b, _ := os.ReadFile(c.LogPath) // a log not written yet is empty
	return string(b)
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
