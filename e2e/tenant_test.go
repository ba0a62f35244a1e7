package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/gorilla/websocket"
)

// The multi-tenant suite: one Caddy, many tenants. forward_auth asks a small auth service (below) about each
// upgrade; it validates an HS256 JWT taken from a cookie or from the query string (browsers set no headers on a
// WebSocket) and answers with the tenant and the token's expiry as headers, which the route uses as its namespace
// and its credential expiry.

// tenantSite is the Caddyfile of the suite's multi-tenant route; {$WSK_AUTH} is the auth service's address.
var tenantSite = template.Must(template.New("tenant").Parse(`{
	admin off
	persist_config off
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	route /ws {
		forward_auth {$WSK_AUTH} {
			uri /check
			copy_headers X-Tenant X-Expires
		}
		wskafka {
			brokers {{.Brokers}}
			client_id {{.ClientID}}
			namespace {http.request.header.X-Tenant}.
			credential_expiry {http.request.header.X-Expires}
			permissions {
				create    *
				publish   *
				subscribe *
				list      *
				describe  *
				delete    *
				groups    *
				health    all
			}
			topics {
				partitions 1
				allow_delete
			}
			consumer {
				group_id {{.GroupID}}
				mq_interval 20ms
				commit_interval 200ms
			}
{{.Extra}}
		}
	}
	respond "wskafka e2e" 200
}
`))

// authService issues and checks the tokens of the suite's tenants.
type authService struct {
	key    []byte
	leeway time.Duration // how long after exp a token still passes, as JWT libraries allow for clock skew
	srv    *httptest.Server
}

func startAuth(t *testing.T, leeway time.Duration) *authService {
	t.Helper()
	a := &authService{key: []byte("e2e-" + runID), leeway: leeway}
	mux := http.NewServeMux()
	mux.HandleFunc("/check", a.check)
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authService) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// token is an HS256 JWT (RFC 7519) for tenant, expiring at exp.
func (a *authService) token(tenant string, exp time.Time) string {
	return signHS256(a.key, map[string]any{"tenant": tenant, "exp": exp.Unix()})
}

