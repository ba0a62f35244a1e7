package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// update rewrites golden files instead of comparing with them:
//
//	go test ./e2e/ -run TestSeedFramesUnchanged -update
var update = flag.Bool("update", false, "rewrite the golden files of the e2e suite")

// seedGolden is the recorded seed-only conversation.
var seedGolden = filepath.Join("testdata", "seed-conversation.golden")

// seedKeys are the only keys a reply may have, in the order it must have them (protocol-notes.md, "Envelope").
var seedKeys = []string{"id", "refid", "t", "a", "s", "p"}

// seedNotifKeys are the keys of one element of a notification frame, in order (original-README.md, "Receive").
var seedNotifKeys = []string{"id", "t", "p"}

// extensionKeys are what opt-in extensions add to frames; a client that never opts in must never see them.
var extensionKeys = []string{"topic", "part", "offset", "k", "h", "ts", "enc"}

// transcript records a conversation on one socket: every frame the client sends ("> ") and every frame the
// server sends ("< "), byte for byte, one per line.
type transcript struct {
	t      *testing.T
	conn   *websocket.Conn
	names  *strings.Replacer // the run's unique names → fixed placeholders
	lines  []string
	server [][]byte // the server's frames as received, for the shape checks
}

func (tr *transcript) record(dir string, frame []byte) {
	tr.t.Helper()
	if bytes.ContainsAny(frame, "\n\r") {
		// A JSON text from the bridge never holds a raw newline (strings escape it); one line per frame.
		tr.t.Fatalf("frame %q holds a raw line break", frame)
	}
	tr.lines = append(tr.lines, dir+tr.names.Replace(string(frame)))
}

// send writes a frame as is.
func (tr *transcript) send(frame string) {
	tr.t.Helper()
	tr.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := tr.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		tr.t.Fatalf("writing %s: %v", frame, err)
	}
	tr.record("> ", []byte(frame))
}

// read records the next server frame and returns it.
func (tr *transcript) read() []byte {
	tr.t.Helper()
	tr.conn.SetReadDeadline(time.Now().Add(replyTimeout))
	typ, frame, err := tr.conn.ReadMessage()
	if err != nil {
		tr.t.Fatalf("reading after %d frames: %v\n%s", len(tr.lines), err, strings.Join(tr.lines, "\n"))
	}
	if typ != websocket.TextMessage {
		tr.t.Fatalf("got frame type %d, want text: %q", typ, frame)
	}
	tr.server = append(tr.server, frame)
	tr.record("< ", frame)
	return frame
}

// request sends a frame and reads the one frame that answers it. Every request of the conversation gets a
// reply, and nothing else is in flight, so the next frame must be it.
func (tr *transcript) request(frame string) {
	tr.t.Helper()
	tr.send(frame)
	if reply := tr.read(); bytes.HasPrefix(reply, []byte("[")) {
		tr.t.Fatalf("request %s: got notification frame %s, want its reply", frame, reply)
	}
}

// publish sends a publish, which gets no reply, and reads the notification frame it comes back as.
func (tr *transcript) publish(frame string) {
	tr.t.Helper()
	tr.send(frame)
	if got := tr.read(); !bytes.HasPrefix(got, []byte("[")) {
		tr.t.Fatalf("publish %s: got %s, want a notification frame (a publish has no reply)", frame, got)
	}
}

