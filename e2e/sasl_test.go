package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wskafka/wskafka/internal/testkit"
)

// saslBroker is the SASL_SSL listener `KAFKA_SASL=1 scripts/kafka up` opens, as it prints it.
type saslBroker struct {
	brokers            []string
	ca                 string
	username, password string
}

// needSASLBroker returns the SASL_SSL listener from the environment; without it the test skips, or fails under CI.
func needSASLBroker(t *testing.T) saslBroker {
	t.Helper()
	b := saslBroker{
		ca:       os.Getenv("KAFKA_CA"),
		username: os.Getenv("KAFKA_SASL_USERNAME"),
		password: os.Getenv("KAFKA_SASL_PASSWORD"),
	}
	if env := os.Getenv("KAFKA_SASL_BROKERS"); env != "" {
		b.brokers = strings.FieldsFunc(env, func(r rune) bool { return r == ',' || r == ' ' })
	}
	switch {
	case len(b.brokers) == 0:
		missing(t, `no SASL_SSL broker: KAFKA_SASL_BROKERS is not set (eval "$(KAFKA_SASL=1 scripts/kafka up)" sets it)`)
	case b.ca == "" || b.username == "" || b.password == "":
		missing(t, "KAFKA_SASL_BROKERS is set but KAFKA_CA, KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is not")
	}
	return b
}

// saslSettings are the wskafka lines that reach b over TLS, trusting only its CA, with mechanism and the password
// read from the environment variable WSKAFKA_E2E_KAFKA_PASSWORD.
func saslSettings(b saslBroker, mechanism string) string {
	return fmt.Sprintf(`			request_timeout 15s
			tls {
				ca_file %s
			}
			sasl {
				mechanism %s
				username %s
				password {env.WSKAFKA_E2E_KAFKA_PASSWORD}
			}`, b.ca, mechanism, b.username)
}

// TestSASL plays the conversation through Apache Kafka's SASL_SSL listener with each SASL mechanism, over TLS
// verified against the listener's own CA, the password given to Caddy as {env.*}: the admin client (create, list),
// the producer, the consumer group and its fetches all authenticate. When the suite's brokers are the same
// cluster's plaintext listener, kcat confirms the record landed.
func TestSASL(t *testing.T) {
	needSuite(t)
	b := needSASLBroker(t)

	for _, mechanism := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mechanism, func(t *testing.T) {
			srv := startCaddy(t, caddyOptions{
				brokers: b.brokers,
				env:     []string{"WSKAFKA_E2E_KAFKA_PASSWORD=" + b.password},
				wskafka: saslSettings(b, mechanism),
			})
			sub := dial(t, "subscriber", srv.url(), nil)
			pub := dial(t, "publisher", srv.url(), nil)
			topic := uniqueName(t, "t")
			createTopics(t, sub, topic)
			var list []struct {
				Topic string `json:"topic"`
			}
			r := sub.request(t, topicMsg("list", nil))
			if err := json.Unmarshal(r.P, &list); err != nil {
				t.Fatalf("list p %s: %v", r.P, err)
			}
			listed := false
			for _, e := range list {
				listed = listed || e.Topic == topic
			}
			if !listed {
				t.Fatalf("list: got %s, want %s in it", r.P, topic)
			}
			sub.request(t, subscribeMsg(uniqueName(t, "group"), topic))
			value := "over " + mechanism
			pub.publish(t, topic, value)
			if got := sub.mustReceive(t, 1); !slices.Equal(got, []string{value}) {
				t.Fatalf("received: got %q, want %q", got, []string{value})
			}
			assertHealth(t, pub, topic, "")
			sub.request(t, topicMsg("unsubscribe", nil))
			if !embedded {
				kcatWaitFor(t, topic, [][]byte{[]byte(value)})
			}
			if log := srv.Log(); strings.Contains(log, b.password) {
				t.Errorf("caddy's log contains the SASL password")
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		wrong := "not-" + b.password
		srv := startCaddy(t, caddyOptions{
			brokers: b.brokers,
			env:     []string{"WSKAFKA_E2E_KAFKA_PASSWORD=" + wrong},
			wskafka: saslSettings(b, "scram-sha-512"),
		})
		c := dial(t, "client", srv.url(), nil)
		// list goes to any broker, create to the controller: kafka-go routes them apart, and both must say why.
		for _, msg := range []map[string]any{topicMsg("list", nil), topicMsg("create", []string{uniqueName(t, "t")})} {
			assertRefused(t, c, msg, "authentication failed", wrong)
		}

		// The log line is written as the request fails; allow the process a moment to write it.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(srv.Log(), "kafka authentication failed") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // poll interval
		}
		log := srv.Log()
		if !strings.Contains(log, "kafka authentication failed") {
			t.Errorf("caddy's log:\n%s\nwant a line saying kafka authentication failed", testkit.Tail(log, 20))
		}
		if strings.Contains(log, wrong) || strings.Contains(log, b.password) {
			t.Errorf("caddy's log contains the SASL password")
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		// Without ca_file the system's pool is used, which does not hold the listener's CA.
		srv := startCaddy(t, caddyOptions{
			brokers: b.brokers,
			env:     []string{"WSKAFKA_E2E_KAFKA_PASSWORD=" + b.password},
			wskafka: strings.Replace(saslSettings(b, "plain"), "ca_file "+b.ca, "", 1),
		})
		c := dial(t, "client", srv.url(), nil)
		assertRefused(t, c, topicMsg("list", nil), "certificate", b.password)
	})
}

// assertRefused sends msg and checks that it is answered s:1 at once (not after request_timeout) with a message
// containing want (in any case), and without the password.
func assertRefused(t *testing.T, c *wsClient, msg map[string]any, want, password string) {
	t.Helper()
	start := time.Now()
	r, err := c.roundTrip(msg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.errorPayload()
	if err != nil || r.S != 1 || !strings.Contains(strings.ToLower(p.Message), want) {
		t.Fatalf("%s %s: got %s (%v), want s:1 with a message saying %s", msg["t"], msg["a"], r.raw, err, want)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("%s %s: answered after %v, want at once", msg["t"], msg["a"], elapsed)
	}
	if strings.Contains(string(r.raw), password) {
		t.Errorf("reply %s contains the password", r.raw)
	}
	t.Logf("reply: %s", r.raw)
}
