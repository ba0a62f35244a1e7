package testkit

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcess(t *testing.T) {
	// A server that fails: WaitReady says so, with its log.
	p, err := StartProcess(t.TempDir(), "out.log", "/bin/sh", []string{"-c", "echo no such config; exit 3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(context.Background(), "127.0.0.1:"+strconv.Itoa(port), 10*time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "no such config") {
		t.Errorf("WaitReady: %v, want the exit and the log's last lines", err)
	}
	// A server that runs in a home of its own, and stops on SIGTERM.
	dir := t.TempDir()
	p, err = StartProcess(dir, "out.log", "/bin/sh", []string{"-c", `echo "$HOME"; exec sleep 60`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Log(), dir) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := strings.TrimSpace(p.Log()); got != dir {
		t.Errorf("HOME %q, want the process's folder %q", got, dir)
	}
	if killed := p.Stop(10 * time.Second); killed {
		t.Error("a process that stops on SIGTERM was killed")
	}
	select {
	case <-p.Exited:
	default:
		t.Error("Stop returned before the process was reaped")
	}
}