// TestSeedFramesUnchanged protects compatibility with the original connector byte for byte: a client that sends
// only the original README's requests gets exactly the frames recorded in testdata/seed-conversation.golden,
// and never a key that an opt-in extension adds.
//
// The conversation is deterministic: a fresh Caddy process (frame ids are a process-wide counter from 1, and
// health's ws numbers connections from 1), one socket, one request in flight at a time, each publish followed
// by the notification it comes back as, and the run's topic names replaced by TOPIC1 and TOPIC2.
func TestSeedFramesUnchanged(t *testing.T) {
	needSuite(t)
	srv := startCaddy(t, caddyOptions{})
	topic1, topic2 := uniqueName(t, "topic1"), uniqueName(t, "topic2")
	group := uniqueName(t, "ingestion_1")
	d := websocket.Dialer{HandshakeTimeout: dialTimeout}
	conn, resp, err := d.Dial(srv.url(), nil)
	if err != nil {
		t.Fatalf("dialing %s: %v", srv.url(), err)
	}
	resp.Body.Close()
	defer conn.Close()
	tr := &transcript{t: t, conn: conn, names: strings.NewReplacer(topic1, "TOPIC1", topic2, "TOPIC2", group, "GROUP")}

	// Topics > Create, with the README's request.
	tr.request(fmt.Sprintf(`{"id":1,"t":"topic","a":"create","p":[%q,%q]}`, topic1, topic2))
	// Subscribe with consumer_group.
	tr.request(fmt.Sprintf(`{"id":1000,"t":"topic","a":"subscribe","p":{"t":[%q,%q],"consumer_group":%q}}`, topic1, topic2, group))
	// Notification > Send, string m and non-string m (sent as its JSON text), and Receive.
	tr.publish(fmt.Sprintf(`{"id":1320,"t":"notif","a":"create","p":{"t":%q,"m":"{custom_message:'msg'}"}}`, topic1))
	tr.publish(fmt.Sprintf(`{"id":1321,"t":"notif","a":"create","p":{"t":%q,"m":{"x":1}}}`, topic2))
	tr.publish(fmt.Sprintf(`{"id":1322,"t":"notif","a":"create","p":{"t":%q,"m":12345}}`, topic1))
	tr.publish(fmt.Sprintf(`{"id":1323,"t":"notif","a":"create","p":{"t":%q,"m":"hello \"quoted\" \u00e9"}}`, topic2))
	// Healthcheck: this socket, with its topics.
	tr.request(`{"id":1500,"t":"health"}`)
	// Unsubscribe.
	tr.request(`{"id":1300,"t":"topic","a":"unsubscribe"}`)
	tr.request(`{"id":1501,"t":"health"}`)
	// Subscribe without consumer_group: the configured default group.
	tr.request(fmt.Sprintf(`{"id":1001,"t":"topic","a":"subscribe","p":{"t":[%q]}}`, topic1))
	tr.publish(fmt.Sprintf(`{"id":1324,"t":"notif","a":"create","p":{"t":%q,"m":"hello"}}`, topic1))
	tr.request(`{"id":"1502","t":"health"}`)
	tr.request(`{"id":1301,"t":"topic","a":"unsubscribe"}`)
	// Malformed requests, each answered s:1; the socket stays usable.
	tr.request(`{"id":2000,"t":`)
	tr.request(`{"id":2001,"t":"nope"}`)
	tr.request(`{"id":2002,"t":"topic"}`)
	tr.request(fmt.Sprintf(`{"id":2003,"t":"topic","a":"subscribe","p":{"t":%q}}`, topic1))
	tr.request(`{"id":2004,"t":"notif","a":"create"}`)
	tr.request(`{"id":2005,"t":"topic","a":"create","p":[]}`)
	tr.request(`{"id":1503,"t":"health"}`)

	for _, frame := range tr.server {
		if err := checkSeedShape(frame); err != nil {
			t.Errorf("server frame %s: %v", frame, err)
		}
	}

	got := strings.Join(tr.lines, "\n") + "\n"
	if *update {
		if err := os.MkdirAll(filepath.Dir(seedGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(seedGolden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d frames)", seedGolden, len(tr.lines))
		return
	}
	want, err := os.ReadFile(seedGolden)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./e2e/ -run TestSeedFramesUnchanged -update)", err)
	}
	if got != string(want) {
		t.Errorf("the seed conversation's frames differ from %s (-want +got):\n%s", seedGolden, lineDiff(string(want), got))
	}
}

// checkSeedShape holds one server frame to the original's shapes: a reply object with keys among id, refid, t,
// a, s, p in that order, or a non-empty array of notifications {id, t, p}; no extension key anywhere at the top.
func checkSeedShape(frame []byte) error {
	if bytes.HasPrefix(frame, []byte("[")) {
		var elems []json.RawMessage
		if err := json.Unmarshal(frame, &elems); err != nil {
			return err
		}
		if len(elems) == 0 {
			return fmt.Errorf("got an empty notification frame")
		}
		for _, e := range elems {
			keys, err := objectKeys(e)
			if err != nil {
				return err
			}
			if !slices.Equal(keys, seedNotifKeys) {
				return fmt.Errorf("notification %s: got keys %q, want %q", e, keys, seedNotifKeys)
			}
		}
		return nil
	}
	keys, err := objectKeys(frame)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if slices.Contains(extensionKeys, k) {
			return fmt.Errorf("got extension key %q, want none in a seed-only conversation", k)
		}
	}
	// Keys in order, each at most once, each one of the envelope's.
	next := 0
	for _, k := range keys {
		i := slices.Index(seedKeys[next:], k)
		if i < 0 {
			return fmt.Errorf("got keys %q, want a subsequence of %q", keys, seedKeys)
		}
		next += i + 1
	}
	for _, k := range []string{"id", "t", "s"} {
		if !slices.Contains(keys, k) {
			return fmt.Errorf("got keys %q, want %q among them", keys, k)
		}
	}
	return nil
}

// objectKeys returns the keys of a JSON object in the order they appear.
func objectKeys(obj []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("got %s, want a JSON object", obj)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// lineDiff lists the lines of want and got that differ, by position; the transcript is short and aligned.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n-%s\n+%s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
