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

// Process is a server run by a test or a benchmark (Caddy, or a peer it is measured against): its files, home
// and log in a folder of its own, never the user's, and a process group of its own, so that stopping it stops
// everything it started.
type Process struct {
	Dir     string
	LogPath string
	Cmd     *exec.Cmd
	// Exited is closed once the process has exited and been reaped.
	Exited chan struct{}
}

// StartProcess runs bin with args in dir, with HOME and the XDG folders in dir and env added to the
// environment; its output goes to dir/logName. It does not wait for the server to serve: see WaitReady.
func StartProcess(dir, logName, bin string, args, env []string) (*Process, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &Process{Dir: dir, LogPath: filepath.Join(dir, logName), Exited: make(chan struct{})}
	logFile, err := os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }() // the child has its own descriptor
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Dir = dir
	p.Cmd.Env = append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+p.DataDir(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	p.Cmd.Env = append(p.Cmd.Env, env...)
	p.Cmd.Stdout, p.Cmd.Stderr = logFile, logFile
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		_ = p.Cmd.Wait() // how it ended is in ProcessState
		close(p.Exited)
	}()
	return p, nil
}

// StartCaddy writes caddyfile to dir/Caddyfile and runs bin on it (see StartProcess); the log is dir/caddy.log.
func StartCaddy(bin, dir string, caddyfile []byte, env []string) (*Process, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, caddyfile, 0o644); err != nil {
		return nil, err
	}
	return StartProcess(dir, "caddy.log", bin, []string{"run", "--config", path, "--adapter", "caddyfile"}, env)
}

// DataDir is the process's XDG_DATA_HOME: Caddy keeps its storage, its local CA included, under DataDir/caddy.
func (p *Process) DataDir() string { return filepath.Join(p.Dir, "data") }

// Pid is the process's id, also its process group's.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// readyPoll is how often WaitReady probes.
const readyPoll = 50 * time.Millisecond

// WaitReady probes until probe succeeds (nil probe: a TCP connection to addr), the process exits, ctx ends or
// timeout passes; the error then has the tail of the log.
func (p *Process) WaitReady(ctx context.Context, addr string, timeout time.Duration, probe func(addr string) error) error {
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
		case <-p.Exited:
			return fmt.Errorf("%s exited (%v); log:\n%s", filepath.Base(p.Cmd.Path), p.Cmd.ProcessState, Tail(p.Log(), 30))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if lastErr = probe(addr); lastErr == nil {
			return nil
		}
		time.Sleep(readyPoll)
	}
	return fmt.Errorf("%w after %v waiting for %s: %v; log:\n%s", ErrTimeout, timeout, addr, lastErr, Tail(p.Log(), 30))
}

// ErrTimeout marks a bounded wait that ran out.
var ErrTimeout = errors.New("timed out")

// Stop ends the process group: SIGTERM (Caddy closes its sockets and flushes publishes), then SIGKILL after
// timeout. It reports whether the group had to be killed.
func (p *Process) Stop(timeout time.Duration) (killed bool) {
	select {
	case <-p.Exited:
		return false
	default:
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM) // an error means it is gone already
	select {
	case <-p.Exited:
		return false
	case <-time.After(timeout):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.Exited
		return true
	}
}

// Log is what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath) // a log not written yet is empty
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
