package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/wskafka/wskafka/internal/testkit"
)

// checkBinary checks what a user sees of a Caddy binary with the module: it lists the module, adapts the
// shipped Caddyfile.example into a config with the handler, validates it without reaching Kafka, and serves the
// protocol.
func checkBinary(t *testing.T, bin string) {
	t.Helper()
	t.Run("list-modules", func(t *testing.T) {
		out, err := runCaddy(t, bin, nil, "list-modules")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(out), "http.handlers.wskafka") {
			t.Fatalf("caddy list-modules: got no http.handlers.wskafka in\n%s", testkit.Tail(out, 20))
		}
	})

	t.Run("adapt", func(t *testing.T) {
		out, err := runCaddy(t, bin, []string{"KAFKA_BROKERS=127.0.0.1:9092"}, "adapt", "--config", "Caddyfile.example", "--adapter", "caddyfile")
		if err != nil {
			t.Fatal(err)
		}
		var cfg any
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatalf("caddy adapt: output is not JSON: %v\n%s", err, out)
		}
		handlers := findHandlers(cfg, "wskafka")
		if len(handlers) != 1 {
			t.Fatalf("caddy adapt Caddyfile.example: got %d wskafka handlers, want 1 in\n%s", len(handlers), out)
		}
		brokers, _ := json.Marshal(handlers[0]["brokers"])
		if got, want := string(brokers), `["127.0.0.1:9092"]`; got != want {
			t.Errorf("adapted handler brokers: got %s, want %s", got, want)
		}
	})

	t.Run("validate", func(t *testing.T) {
		// Provisioning never dials Kafka: validate passes with a broker address nothing listens on.
		if _, err := runCaddy(t, bin, []string{"KAFKA_BROKERS=127.0.0.1:1"}, "validate", "--config", "Caddyfile.example", "--adapter", "caddyfile"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("serve", func(t *testing.T) {
		srv := startCaddy(t, caddyOptions{bin: bin})
		c := dial(t, "client", srv.url(), nil)
		topic := uniqueName(t, "t")
		createTopics(t, c, topic)
		assertHealth(t, c, "")
	})
}

// findHandlers returns every JSON object in v whose "handler" is name.
func findHandlers(v any, name string) []map[string]any {
	var found []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			found = append(found, v)
		}
		for _, child := range v {
			found = append(found, findHandlers(child, name)...)
		}
	case []any:
		for _, child := range v {
			found = append(found, findHandlers(child, name)...)
		}
	}
	return found
}

// TestBinary checks the binary `go build ./cmd/caddy` makes.
func TestBinary(t *testing.T) {
	needSuite(t)
	checkBinary(t, caddyBin)
}
