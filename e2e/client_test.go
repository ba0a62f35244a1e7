package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	receiptsPath := filepath.Join(t.TempDir(), "receipts.json")
	cmd.Env = append(os.Environ(), "WSKAFKA_URL="+srv.url(), fmt.Sprintf("WSKAFKA_ADMIN=http://127.0.0.1:%d", srv.admin),
		"WSKAFKA_RECEIPTS="+receiptsPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/live against %s: %v\n%s", srv.url(), err, out)
	}
	t.Logf("%s", out)
	checkReceipts(t, receiptsPath)
}

// checkReceipts holds the receipts the library resolved publishes with against what Kafka holds, read by kcat:
// each names the partition and offset of its record.
func checkReceipts(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the reload test wrote no receipts: %v", err)
	}
	var got struct {
		Topic    string
		Receipts []struct {
			Value     string
			Partition int
			Offset    int64
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	stored := make(map[string]string) // "partition/offset" → value; the values are decimal numbers
	for line := range strings.Lines(string(kcat(t, nil, "-C", "-t", got.Topic, "-o", "beginning", "-e", "-f", "%p/%o %s\n"))) {
		if where, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " "); ok {
			stored[where] = value
		}
	}
	for _, r := range got.Receipts {
		if where := fmt.Sprintf("%d/%d", r.Partition, r.Offset); stored[where] != r.Value {
			t.Fatalf("receipt of %q names %s, which holds %q in Kafka", r.Value, where, stored[where])
		}
	}
	t.Logf("%d receipts match Kafka (kcat, %d records)", len(got.Receipts), len(stored))
}
