package wskafka

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads the config's Prometheus metrics from its metrics handler and returns caddy_wskafka_* samples by
// their name and labels as printed.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_wskafka_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// The metrics move as traffic flows, and keep doing so after a config reload (each config has a new registry).
func TestMetricsMoveAndSurviveReload(t *testing.T) {
	const site = quietLogs + `
http://{addr} {
	handle /metrics {
		metrics
	}
	wskafka {
		brokers {brokers}
		producer {
			mq_interval 0
		}
		consumer {
			mq_interval 0
		}
	}
}`
	for round := range 2 {
		t.Run(fmt.Sprintf("config %d", round+1), func(t *testing.T) {
			addr := startCaddyfile(t, site)
			metricsURL := "http://" + addr + "/metrics"
			before := scrape(t, metricsURL)
			topic := topicName(t)
			createTopic(t, topic)
			c := dial(t, "ws://"+addr+"/")
			if r := c.request(`{"id":1,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`"}}`, "1"); *r.S != 0 {
				t.Fatalf("subscribe: %s", r.P)
			}
			for i := range 5 {
				c.send(fmt.Sprintf(`{"id":%d,"t":"notif","p":{"t":"%s","m":"m%d"}}`, i+10, topic, i))
			}
			c.receive(5)
			c.request(`{"id":2,"t":"health"}`, "2")

			// A counter moves after its event: frames_sent once the write returns, which may be after the client
			// read the frame. So the scrape is repeated until every counter has grown, within waitLimit.
			growth := []struct {
				name  string
				least float64
			}{
				{`caddy_wskafka_publishes_total{result="accepted"}`, 5},
				{`caddy_wskafka_publishes_total{result="acknowledged"}`, 5},
				{`caddy_wskafka_notifications_delivered_total`, 5},
				{`caddy_wskafka_frames_received_total`, 7},
				{`caddy_wskafka_frames_sent_total`, 3},
				{`caddy_wskafka_received_bytes_total`, 100},
				{`caddy_wskafka_rebalances_total`, 1},
				{`caddy_wskafka_flush_records_count`, 1},
				{`caddy_wskafka_produce_duration_seconds_count`, 1},
			}
			var after map[string]float64
			short := func() []string {
				var missed []string
				for _, g := range growth {
					if d := after[g.name] - before[g.name]; d < g.least {
						missed = append(missed, fmt.Sprintf("%s grew by %v, want at least %v", g.name, d, g.least))
					}
				}
				return missed
			}
			deadline := time.Now().Add(waitLimit)
			for {
				after = scrape(t, metricsURL)
				if len(short()) == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, m := range short() {
				t.Error(m)
			}
			if got := after[`caddy_wskafka_connections_open`]; got < 1 {
				t.Errorf("connections_open: got %v, want at least 1 while a socket is open", got)
			}
			for name := range after {
				if strings.Contains(name, topic) {
					t.Errorf("metric %s carries a topic label without topic_metrics", name)
				}
			}
		})
	}
}

// The admin API's /wskafka/ready answers 200 when every cluster answers, 503 naming the one that does not.
func TestReadinessEndpoint(t *testing.T) {
	tests := []struct {
		name      string
		brokers   string
		status    int
		reachable bool
	}{
		{"reachable", "{brokers}", http.StatusOK, true},
		{"unreachable", "127.0.0.1:1", http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := freeAddr(t)
			startCaddyfile(t, `{
	admin `+admin+`
	log {
		level ERROR
	}
}
http://{addr} {
	wskafka {
		brokers `+tt.brokers+`
	}
}`)
			resp, err := http.Get("http://" + admin + "/wskafka/ready")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Ready    bool
				Clusters []struct {
					Brokers   []string
					Reachable bool
					Error     string
				}
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || body.Ready != tt.reachable || len(body.Clusters) != 1 || body.Clusters[0].Reachable != tt.reachable {
				t.Fatalf("got %d %+v, want %d with one cluster reachable=%v", resp.StatusCode, body, tt.status, tt.reachable)
			}
			if !tt.reachable && body.Clusters[0].Error == "" {
				t.Fatalf("got no error for the unreachable cluster")
			}
		})
	}
}
