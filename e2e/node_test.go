package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeTimeout bounds one run of the Node client.
const nodeTimeout = 3 * time.Minute

// needNode returns node's path once the Node client's dependencies are installed (`npm ci --prefix e2e/node`);
// without them the test skips, or fails under CI.
func needNode(t *testing.T) string {
	t.Helper()
	node := needTool(t, "node", "install Node.js 18 or later")
	if _, err := os.Stat(filepath.Join(projectRoot, "e2e", "node", "node_modules", "ws")); err != nil {
		missing(t, "e2e/node/node_modules is missing (run: npm ci --prefix e2e/node)")
	}
	return node
}

// runNode runs the Node client against url with extra environment and returns its combined output and error.
func runNode(t *testing.T, url string, env ...string) (string, error) {
	t.Helper()
	node := needNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", "node", "conversation.mjs"), url)
	cmd.Dir = projectRoot
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestNodeClient runs the README's conversation from Node's ws, an independent client, over ws://.
func TestNodeClient(t *testing.T) {
	needSuite(t)
	needNode(t)
	srv := startCaddy(t, caddyOptions{})
	out, err := runNode(t, srv.url())
	if err != nil {
		t.Fatalf("node conversation.mjs %s: got %v, want exit status 0\n%s", srv.url(), err, out)
	}
	t.Logf("%s", out)
}
