package wskafka

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// startCaddyfile loads a Caddyfile (with {addr} and {brokers} filled in) and returns ws://addr.
func startCaddyfile(t *testing.T, source string) (addr string) {
	t.Helper()
	addr = freeAddr(t)
	text := strings.NewReplacer("{addr}", addr, "{brokers}", testBrokers).Replace(source)
	adapter := caddyconfig.GetAdapter("caddyfile")
	raw, warnings, err := adapter.Adapt(caddyfile.Format([]byte(text)), nil)
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", text, err)
	}
	if len(warnings) > 0 {
		t.Fatalf("adapting: warnings %v", warnings)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	loadConfig(t, cfg)
	t.Cleanup(func() { loadConfig(t, map[string]any{"admin": map[string]any{"disabled": true}}) })
	return addr
}

// dialWith dials with extra request headers and returns the client or the HTTP status of a refused upgrade.
func dialWith(t *testing.T, url string, header http.Header) (*client, int) {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		if resp == nil {
			t.Fatalf("dialing %s: %v", url, err)
		}
		return nil, resp.StatusCode
	}
	return newClient(t, conn), http.StatusSwitchingProtocols
}

func dialHeader(t *testing.T, url string, header http.Header) *client {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		t.Fatalf("dialing %s: %v", url, err)
	}
	return newClient(t, conn)
}

func basicAuth(user, password string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
}

const quietLogs = `{
	admin off
	log {
		level ERROR
	}
}
`

// Permissions with a placeholder give each basic_auth user a namespace of topics, and nothing else.
func TestPermissionsWithBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	basic_auth {
		alice `+string(hash)+`
		bob `+string(hash)+`
	}
	wskafka {
		brokers {brokers}
		permissions {
			create    user.{http.auth.user.id}.*
			publish   user.{http.auth.user.id}.* public.*
			subscribe user.{http.auth.user.id}.* public.*
			groups    {http.auth.user.id}-*
			list      user.{http.auth.user.id}.*
			describe  user.{http.auth.user.id}.*
			health    own
		}
		consumer {
			mq_interval 0
		}
	}
}`)
	url := "ws://" + addr + "/"
	if _, status := dialWith(t, url, nil); status != http.StatusUnauthorized {
		t.Fatalf("upgrade without credentials: got %d, want 401", status)
	}
	suffix := fmt.Sprint(time.Now().UnixNano())
	own, other := "user.alice."+suffix, "user.bob."+suffix
	alice := dialHeader(t, url, basicAuth("alice", "secret"))
	bob := dialHeader(t, url, basicAuth("bob", "secret"))
	if r := bob.request(`{"id":1,"t":"topic","a":"create","p":["`+other+`"]}`, "1"); *r.S != 0 {
		t.Fatalf("bob creating his topic: got %s", r.P)
	}

	tests := []struct {
		name, frame string
		wantCode    string // "" for success
	}{
		{"create own", `{"id":1,"t":"topic","a":"create","p":["` + own + `"]}`, ""},
		{"create another's", `{"id":1,"t":"topic","a":"create","p":["` + own + `.x","` + other + `.y"]}`, "forbidden"},
		{"publish to another's", `{"id":1,"t":"notif","p":{"t":"` + other + `","m":"x"}}`, "forbidden"},
		{"subscribe to another's", `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + other + `"]}}`, "forbidden"},
		{"subscribe in another's group", `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + own + `"],"consumer_group":"bob-1"}}`, "forbidden"},
		{"describe another's", `{"id":1,"t":"topic","a":"describe","p":["` + other + `"]}`, "forbidden"},
		{"subscribe to own in own group", `{"id":1,"t":"topic","a":"subscribe","p":{"t":["` + own + `"],"consumer_group":"alice-1"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := alice.request(tt.frame, "1")
			if got := r.errorCode(); *r.S != 0 && got != tt.wantCode || *r.S == 0 && tt.wantCode != "" {
				t.Fatalf("got s %d p %s, want code %q", *r.S, r.P, tt.wantCode)
			}
		})
	}

	// Nothing happened in Kafka for the refused create: user.alice.<suffix>.x does not exist either.
	r := alice.request(`{"id":2,"t":"topic","a":"list"}`, "2")
	var list []struct{ Topic string }
	json.Unmarshal(r.P, &list)
	for _, e := range list {
		if !strings.HasPrefix(e.Topic, "user.alice.") {
			t.Errorf("alice's list shows %s, want only user.alice.*", e.Topic)
		}
		if e.Topic == own+".x" {
			t.Errorf("refused create made %s", e.Topic)
		}
	}
	if len(list) == 0 {
		t.Errorf("alice's list is empty, want her topic")
	}

	r = alice.request(`{"id":3,"t":"health"}`, "3")
	var health struct{ Consumers []json.RawMessage }
	json.Unmarshal(r.P, &health)
	if len(health.Consumers) != 1 {
		t.Errorf("health own: got %s, want alice's socket only", r.P)
	}

	// Alice's subscription works: what she publishes to her topic reaches her.
	alice.send(`{"id":4,"t":"notif","p":{"t":"` + own + `","m":"mine"}}`)
	if got := alice.receive(1); got[0] != "mine" {
		t.Fatalf("got %q, want mine", got)
	}
}

// forward_auth identifies browsers by cookie (they cannot set headers on a WebSocket); the identity comes from
// the header the auth service returns.
func TestPermissionsWithForwardAuth(t *testing.T) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil || c.Value != "token-of-carol" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-User", "carol")
	}))
	defer auth.Close()
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	forward_auth `+strings.TrimPrefix(auth.URL, "http://")+` {
		uri /check
		copy_headers X-User
	}
	wskafka {
		brokers {brokers}
		identity {http.request.header.X-User}
		permissions {
			create user.{http.request.header.X-User}.*
		}
	}
}`)
	url := "ws://" + addr + "/"
	if _, status := dialWith(t, url, http.Header{"Cookie": {"session=forged"}}); status != http.StatusUnauthorized {
		t.Fatalf("upgrade with a bad cookie: got %d, want 401", status)
	}
	carol := dialHeader(t, url, http.Header{"Cookie": {"session=token-of-carol"}})
	topic := fmt.Sprintf("user.carol.%d", time.Now().UnixNano())
	if r := carol.request(`{"id":1,"t":"topic","a":"create","p":["`+topic+`"]}`, "1"); *r.S != 0 {
		t.Fatalf("carol creating her topic: got %s", r.P)
	}
	if r := carol.request(`{"id":2,"t":"topic","a":"create","p":["user.dave.x"]}`, "2"); r.errorCode() != "forbidden" {
		t.Fatalf("carol creating dave's topic: got %s, want forbidden", r.P)
	}
}