// check is forward_auth's endpoint: 2xx with X-Tenant and X-Expires for a valid token, 401 otherwise. The token
// comes from the cookie "session", or from the query string of the original request (X-Forwarded-Uri).
func (a *authService) check(w http.ResponseWriter, r *http.Request) {
	token := ""
	if c, err := r.Cookie("session"); err == nil {
		token = c.Value
	} else if u, err := url.Parse(r.Header.Get("X-Forwarded-Uri")); err == nil {
		token = u.Query().Get("token")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Tenant string `json:"tenant"`
		Exp    int64  `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || time.Unix(claims.Exp, 0).Add(a.leeway).Before(time.Now()) {
		http.Error(w, "expired", http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-Tenant", claims.Tenant)
	w.Header().Set("X-Expires", strconv.FormatInt(claims.Exp, 10))
}

// tenantConn is one raw WebSocket of a tenant, for frames written by hand.
type tenantConn struct {
	t    *testing.T
	conn *websocket.Conn
}

// dialTenant opens the route's socket with a header (a cookie, or a forged X-Tenant) and query.
func dialTenant(t *testing.T, srv *caddyServer, query string, header http.Header) (*tenantConn, *http.Response, error) {
	t.Helper()
	u := srv.url()
	if query != "" {
		u += "?" + query
	}
	d := websocket.Dialer{HandshakeTimeout: dialTimeout}
	conn, resp, err := d.Dial(u, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	return &tenantConn{t: t, conn: conn}, resp, nil
}

func mustDialTenant(t *testing.T, srv *caddyServer, query string, header http.Header) *tenantConn {
	t.Helper()
	c, resp, err := dialTenant(t, srv, query, header)
	if err != nil {
		t.Fatalf("dialing: %v (%v)", err, resp)
	}
	return c
}

func cookie(token string) http.Header { return http.Header{"Cookie": {"session=" + token}} }

// tenantReply is a reply as the attack table checks it.
type tenantReply struct {
	RefID json.RawMessage `json:"refid"`
	S     int             `json:"s"`
	P     json.RawMessage `json:"p"`
}

func (r tenantReply) code() string {
	var p errorPayload
	json.Unmarshal(r.P, &p)
	return p.Code
}

// ask sends frame and returns the replies with the refids given, in that order, skipping other frames.
func (c *tenantConn) ask(frame string, refids ...string) []tenantReply {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("writing %s: %v", frame, err)
	}
	got := map[string]tenantReply{}
	c.conn.SetReadDeadline(time.Now().Add(replyTimeout))
	for len(got) < len(refids) {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.t.Fatalf("waiting for the replies to %s: %v", frame, err)
		}
		var r tenantReply
		if data[0] == '{' && json.Unmarshal(data, &r) == nil && slices.Contains(refids, string(r.RefID)) {
			got[string(r.RefID)] = r
		}
	}
	out := make([]tenantReply, len(refids))
	for i, id := range refids {
		out[i] = got[id]
	}
	return out
}

// closeCode reads until the server's close frame and returns its code.
func (c *tenantConn) closeCode(timeout time.Duration) (int, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, nil
			}
			return 0, err
		}
	}
}

// kcatTopics lists every topic of the cluster.
func kcatTopics(t *testing.T) []string {
	t.Helper()
	var md struct {
		Topics []struct {
			Topic string `json:"topic"`
		} `json:"topics"`
	}
	out := kcat(t, nil, "-L", "-J")
	if err := json.Unmarshal(out, &md); err != nil {
		t.Fatalf("kcat -L -J: %v\n%s", err, out)
	}
	var names []string
	for _, tp := range md.Topics {
		names = append(names, tp.Topic)
	}
	return names
}

// TestTenantIsolation is a tenant trying every field that takes a name to reach another tenant's topics and
// groups, through forward_auth and the real binary, with Kafka read back by kcat: nothing of alice's is created,
// read, listed, described or deleted, and every refusal is s:1 with the request's refid.
func TestTenantIsolation(t *testing.T) {
	needSuite(t)
	needKcat(t)
	auth := startAuth(t, 0)
	srv := startCaddy(t, caddyOptions{site: tenantSite, env: []string{"WSK_AUTH=" + auth.addr()}})
	a := strings.ReplaceAll(uniqueName(t, "alice"), "_", "-")
	b := strings.ReplaceAll(uniqueName(t, "bob"), "_", "-")
	hour := time.Now().Add(time.Hour)

	if _, resp, err := dialTenant(t, srv, "", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: got %v, %v, want 401 from forward_auth", resp, err)
	}

	// Alice, by cookie: her topic, three records, her group reads them.
	alice := mustDialTenant(t, srv, "", cookie(auth.token(a, hour)))
	if r := alice.ask(`{"id":1,"t":"topic","a":"create","p":["orders"]}`, "1")[0]; r.S != 0 || string(r.P) != `["orders"]` {
		t.Fatalf("alice's create: got %s", r.P)
	}
	for i := range 3 {
		id := strconv.Itoa(10 + i)
		if r := alice.ask(`{"id":`+id+`,"t":"notif","ack":true,"p":{"t":"orders","m":"secret `+id+`"}}`, id)[0]; r.S != 0 || !strings.HasPrefix(string(r.P), `{"t":"orders",`) {
			t.Fatalf("alice's publish: got %s", r.P)
		}
	}
	if r := alice.ask(`{"id":2,"t":"topic","a":"subscribe","p":{"t":["orders"],"consumer_group":"billing","from":"earliest","meta":true}}`, "2")[0]; string(r.P) != `["orders"]` {
		t.Fatalf("alice's subscribe: got %s", r.P)
	}
	alice.ask(`{"id":3,"t":"topic","a":"unsubscribe"}`, "3")
	before := kcatTopics(t)

	// Bob, by query string as a browser would, forging alice's tenant in a header forward_auth replaces.
	bob := mustDialTenant(t, srv, "token="+url.QueryEscape(auth.token(b, hour)), http.Header{"X-Tenant": {a}})
	long := strings.Repeat("x", 249-len(b)-1)
	tests := []struct {
		name  string
		frame string
		code  string // "" for s:0
		p     string // in the reply's p
	}{
		{"list", `{"id":"list","t":"topic","a":"list"}`, "", `[]`},
		{"describe her topic", `{"id":"d1","t":"topic","a":"describe","p":["orders"]}`, "unknown_topic", "no such topic: orders"},
		{"describe by her Kafka name", `{"id":"d2","t":"topic","a":"describe","p":{"t":["` + a + `.orders"],"consumer_group":"billing"}}`, "unknown_topic", "no such topic: " + a + ".orders"},
		{"subscribe to her topic", `{"id":"s1","t":"topic","a":"subscribe","p":{"t":["orders"],"consumer_group":"billing"}}`, "unknown_topic", "orders"},
		{"subscribe by her Kafka name", `{"id":"s2","t":"topic","a":"subscribe","p":{"t":["` + a + `.orders"],"from":"earliest"}}`, "unknown_topic", a + ".orders"},
		{"broadcast by her Kafka name", `{"id":"s3","t":"topic","a":"subscribe","p":{"t":["` + a + `.orders"],"mode":"broadcast","from":"earliest"}}`, "unknown_topic", a + ".orders"},
		{"seek into her topic", `{"id":"k","t":"topic","a":"subscribe","p":{"t":["mine"],"seek":{"` + a + `.orders":{"0":0}}}}`, "invalid_payload", "not in p.t"},
		{"ack her partition", `{"id":"ack","t":"notif","a":"ack","p":{"t":"` + a + `.orders","part":0,"offset":2}}`, "invalid_payload", "nothing to acknowledge"},
		{"delete her topic", `{"id":"x1","t":"topic","a":"delete","p":["orders"]}`, "unknown_topic", "orders"},
		{"delete by her Kafka name", `{"id":"x2","t":"topic","a":"delete","p":["` + a + `.orders"]}`, "unknown_topic", a + ".orders"},
		{"glob", `{"id":"g1","t":"topic","a":"describe","p":["*"]}`, "invalid_topic", `contains '*'`},
		{"glob in a group", `{"id":"g2","t":"topic","a":"describe","p":{"t":["mine"],"consumer_group":"*"}}`, "unknown_topic", "mine"},
		{"class", `{"id":"g3","t":"topic","a":"subscribe","p":{"t":["[a-z]*"]}}`, "invalid_topic", `contains '['`},
		{"path", `{"id":"p1","t":"topic","a":"create","p":["../` + a + `.orders"]}`, "invalid_topic", `contains '/'`},
		{"upper case", `{"id":"u1","t":"topic","a":"describe","p":["` + strings.ToUpper(a) + `.ORDERS"]}`, "unknown_topic", strings.ToUpper(a)},
		{"too long with the prefix", `{"id":"l1","t":"topic","a":"create","p":["` + long + `x"]}`, "invalid_topic", "the most this route's namespace leaves"},
		{"group too long with the prefix", `{"id":"l2","t":"topic","a":"subscribe","p":{"t":["mine"],"consumer_group":"` + strings.Repeat("g", 256-len(b)) + `"}}`, "invalid_topic", "consumer group name"},
		{"create by her Kafka name makes his own", `{"id":"c1","t":"topic","a":"create","p":["` + a + `.orders"]}`, "", `["` + a + `.orders"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var id string
			json.Unmarshal([]byte(tt.frame), &struct{ ID *string }{&id})
			r := bob.ask(tt.frame, `"`+id+`"`)[0]
			switch {
			case tt.code == "" && (r.S != 0 || !strings.Contains(string(r.P), tt.p)):
				t.Fatalf("got s %d p %s, want s 0 with %s", r.S, r.P, tt.p)
			case tt.code != "" && (r.code() != tt.code || !strings.Contains(string(r.P), tt.p)):
				t.Fatalf("got %s, want %s naming %s", r.P, tt.code, tt.p)
			case strings.Contains(string(r.P), b+"."):
				t.Fatalf("the reply %s names bob's own prefix", r.P)
			}
		})
	}
	// An array mixing names: each answered as if sent alone, every name bob's.
	rs := bob.ask(`[{"id":"m1","t":"notif","ack":true,"p":{"t":"`+a+`.orders","m":"bob's"}},{"id":"m2","t":"topic","a":"describe","p":["orders"]},{"id":"m3","t":"topic","a":"describe","p":["`+a+`.orders"]}]`, `"m1"`, `"m2"`, `"m3"`)
	if rs[0].S != 0 || rs[1].code() != "unknown_topic" || rs[2].S != 0 || !strings.HasPrefix(string(rs[2].P), `[{"topic":"`+a+`.orders"`) {
		t.Fatalf("array: got %s / %s / %s", rs[0].P, rs[1].P, rs[2].P)
	}
	// Bob deletes what he calls alice's topic: his own copy goes, hers stays.
	if r := bob.ask(`{"id":"x3","t":"topic","a":"delete","p":["`+a+`.orders"]}`, `"x3"`)[0]; r.S != 0 {
		t.Fatalf("bob deleting his copy: got %s", r.P)
	}

	// Kafka, read with kcat: alice's topic holds her three records only, bob made nothing outside his prefix.
	kcatWaitFor(t, a+".orders", [][]byte{[]byte("secret 10"), []byte("secret 11"), []byte("secret 12")})
	for _, name := range kcatTopics(t) {
		if !slices.Contains(before, name) && !strings.HasPrefix(name, b+".") {
			t.Errorf("kafka has %s, made by bob outside his namespace", name)
		}
	}
	// Alice's group is untouched: its committed offset is where her subscription left it.
	r := alice.ask(`{"id":4,"t":"topic","a":"describe","p":{"t":["orders"],"consumer_group":"billing"}}`, "4")[0]
	var desc []struct {
		Topic      string `json:"topic"`
		Partitions []struct {
			Committed *int64 `json:"committed"`
		} `json:"partitions"`
	}
	if json.Unmarshal(r.P, &desc) != nil || len(desc) != 1 || desc[0].Topic != "orders" {
		t.Fatalf("alice's describe: got %s", r.P)
	}
	if r := alice.ask(`{"id":5,"t":"topic","a":"list"}`, "5")[0]; string(r.P) != `[{"topic":"orders","partition":0}]` {
		t.Fatalf("alice's list: got %s", r.P)
	}
}

