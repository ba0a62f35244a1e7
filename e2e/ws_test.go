package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Bounds of a WebSocket exchange. Kafka operations (a group join on real Kafka, a topic create) take seconds, not
// tens of seconds; the bounds only keep a broken server from hanging the suite.
const (
	dialTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	replyTimeout = 45 * time.Second // a subscribe waits for the group join and offsets
)

// reply is one server frame that answers a request: {id, refid, t, a, s, p}.
type reply struct {
	raw    []byte
	fields map[string]json.RawMessage // every key as sent, to tell "absent" from "null"
	ID     json.Number
	RefID  json.RawMessage
	T      string
	A      string
	S      int
	P      json.RawMessage
}

// has reports whether the frame carried the key.
func (r reply) has(key string) bool { _, ok := r.fields[key]; return ok }

// errorPayload is the p of every s:1 reply.
type errorPayload struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (r reply) errorPayload() (errorPayload, error) {
	var p errorPayload
	err := json.Unmarshal(r.P, &p)
	return p, err
}

// notification is one element of a notification frame: [{"id":N,"t":"notif","p":"…"}].
type notification struct {
	ID json.Number `json:"id"`
	T  string      `json:"t"`
	P  *string     `json:"p"`
	// raw is the element as sent, for what a subscription with opt-ins adds ("meta": true).
	raw json.RawMessage
}

// wsClient is a gorilla/websocket client of the protocol. Notifications that arrive while it waits for a reply are
// kept, in order, for receive. It is used by one goroutine at a time.
type wsClient struct {
	name   string
	conn   *websocket.Conn
	nextID int
	seen   map[string]bool // server frame ids: unique within the connection
	notifs []notification
}

// dial opens a WebSocket to url; tlsConfig is used for wss. t.Cleanup closes it.
func dial(t *testing.T, name, url string, tlsConfig *tls.Config) *wsClient {
	t.Helper()
	c, err := dialErr(name, url, tlsConfig)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(c.close)
	return c
}

func dialErr(name, url string, tlsConfig *tls.Config) (*wsClient, error) {
	d := websocket.Dialer{HandshakeTimeout: dialTimeout, TLSClientConfig: tlsConfig}
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", url, err)
	}
	resp.Body.Close()
	return &wsClient{name: name, conn: conn, nextID: 1000, seen: make(map[string]bool)}, nil
}

func (c *wsClient) close() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	c.conn.Close()
}

// writeFrame sends one text frame as is.
func (c *wsClient) writeFrame(frame []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
		return fmt.Errorf("%s: writing %s: %w", c.name, frame, err)
	}
	return nil
}

// send encodes msg as JSON and sends it.
func (c *wsClient) send(msg map[string]any) error {
	frame, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return c.writeFrame(frame)
}

// readFrame reads one frame; a notification frame is kept and reported as nil. A read that times out breaks the
// connection (gorilla/websocket), which is fine: every timeout is a failure.
func (c *wsClient) readFrame(deadline time.Time) (*reply, error) {
	c.conn.SetReadDeadline(deadline)
	typ, frame, err := c.conn.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("%s: reading: %w", c.name, err)
	}
	if typ != websocket.TextMessage {
		return nil, fmt.Errorf("%s: got frame type %d, want text (%d): %q", c.name, typ, websocket.TextMessage, frame)
	}
	trimmed := bytes.TrimSpace(frame)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(frame, &elems); err != nil {
			return nil, fmt.Errorf("%s: notification frame %q: %w", c.name, frame, err)
		}
		batch := make([]notification, len(elems))
		for i, e := range elems {
			if err := json.Unmarshal(e, &batch[i]); err != nil {
				return nil, fmt.Errorf("%s: notification %s: %w", c.name, e, err)
			}
			batch[i].raw = e
		}
		if len(batch) == 0 {
			return nil, fmt.Errorf("%s: got an empty notification frame, want at least one notification", c.name)
		}
		for _, n := range batch {
			if n.T != "notif" {
				return nil, fmt.Errorf("%s: notification t = %q, want %q in %s", c.name, n.T, "notif", frame)
			}
			if err := c.checkID(n.ID, frame); err != nil {
				return nil, err
			}
		}
		c.notifs = append(c.notifs, batch...)
		return nil, nil
	}
	r := reply{raw: frame}
	if err := json.Unmarshal(frame, &r.fields); err != nil {
		return nil, fmt.Errorf("%s: frame %q is neither an array nor an object: %w", c.name, frame, err)
	}
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.UseNumber()
	var env struct {
		ID    json.Number     `json:"id"`
		RefID json.RawMessage `json:"refid"`
		T     string          `json:"t"`
		A     string          `json:"a"`
		S     *int            `json:"s"`
		P     json.RawMessage `json:"p"`
	}
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%s: reply %q: %w", c.name, frame, err)
	}
	if env.S == nil {
		return nil, fmt.Errorf("%s: reply %s has no s", c.name, frame)
	}
	if err := c.checkID(env.ID, frame); err != nil {
		return nil, err
	}
	r.ID, r.RefID, r.T, r.A, r.S, r.P = env.ID, env.RefID, env.T, env.A, *env.S, env.P
	return &r, nil
}

