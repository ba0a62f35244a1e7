package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/gorilla/websocket"
)

// The README's JWT recipe, run with the xcaddy-built binary: caddy-security's authorize handler checks an HS256
// token from the cookie access_token or the query parameter access_token (browsers set no headers on a
// WebSocket), the token's realm claim is the namespace ({http.auth.user.realm}), and its exp, which the policy
// injects as the header X-Expires, is the credential expiry.

// jwtSite is the recipe's Caddyfile; the environment variable WSK_JWT_KEY is the HS256 key. The route deletes
// any X-Expires the client sent: the policy sets it only from a token that has an exp.
var jwtSite = template.Must(template.New("jwt").Parse(`{
	admin off
	persist_config off
	security {
		authorization policy tenants {
			crypto key verify from env WSK_JWT_KEY
			set token sources cookie query
			disable auth redirect
			allow roles wskafka/tenant
			inject header "X-Expires" from exp
		}
	}
}

http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	route /ws {
		request_header -X-Expires
		authorize with tenants
		wskafka {
			brokers {{.Brokers}}
			client_id {{.ClientID}}
			namespace tenant.{http.auth.user.realm}_
			credential_expiry {http.request.header.X-Expires}
			permissions {
				create    *
				publish   *
				subscribe *
				list      *
				describe  *
			}
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

// jwtRole is the role the recipe's policy allows.
const jwtRole = "wskafka/tenant"

// signHS256 is a JWT (RFC 7519) of claims signed with HMAC-SHA256 (RFC 7518 §3.2).
func signHS256(key []byte, claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// tenantClaims are the claims of a user of tenant whose token expires at exp.
func tenantClaims(tenant string, exp time.Time) map[string]any {
	return map[string]any{"sub": "user@" + tenant, "realm": tenant, "roles": []string{jwtRole}, "exp": exp.Unix()}
}

// without returns claims less the named ones.
func without(claims map[string]any, names ...string) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		if !slices.Contains(names, k) {
			out[k] = v
		}
	}
	return out
}

func jwtCookie(token string) http.Header { return http.Header{"Cookie": {"access_token=" + token}} }

func jwtQuery(token string) string { return "access_token=" + url.QueryEscape(token) }

// startJWT starts the xcaddy-built Caddy with the recipe and a key of its own; extra are lines for the wskafka block.
func startJWT(t *testing.T, extra string) (*caddyServer, []byte) {
	t.Helper()
	if xcaddy == nil {
		t.Fatal("the xcaddy build was not started")
	}
	bin := xcaddy.wait(t)
	key := make([]byte, 32)
	rand.Read(key)
	hexKey := hex.EncodeToString(key)
	srv := startCaddy(t, caddyOptions{bin: bin, site: jwtSite, env: []string{"WSK_JWT_KEY=" + hexKey}, wskafka: extra})
	return srv, []byte(hexKey)
}

// TestJWT checks the README's JWT recipe against Kafka: a token in a cookie and one in the query string each
// reach only their tenant's topics (read back with kcat under the prefixed names), tokens that are missing,
// forged, expired or lack a claim are refused, and a socket whose token expires closes with 4001 with every
// publish it sent in Kafka.
func TestJWT(t *testing.T) {
	needSuite(t)
	needKcat(t)
	t.Run("tenants", testJWTTenants)
	t.Run("refused", testJWTRefused)
	t.Run("expiry", testJWTExpiry)
}

// testJWTTenants connects one tenant by cookie and one by query string: each creates, publishes and lists in
// its own namespace only.
func testJWTTenants(t *testing.T) {
	srv, key := startJWT(t, "")
	hour := time.Now().Add(time.Hour)
	tenants := []struct {
		name   string
		tenant string
		topic  string
		conn   func(token string) *tenantConn
	}{
		{"cookie", uniqueName(t, "a"), "orders", func(token string) *tenantConn {
			return mustDialTenant(t, srv, "", jwtCookie(token))
		}},
		{"query", uniqueName(t, "b"), "invoices", func(token string) *tenantConn {
			return mustDialTenant(t, srv, jwtQuery(token), nil)
		}},
	}
	conns := make([]*tenantConn, len(tenants))
	for i, tt := range tenants {
		c := tt.conn(signHS256(key, tenantClaims(tt.tenant, hour)))
		conns[i] = c
		if r := c.ask(`{"id":1,"t":"topic","a":"create","p":["`+tt.topic+`"]}`, "1")[0]; r.S != 0 || string(r.P) != `["`+tt.topic+`"]` {
			t.Fatalf("%s: create %s: got %s", tt.name, tt.topic, r.P)
		}
		for j := range 3 {
			id := strconv.Itoa(10 + j)
			if r := c.ask(`{"id":`+id+`,"t":"notif","ack":true,"p":{"t":"`+tt.topic+`","m":"`+tt.name+` `+id+`"}}`, id)[0]; r.S != 0 {
				t.Fatalf("%s: publish: got %s", tt.name, r.P)
			}
		}
	}
	for i, tt := range tenants {
		other := tenants[1-i].topic
		if r := conns[i].ask(`{"id":2,"t":"topic","a":"list"}`, "2")[0]; string(r.P) != `[{"topic":"`+tt.topic+`","partition":0}]` {
			t.Errorf("%s: list: got %s, want only %s", tt.name, r.P, tt.topic)
		}
		if r := conns[i].ask(`{"id":3,"t":"topic","a":"describe","p":["`+other+`"]}`, "3")[0]; r.code() != "unknown_topic" {
			t.Errorf("%s: describe the other tenant's %s: got %s, want unknown_topic", tt.name, other, r.P)
		}
	}
	for _, tt := range tenants {
		kcatWaitFor(t, "tenant."+tt.tenant+"_"+tt.topic, [][]byte{[]byte(tt.name + " 10"), []byte(tt.name + " 11"), []byte(tt.name + " 12")})
	}
}

// testJWTRefused offers tokens the recipe must refuse, in the cookie and in the query string.
func testJWTRefused(t *testing.T) {
	srv, key := startJWT(t, "")
	tenant := uniqueName(t, "t")
	hour := time.Now().Add(time.Hour)
	other := []byte("not the key of the route, but as long as it")
	valid := tenantClaims(tenant, hour)
	expired := signHS256(key, tenantClaims(tenant, time.Now().Add(-5*time.Second)))
	withProtocol := func(h http.Header) http.Header {
		h.Set("Sec-WebSocket-Protocol", "wskafka")
		return h
	}
	withExpires := func(h http.Header) http.Header {
		h.Set("X-Expires", strconv.FormatInt(hour.Unix(), 10))
		return h
	}
	payload, _ := json.Marshal(valid)
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	// by is what Caddy logs about the refusal: which handler refused, and why.
	const (
		authorize = `"logger":"http.handlers.authentication","msg":"auth provider returned error"`
		wskafka   = `"logger":"http.handlers.wskafka","msg":"connection refused"`
	)
	tests := []struct {
		name   string
		query  string
		header http.Header
		status int
		by     []string
	}{
		{"no token", "", nil, http.StatusUnauthorized, []string{authorize, "no token found"}},
		{"bad signature in the cookie", "", jwtCookie(signHS256(other, valid)), http.StatusUnauthorized, []string{authorize, "failed to parse token"}},
		{"bad signature in the query", jwtQuery(signHS256(other, valid)), nil, http.StatusUnauthorized, []string{authorize, "failed to parse token"}},
		{"alg none", jwtQuery(unsigned), nil, http.StatusUnauthorized, []string{authorize, "failed to parse token"}},
		{"expired", "", jwtCookie(expired), http.StatusUnauthorized, []string{authorize, "token has expired"}},
		// authorize refuses before wskafka could close in band with 4001: a browser sees 1006.
		{"expired, with the subprotocol", "", withProtocol(jwtCookie(expired)), http.StatusUnauthorized, []string{authorize, "token has expired"}},
		// The token passes authorize, which injects no X-Expires, and the route deleted the forged one.
		{"no exp, X-Expires forged", "", withExpires(jwtCookie(signHS256(key, without(valid, "exp")))), http.StatusUnauthorized, []string{wskafka, `"reason":"credential_unreadable"`}},
		{"no realm", jwtQuery(signHS256(key, without(valid, "realm"))), nil, http.StatusForbidden, []string{wskafka, `"reason":"namespace"`}},
		{"not the tenant's role", jwtQuery(signHS256(key, without(valid, "roles"))), nil, http.StatusForbidden, []string{authorize, "not allowed by access list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Log())
			c, resp, err := dialTenant(t, srv, tt.query, tt.header)
			if err == nil {
				code, cerr := c.closeCode(replyTimeout)
				t.Fatalf("upgraded (then closed with %d, %v), want %d", code, cerr, tt.status)
			}
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("got %v (%v), want %d", resp, err, tt.status)
			}
			// Caddy logs the refusal before it answers; the log is a file written without a buffer.
			if log := srv.Log()[before:]; !logLineWith(log, tt.by) {
				t.Fatalf("Caddy logged %q, want a line with %q", log, tt.by)
			}
		})
	}
}

// testJWTExpiry publishes until the token expires, with every publish buffered (mq_interval 1h): the socket
// closes with 4001 soon after exp, every publish it sent is in Kafka, and the receipts it got are those of the
// first publishes sent.
func testJWTExpiry(t *testing.T) {
	srv, key := startJWT(t, "\t\t\tproducer {\n\t\t\t\tmq_interval 1h\n\t\t\t}")
	tenant := uniqueName(t, "t")
	// Whole seconds, as a JWT's exp: two to three seconds from now, to create the topic first.
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
	c := mustDialTenant(t, srv, jwtQuery(signHS256(key, tenantClaims(tenant, exp))), nil)
	if r := c.ask(`{"id":"c","t":"topic","a":"create","p":["buffered"]}`, `"c"`)[0]; r.S != 0 {
		t.Fatalf("create: got %s", r.P)
	}

	// The reader takes the receipts until the close frame; the writer publishes until then, every 5 ms.
	const closeBound = 3 * time.Second // after exp; the close is expected within a second
	type closing struct {
		code int
		at   time.Time
		err  error
	}
	receipts := make(chan int, 1000)
	closed := make(chan closing, 1)
	go func() {
		defer close(receipts)
		c.conn.SetReadDeadline(exp.Add(closeBound))
		for {
			_, data, err := c.conn.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					closed <- closing{code: ce.Code, at: time.Now()}
				} else {
					closed <- closing{err: err}
				}
				return
			}
			var r tenantReply
			if json.Unmarshal(data, &r) != nil {
				continue
			}
			id, err := strconv.Atoi(string(r.RefID))
			if err != nil || r.S != 0 {
				t.Errorf("unexpected frame %s", data)
				continue
			}
			select {
			case receipts <- id:
			default:
				t.Errorf("more receipts than publishes: %s", data)
			}
		}
	}()
	var sent int
	ticker := time.NewTicker(5 * time.Millisecond)
	defer ticker.Stop()
publishing:
	for sent < cap(receipts) {
		select {
		case end := <-closed:
			closed <- end
			break publishing
		case <-ticker.C:
		}
		frame := fmt.Sprintf(`{"id":%d,"t":"notif","ack":true,"p":{"t":"buffered","m":"m%d"}}`, sent, sent)
		c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			break publishing // the client answered the close frame: nothing more is sent
		}
		sent++
	}
	end := <-closed // by the read deadline at the latest
	var answered []int
	for id := range receipts {
		answered = append(answered, id)
	}
	if end.err != nil || end.code != 4001 {
		t.Fatalf("got close code %d (%v), want 4001 within %v of exp", end.code, end.err, closeBound)
	}
	slices.Sort(answered)
	for i, id := range answered {
		if id != i {
			t.Fatalf("receipts %v: not those of the first %d publishes", answered, len(answered))
		}
	}
	if len(answered) == 0 {
		t.Fatalf("no publish of %d answered before the close frame", sent)
	}
	t.Logf("closed %v after exp; %d publishes sent, %d answered before the close frame (mq_interval 1h)",
		end.at.Sub(exp).Round(time.Millisecond), sent, len(answered))

	want := make([][]byte, sent)
	for i := range want {
		want[i] = fmt.Appendf(nil, "m%d", i)
	}
	kcatWaitFor(t, "tenant."+tenant+"_buffered", want)
}

// logLineWith reports whether one line of log holds every one of parts.
func logLineWith(log string, parts []string) bool {
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}
