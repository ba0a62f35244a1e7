package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestClientLibrary runs the JavaScript client library's live tests (client/test/live) against the real binary:
// the library's requests, receipts, binary values, client acknowledgements after async handlers, a broadcast
// resumed from persisted positions, and a config reload (through the admin API) with nothing missed or twice,
// over the protocol extensions it relies on.
func TestClientLibrary(t *testing.T) {
	needSuite(t)
	node := needTool(t, "node", "install Node.js 20 or later")
	if _, err := os.Stat(filepath.Join(projectRoot, "client", "node_modules", "ws")); err != nil {
		missing(t, "client/node_modules is missing (run: npm ci --prefix client)")
	}
	srv := startCaddy(t, caddyOptions{admin: true, wskafka: "close_delay 1s"})
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", filepath.Join("test", "live"))
	cmd.Dir = filepath.Join(projectRoot, "client")
	cmd.Env = append(os.Environ(), "WSKAFKA_URL="+srv.url(), fmt.Sprintf("WSKAFKA_ADMIN=http://127.0.0.1:%d", srv.admin))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/live against %s: %v\n%s", srv.url(), err, out)
	}
	t.Logf("%s", out)
}