// checkID holds every server frame id to a number unique within the connection.
func (c *wsClient) checkID(id json.Number, frame []byte) error {
	if _, err := id.Int64(); err != nil {
		return fmt.Errorf("%s: server id %q in %s: got a non-integer, want a number", c.name, id, frame)
	}
	if c.seen[id.String()] {
		return fmt.Errorf("%s: server id %s repeated in %s, want ids unique within the connection", c.name, id, frame)
	}
	c.seen[id.String()] = true
	return nil
}

// nextReply returns the next frame that is not a notification.
func (c *wsClient) nextReply(timeout time.Duration) (*reply, error) {
	deadline := time.Now().Add(timeout)
	for {
		r, err := c.readFrame(deadline)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return r, nil
		}
	}
}

// roundTrip sends msg with a fresh numeric id and returns the reply whose refid is that id.
func (c *wsClient) roundTrip(msg map[string]any) (*reply, error) {
	c.nextID++
	id := c.nextID
	msg["id"] = id
	if err := c.send(msg); err != nil {
		return nil, err
	}
	r, err := c.nextReply(replyTimeout)
	if err != nil {
		return nil, err
	}
	if got, want := string(r.RefID), fmt.Sprint(id); got != want {
		return nil, fmt.Errorf("%s: reply %s: got refid %s, want %s", c.name, r.raw, got, want)
	}
	return r, nil
}

// request is roundTrip for the test goroutine: it fails the test on error and, unless the request is expected
// to fail, on s != 0.
func (c *wsClient) request(t *testing.T, msg map[string]any) *reply {
	t.Helper()
	sent, _ := json.Marshal(msg)
	r, err := c.roundTrip(msg)
	if err != nil {
		t.Fatalf("%s: %s: %v", c.name, sent, err)
	}
	if r.T != msg["t"] {
		t.Fatalf("%s: reply %s: got t %q, want %q", c.name, r.raw, r.T, msg["t"])
	}
	if a, ok := msg["a"]; ok && r.A != a {
		t.Fatalf("%s: reply %s: got a %q, want %q", c.name, r.raw, r.A, a)
	}
	if r.S != 0 {
		t.Fatalf("%s: request %s: got reply %s, want s:0", c.name, sent, r.raw)
	}
	return r
}

// receiveNotes returns the next n notifications, waiting at most timeout. A reply frame arriving meanwhile is an
// error: nothing was asked.
func (c *wsClient) receiveNotes(n int, timeout time.Duration) ([]notification, error) {
	deadline := time.Now().Add(timeout)
	for len(c.notifs) < n {
		r, err := c.readFrame(deadline)
		if err != nil {
			return nil, fmt.Errorf("%s: got %d notifications, want %d: %w", c.name, len(c.notifs), n, err)
		}
		if r != nil {
			return nil, fmt.Errorf("%s: got unasked reply %s while waiting for notifications", c.name, r.raw)
		}
	}
	out := slices.Clone(c.notifs[:n])
	c.notifs = c.notifs[n:]
	return out, nil
}

// receive returns the payloads of the next n notifications, which must be strings.
func (c *wsClient) receive(n int, timeout time.Duration) ([]string, error) {
	notes, err := c.receiveNotes(n, timeout)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i, note := range notes {
		if note.P == nil {
			return nil, fmt.Errorf("%s: notification %s: got p null, want a string", c.name, note.ID)
		}
		out[i] = *note.P
	}
	return out, nil
}

// mustReceive is receive for the test goroutine.
func (c *wsClient) mustReceive(t *testing.T, n int) []string {
	t.Helper()
	got, err := c.receive(n, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// expectQuiet asserts that no notification has arrived: it asks for health and checks that nothing came before
// the reply. Call it after the Kafka side confirmed that what must not be delivered is there to be delivered.
func (c *wsClient) expectQuiet(t *testing.T) {
	t.Helper()
	c.request(t, map[string]any{"t": "health"})
	if len(c.notifs) > 0 {
		t.Fatalf("%s: got %d notifications (first %v), want none", c.name, len(c.notifs), describe(c.notifs[0]))
	}
}

func describe(n notification) string {
	if n.P == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *n.P)
}

// health is the p of a health reply.
type health struct {
	Consumers []struct {
		WS     json.Number `json:"ws"`
		Topics []string    `json:"topics"`
	} `json:"consumers"`
}