// TestTenantCredentialExpiry checks that a socket closes with 4001 when its token expires, after publishing what
// it had buffered (counted with kcat), and that a token the auth service still lets through after its exp
// (clock-skew leeway) is refused by wskafka: 401, or 4001 in the close frame with the wskafka subprotocol.
func TestTenantCredentialExpiry(t *testing.T) {
	needSuite(t)
	needKcat(t)
	auth := startAuth(t, time.Minute)
	srv := startCaddy(t, caddyOptions{site: tenantSite, env: []string{"WSK_AUTH=" + auth.addr()},
		wskafka: "\t\t\tproducer {\n\t\t\t\tmq_interval 1h\n\t\t\t}"})
	tenant := uniqueName(t, "t")

	expired := auth.token(tenant, time.Now().Add(-5*time.Second))
	if _, resp, err := dialTenant(t, srv, "", cookie(expired)); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: got %v, %v, want 401", resp, err)
	}
	header := cookie(expired)
	header.Set("Sec-WebSocket-Protocol", "wskafka")
	c := mustDialTenant(t, srv, "", header)
	if code, err := c.closeCode(replyTimeout); code != 4001 {
		t.Fatalf("expired token with the subprotocol: got close code %d (%v), want 4001", code, err)
	}

	// Whole seconds, as a JWT's exp: at least 2 s ahead, to create the topic and publish first.
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
	c = mustDialTenant(t, srv, "", cookie(auth.token(tenant, exp)))
	if r := c.ask(`{"id":1,"t":"topic","a":"create","p":["buffered"]}`, "1")[0]; r.S != 0 {
		t.Fatalf("create: got %s", r.P)
	}
	const n = 200
	var want [][]byte
	for i := range n {
		m := fmt.Sprintf("m%d", i)
		want = append(want, []byte(m))
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(`{"t":"notif","p":{"t":"buffered","m":"`+m+`"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	code, err := c.closeCode(time.Until(exp) + replyTimeout)
	closed := time.Now()
	if code != 4001 {
		t.Fatalf("got close code %d (%v), want 4001", code, err)
	}
	t.Logf("closed %v after the expiry, %d publishes buffered (mq_interval 1h)", closed.Sub(exp).Round(time.Millisecond), n)
	kcatWaitFor(t, tenant+".buffered", want)
}

// onDemandSite serves any host name the ask endpoint ({$WSK_ASK}) approves, with a certificate from Caddy's
// internal CA issued at the first handshake, and a namespace per host name, ended by "_", which no host name
// holds, so that no tenant's namespace begins another's. strict_sni_host makes the Host of every request the
// TLS server name it came in on, so that the namespace is that of the certificate.
var onDemandSite = template.Must(template.New("on-demand").Parse(`{
	admin off
	persist_config off
	skip_install_trust
	on_demand_tls {
		ask {$WSK_ASK}
	}
	servers {
		strict_sni_host on
	}
}

https://:{{.Port}} {
	bind 127.0.0.1
	tls internal {
		on_demand
	}
	route /ws {
		wskafka {
			brokers {{.Brokers}}
			client_id {{.ClientID}}
			namespace {http.request.host}_
			topics {
				partitions 1
			}
			consumer {
				group_id {{.GroupID}}
			}
{{.Extra}}
		}
	}
	respond "wskafka e2e" 200
}
`))

// TestOnDemandTLS serves two customer host names from one Caddy with certificates on demand: each host name
// resolves to loopback (dialled as 127.0.0.1 with its SNI and Host), sees only its own topics, and a host name
// the ask endpoint does not approve gets no certificate.
func TestOnDemandTLS(t *testing.T) {
	needSuite(t)
	needKcat(t)
	run := strings.ToLower(strings.ReplaceAll(runID, "-", ""))
	approved := map[string]bool{"shop-" + run + ".test": true, "news-" + run + ".test": true}
	asked := make(chan string, 16)
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		domain := r.URL.Query().Get("domain")
		asked <- domain
		if !approved[domain] {
			http.Error(w, "not a customer", http.StatusNotFound)
		}
	}))
	defer ask.Close()
	srv := startCaddy(t, caddyOptions{site: onDemandSite, env: []string{"WSK_ASK=" + ask.URL + "/ask"}})
	pool, err := srv.loadRoots()
	if err != nil {
		t.Fatal(err)
	}
	// dialHost dials host's socket; sni, when set, is the TLS server name instead of host.
	dialHost := func(host, sni string) (*websocket.Conn, error) {
		d := websocket.Dialer{
			HandshakeTimeout: dialTimeout,
			TLSClientConfig:  &tls.Config{RootCAs: pool, ServerName: sni},
			NetDial: func(network, _ string) (net.Conn, error) {
				return net.Dial(network, fmt.Sprintf("127.0.0.1:%d", srv.port))
			},
		}
		conn, _, err := d.Dial(fmt.Sprintf("wss://%s:%d/ws", host, srv.port), nil)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
		}
		return conn, err
	}

	shop, news := "shop-"+run+".test", "news-"+run+".test"
	conns := map[string]*tenantConn{}
	for _, host := range []string{shop, news} {
		conn, err := dialHost(host, "")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		conns[host] = &tenantConn{t: t, conn: conn}
	}
	if r := conns[shop].ask(`{"id":1,"t":"topic","a":"create","p":["orders"]}`, "1")[0]; r.S != 0 {
		t.Fatalf("%s create: got %s", shop, r.P)
	}
	if r := conns[news].ask(`{"id":1,"t":"topic","a":"create","p":["headlines"]}`, "1")[0]; r.S != 0 {
		t.Fatalf("%s create: got %s", news, r.P)
	}
	for host, want := range map[string]string{shop: "orders", news: "headlines"} {
		if r := conns[host].ask(`{"id":2,"t":"topic","a":"list"}`, "2")[0]; string(r.P) != `[{"topic":"`+want+`","partition":0}]` {
			t.Errorf("%s list: got %s, want only %s", host, r.P, want)
		}
	}
	if r := conns[news].ask(`{"id":3,"t":"topic","a":"describe","p":["orders"]}`, "3")[0]; r.code() != "unknown_topic" {
		t.Errorf("%s describing %s's topic: got %s", news, shop, r.P)
	}
	topics := kcatTopics(t)
	for _, want := range []string{shop + "_orders", news + "_headlines"} {
		if !slices.Contains(topics, want) {
			t.Errorf("kafka lacks %s", want)
		}
	}

	evil := "evil-" + run + ".test"
	// A certificate of one customer does not open another's namespace: the Host must be the TLS server name.
	if _, err := dialHost(news, shop); err == nil {
		t.Fatalf("Host %s over a TLS connection to %s: upgraded, want refused", news, shop)
	} else {
		t.Logf("Host %s over a TLS connection to %s: %v", news, shop, err)
	}
	if _, err := dialHost(evil, ""); err == nil {
		t.Fatalf("%s: got a certificate, want none", evil)
	} else {
		t.Logf("%s: %v", evil, err)
	}
	var seen []string
	for len(asked) > 0 {
		seen = append(seen, <-asked)
	}
	if !slices.Contains(seen, evil) {
		t.Errorf("the ask endpoint was asked about %q, not about %s", seen, evil)
	}
}

// TestClientCredentials runs the client library against the tenant route with a token in the query string (as a
// browser sends one) that expires after two seconds: the server closes with 4001, the library asks the
// application for a new token once, reconnects with it, and publishes again in the same namespace.
func TestClientCredentials(t *testing.T) {
	needSuite(t)
	node := needNode(t)
	needKcat(t)
	auth := startAuth(t, 0)
	tenant := uniqueName(t, "t")
	issued := 0
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ttl := time.Hour
		if issued++; issued == 1 {
			ttl = 3 * time.Second // whole seconds, as a JWT's exp: two to three seconds from now
		}
		fmt.Fprint(w, auth.token(tenant, time.Now().Add(ttl)))
	}))
	defer tokens.Close()
	srv := startCaddy(t, caddyOptions{site: tenantSite, env: []string{"WSK_AUTH=" + auth.addr()}})
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", "node", "credentials.mjs"), srv.url(), tokens.URL)
	cmd.Dir = projectRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node credentials.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	var got struct {
		Retries  []int
		Renewals int
		Before   struct{ Topic string }
		After    struct{ Topic string }
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node credentials.mjs printed %s: %v", out, err)
	}
	if !slices.Contains(got.Retries, 4001) || got.Renewals != 1 || got.Before.Topic != "renewed" || got.After.Topic != "renewed" {
		t.Fatalf("got %+v, want a 4001 retry, one renewal and receipts naming renewed", got)
	}
	kcatWaitFor(t, tenant+".renewed", [][]byte{[]byte("before"), []byte("after")})
}