// Browsers' upgrades from other sites are refused unless listed; native clients (no Origin) always pass.
func TestOriginCheck(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
		origins https://app.example.com https://*.trusted.example
	}
}`)
	url := "ws://" + addr + "/"
	tests := []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://" + addr, http.StatusSwitchingProtocols},
		{"https://app.example.com", http.StatusSwitchingProtocols},
		{"https://eu.trusted.example", http.StatusSwitchingProtocols},
		{"https://evil.example", http.StatusForbidden},
		{"https://app.example.com.evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			header := http.Header{}
			if tt.origin != "" {
				header.Set("Origin", tt.origin)
			}
			if c, status := dialWith(t, url, header); status != tt.want {
				t.Fatalf("got %d, want %d", status, tt.want)
			} else if c != nil {
				c.conn.Close()
			}
		})
	}
}

// Past the route's or the client's connection limit the upgrade is refused, with 503 and 429.
func TestConnectionLimits(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	basic_auth {
		erin `+mustHash(t, "pw")+`
		frank `+mustHash(t, "pw")+`
	}
	wskafka {
		brokers {brokers}
		limits {
			max_connections 3
			max_connections_per_client 2
		}
	}
}`)
	url := "ws://" + addr + "/"
	erin := basicAuth("erin", "pw")
	frank := basicAuth("frank", "pw")
	e1 := dialHeader(t, url, erin)
	dialHeader(t, url, erin)
	if _, status := dialWith(t, url, erin); status != http.StatusTooManyRequests {
		t.Fatalf("erin's third socket: got %d, want 429", status)
	}
	dialHeader(t, url, frank)
	if _, status := dialWith(t, url, frank); status != http.StatusServiceUnavailable {
		t.Fatalf("the route's fourth socket: got %d, want 503", status)
	}
	// A closed socket gives its place back.
	e1.conn.Close()
	deadline := time.Now().Add(waitLimit)
	for {
		c, status := dialWith(t, url, frank)
		if status == http.StatusSwitchingProtocols {
			c.conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a close: got %d, want the upgrade to pass", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustHash(t *testing.T, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(hash)
}

// A frame over max_frame_bytes closes the socket with 1009; one within it is answered.
func TestFrameLimit(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
		limits {
			max_frame_bytes 1024
		}
	}
}`)
	c := dial(t, "ws://"+addr+"/")
	c.request(`{"id":1,"t":"health","pad":"`+strings.Repeat("x", 900)+`"}`, "1")
	c.send(`{"id":2,"t":"health","pad":"` + strings.Repeat("x", 2000) + `"}`)
	select {
	case err := <-c.closed:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("got %v, want close 1009", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("socket not closed after an oversized frame")
	}
}

// Over the publish rate a publish is answered rate_limited and not sent; requests naming too many topics are
// refused.
func TestPublishRateAndTopicLimits(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
		producer {
			mq_interval 0
		}
		limits {
			publish_rate 0.001 5
			max_topics 2
		}
	}
}`)
	topic := topicName(t)
	createTopic(t, topic)
	c := dial(t, "ws://"+addr+"/")
	for i := range 8 {
		c.send(fmt.Sprintf(`{"id":%d,"t":"notif","p":{"t":"%s","m":"%d"}}`, i, topic, i))
	}
	for i := 5; i < 8; i++ {
		if r := c.replyTo(fmt.Sprint(i)); r.errorCode() != "rate_limited" {
			t.Fatalf("publish %d: got %s, want rate_limited", i, r.P)
		}
	}
	waitRecords(t, topic, 5)
	if r := c.request(`{"id":"many","t":"topic","a":"create","p":["a1","a2","a3"]}`, `"many"`); r.errorCode() != "invalid_payload" {
		t.Fatalf("create naming 3 topics: got %s, want invalid_payload", r.P)
	}
}

// A socket that stops answering pings is closed; one that answers stays.
func TestKeepalive(t *testing.T) {
	addr := startCaddyfile(t, quietLogs+`
http://{addr} {
	wskafka {
		brokers {brokers}
		limits {
			ping_interval 100ms
			pong_timeout 100ms
		}
	}
}`)
	url := "ws://" + addr + "/"
	alive := dial(t, url) // reads all the time, so gorilla answers pings
	silent, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(600 * time.Millisecond) // several ping intervals without reading: no pongs
	silent.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		// Reading now answers the queued pings too late; the server has closed the connection.
		if _, _, err := silent.ReadMessage(); err != nil {
			break
		}
	}
	if r := alive.request(`{"id":1,"t":"health"}`, "1"); *r.S != 0 {
		t.Fatalf("the answering socket: got %+v", r)
	}
}
