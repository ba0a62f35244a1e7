package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/wskafka/wskafka/internal/testkit"
	"github.com/wskafka/wskafka/protocol"
)

// The hostile-input battery: one Caddy with the default limits (README, limits.go) takes every attack of the list
// in turn while a bystander pair, a publisher and a subscriber on another topic, runs through the whole battery.
// Each attack must get its documented outcome, the bystanders must lose nothing and keep their latency, and the
// server's memory must stay within a stated bound.
//
// The bounds are deliberately loose where timing is concerned (a loaded 2-core machine, -race) and strict where
// correctness is: no bystander message is lost, every attack gets exactly its documented answer.
const (
	// batteryRSSBound is the growth of the Caddy process's resident memory the whole battery may cause with the
	// default limits. README has no per-connection figure yet (limits.go points to a Security section that is
	// not written), so this is the fallback bound: 64 MiB in total.
	batteryRSSBound = 64 << 20
	// bystanderInterval is how often the bystander publishes.
	bystanderInterval = 50 * time.Millisecond
	// bystanderP99Bound tells a bystander starved by an attack (its deliveries held for as long as the attack
	// lasts: never-reads holds a socket for write_timeout) from one merely slowed by a loaded machine, which made
	// a 1 s bound fail on a shared 2-core machine (1.07 s). It is a stall check, not a speed: the figures are
	// logged, and speed is measured by the benchmarks.
	bystanderP99Bound = 5 * time.Second
	// minCaseWindow is the least time each case's row covers, attack and aftermath.
	minCaseWindow = time.Second
	// bystanderDrain is how long the bystander's last messages may take to arrive once the battery is over.
	bystanderDrain = 20 * time.Second
	// defaultMaxFrame, defaultMaxTopics, defaultPublishRate and defaultPublishBurst are the limits' defaults
	// (limits.go), which the battery runs against.
	defaultMaxFrame     = 1 << 20
	defaultMaxTopics    = 100
	defaultPublishRate  = 1000
	defaultPublishBurst = 2000
	// defaultWriteTimeout and defaultKeepalive are write_timeout and ping_interval + pong_timeout by default.
	defaultWriteTimeout = 10 * time.Second
	defaultKeepalive    = 40 * time.Second
)

// TestHostileInputBattery sends each hostile input of the list to a real Caddy with the default limits and
// asserts the documented outcome, the bystanders' messages and latency, and the server's memory bound.
func TestHostileInputBattery(t *testing.T) {
	needSuite(t)
	needKcat(t)
	// Default limits; consumer mq_interval 0 delivers each bystander message at once, for a crisp latency probe.
	srv := startCaddy(t, caddyOptions{wskafka: "\t\t\tconsumer {\n\t\t\t\tmq_interval 0\n\t\t\t}"})
	rss := watchRSS(t, srv.Pid())

	b := &battery{srv: srv, rss: rss, attackTopic: uniqueName(t, "attack"), stuckTopic: uniqueName(t, "stuck")}
	b.admin = dial(t, "admin", srv.url(), nil)
	bystanderTopic := uniqueName(t, "bystander")
	createTopics(t, b.admin, bystanderTopic, b.attackTopic, b.stuckTopic)
	b.by = startBystander(t, srv.url(), bystanderTopic, uniqueName(t, "bystander-group"))

	// Warm up: the bystanders run and the Kafka clients exist before the baseline is taken.
	time.Sleep(time.Second)
	baseline := rss.reset()
	t.Logf("baseline RSS %s (pid %d)", mib(baseline), srv.Pid())

	cases := []struct {
		name string
		run  func(t *testing.T) string
	}{
		{"invalid-utf8", b.invalidUTF8},
		{"binary-frames", b.binaryFrames},
		{"nested-10000", b.deepNesting},
		{"frame-10MiB", b.hugeFrames},
		{"topic-arrays-100000", b.topicArrays},
		{"wrong-types", b.wrongTypes},
		{"flood", b.flood},
		{"half-open", b.halfOpen},
		{"never-reads", b.neverReads},
	}
	var rows []batteryRow
	for _, tc := range cases {
		row := batteryRow{name: tc.name, outcome: "FAILED"}
		row.rssBefore = rss.reset()
		row.start = time.Now()
		t.Run(tc.name, func(t *testing.T) {
			row.outcome = tc.run(t)
		})
		// Quick attacks are watched a little longer, so that every row has bystander figures.
		time.Sleep(time.Until(row.start.Add(minCaseWindow)))
		row.end = time.Now()
		row.rssPeak = rss.peakSince()
		row.rssAfter = rss.current()
		rows = append(rows, row)
	}

	by := b.by.finish(t)
	overallPeak := rss.overallPeak()
	t.Logf("%-20s | %-58s | %-9s | %-7s | %-27s", "case", "outcome", "by sent/lost", "by p99", "RSS before/peak/after")
	for i := range rows {
		r := &rows[i]
		r.sent, r.lost, r.p99 = by.window(r.start, r.end)
		t.Logf("%-20s | %-58s | %4d/%-4d | %7s | %s / %s / %s", r.name, r.outcome, r.sent, r.lost,
			r.p99.Round(time.Millisecond), mib(r.rssBefore), mib(r.rssPeak), mib(r.rssAfter))
	}
	t.Logf("bystander: %d sent, %d delivered, overall p99 %v, max %v", len(by.sent), len(by.latency), by.p99All(), by.maxAll())
	t.Logf("RSS: baseline %s, peak %s (growth %s, bound %s), end %s", mib(baseline), mib(overallPeak),
		mib(overallPeak-baseline), mib(batteryRSSBound), mib(rss.current()))

	for _, e := range by.errs {
		t.Errorf("bystander: %s", e)
	}
	for _, r := range rows {
		if r.lost > 0 {
			t.Errorf("%s: bystander lost %d of the %d messages published during the attack, want none", r.name, r.lost, r.sent)
		}
		if r.sent == 0 {
			t.Errorf("%s: the bystander published nothing during the attack, want one message every %v", r.name, bystanderInterval)
		}
		if r.p99 > bystanderP99Bound {
			t.Errorf("%s: bystander p99 latency %v during the attack, want at most %v", r.name, r.p99, bystanderP99Bound)
		}
	}
	if growth := overallPeak - baseline; growth > batteryRSSBound {
		t.Errorf("caddy RSS grew by %s during the battery (peak %s), want at most %s", mib(growth), mib(overallPeak), mib(batteryRSSBound))
	}
}

// battery is the shared state of the attacks.
type battery struct {
	srv         *caddyServer
	rss         *rssWatch
	admin       *wsClient // a well-behaved socket: health, topic creation
	by          *bystander
	attackTopic string // where attacks publish
	stuckTopic  string // the never-reading subscriber's topic
}

// batteryRow is one line of the battery's table.
type batteryRow struct {
	name                         string
	outcome                      string
	start, end                   time.Time
	sent, lost                   int
	p99                          time.Duration
	rssBefore, rssPeak, rssAfter int64
}

// --- the attacks --------------------------------------------------------------------------------------------

// invalidUTF8: gorilla/websocket does not check that text frames are UTF-8 (RFC 6455 §8.1 allows closing with
// 1007, nothing requires it), so the bridge reads them, and replaces what is not UTF-8 with U+FFFD wherever it
// echoes it: every reply stays a valid UTF-8 text frame and the socket stays open.
func (b *battery) invalidUTF8(t *testing.T) string {
	c := dial(t, "utf8", b.srv.url(), nil)
	n := 0
	for _, tt := range []struct {
		frame string
		refid string // "" for none
		code  string // "" for s:0
	}{
		{`{"id":1,"t":"he` + "\xff" + `alth"}`, "1", "unknown_type"},
		{`{"id":2,"t":"` + "\xc0\xaf" + `"}`, "2", "unknown_type"},         // overlong encoding of '/'
		{`{"id":3,"t":"` + "\xed\xa0\x80" + `"}`, "3", "unknown_type"},     // a UTF-16 surrogate
		{`{"id":"` + "\xff\xfe" + `","t":"health"}`, `"\ufffd\ufffd"`, ""}, // refid echoed as U+FFFD
		{`{"id":5,"t":"topic","a":"create","p":["bad` + "\xc3" + `"]}`, "5", "invalid_topic"},
		{`{"id":6,"t":"topic","a":"cre` + "\xff" + `ate","p":["x"]}`, "6", "unknown_action"},
		{`{"id":7,"t":"notif","a":"create","ack":true,"p":{"t":"` + b.attackTopic + `","m":"` + "\xff\xfe\xfd" + `","h":{"` + "\xff" + `":"` + "\xfe" + `"}}}`, "7", ""},
		{`{"id":8,"t":"health"}` + "\xff", "", "invalid_json"},
		{"\xef\xbb\xbf" + `{"id":9,"t":"health"}`, "", "invalid_json"}, // a byte-order mark is not JSON
	} {
		expectReply(t, c, websocket.TextMessage, []byte(tt.frame), tt.refid, tt.code)
		n++
	}
	c.request(t, map[string]any{"t": "health"})
	return fmt.Sprintf("%d frames answered (U+FFFD, s:1 codes), no close", n)
}

// binaryFrames: binary frames are read like text (the original parsed whatever arrived); replies are text frames.
func (b *battery) binaryFrames(t *testing.T) string {
	c := dial(t, "binary", b.srv.url(), nil)
	garbage := make([]byte, 4096)
	rand.Read(garbage)
	garbage[0] = 0xff // never a JSON start
	for _, tt := range []struct {
		frame []byte
		refid string
		code  string
	}{
		{[]byte(`{"id":21,"t":"health"}`), "21", ""},
		{[]byte(`{"id":22,"t":"topic","a":"create","p":5}`), "22", "invalid_payload"},
		{garbage, "", "invalid_json"},
		{[]byte{0, 1, 2, 3}, "", "invalid_json"},
		{nil, "", "invalid_json"},
	} {
		expectReply(t, c, websocket.BinaryMessage, tt.frame, tt.refid, tt.code)
	}
	expectReply(t, c, websocket.TextMessage, nil, "", "invalid_json")
	c.request(t, map[string]any{"t": "health"})
	return "JSON answered as text; garbage s:1 invalid_json"
}

// deepNesting: the frame scanner allows encoding/json's depth of 10000 and no more (protocol/scan.go).
func (b *battery) deepNesting(t *testing.T) string {
	c := dial(t, "nesting", b.srv.url(), nil)
	arrays := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	objects := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	for _, tt := range []struct {
		name  string
		frame string
		refid string
		code  string
	}{
		// 10000 deep is valid JSON: a batch whose element is not an object.
		{"arrays 10000", arrays(10000), "", "invalid_frame"},
		{"arrays 10001", arrays(10001), "", "invalid_json"},
		{"arrays 100000", arrays(100000), "", "invalid_json"},
		{"unclosed 500000", strings.Repeat("[", 500000), "", "invalid_json"},
		// The envelope is one level: p nested 10000 deep is 10001.
		{"p 10000", `{"id":31,"t":"topic","a":"create","p":` + arrays(10000) + `}`, "", "invalid_json"},
		{"p 9999", `{"id":32,"t":"topic","a":"create","p":` + arrays(9999) + `}`, "32", "invalid_payload"},
		{"objects 9999", `{"id":33,"x":` + objects(9998) + `}`, "33", "unknown_type"},
		{"publish m 9999", `{"id":34,"t":"notif","p":{"t":"` + b.attackTopic + `","m":` + arrays(9998) + `,"part":"x"}}`, "34", "invalid_payload"},
		{"subscribe seek 10000", `{"id":35,"t":"topic","a":"subscribe","p":{"t":["` + b.attackTopic + `"],"seek":` + objects(9999) + `}}`, "", "invalid_json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			expectReply(t, c, websocket.TextMessage, []byte(tt.frame), tt.refid, tt.code)
			t.Logf("%d bytes answered in %v", len(tt.frame), time.Since(start).Round(time.Microsecond))
		})
	}
	c.request(t, map[string]any{"t": "health"})
	return "depth ≤10000 decoded, >10000 invalid_json; socket open"
}

// hugeFrames: a frame over max_frame_bytes closes its socket with 1009 (limits.go, RFC 6455 §7.4.1), whether it
// comes as one frame (refused at its header) or fragmented (refused once the fragments pass the limit). Six
// attempts must not cost the server six times 10 MiB.
func (b *battery) hugeFrames(t *testing.T) string {
	const size = 10 << 20
	var codes []string
	for i := range 3 {
		code, err := hugeFragmented(b.srv.url(), size)
		if err != nil {
			t.Fatalf("fragmented attempt %d: %v", i, err)
		}
		if code != websocket.CloseMessageTooBig {
			t.Fatalf("fragmented attempt %d: got close code %d, want %d (message too big)", i, code, websocket.CloseMessageTooBig)
		}
		codes = append(codes, strconv.Itoa(code))
	}
	for i := range 3 {
		code, err := hugeSingleFrame(b.srv.port, size)
		if err != nil {
			t.Fatalf("single-frame attempt %d: %v", i, err)
		}
		if code != websocket.CloseMessageTooBig {
			t.Fatalf("single-frame attempt %d: got close code %d, want %d (message too big)", i, code, websocket.CloseMessageTooBig)
		}
		codes = append(codes, strconv.Itoa(code))
	}
	// A frame of exactly the limit is still read (and answered).
	c := dial(t, "at-limit", b.srv.url(), nil)
	frame := `{"id":41,"t":"health","pad":"` + strings.Repeat("x", defaultMaxFrame-len(`{"id":41,"t":"health","pad":""}`)) + `"}`
	expectReply(t, c, websocket.TextMessage, []byte(frame), "41", "")
	time.Sleep(200 * time.Millisecond) // let a late allocation show in RSS
	// Six frames kept would be 60 MiB. What a refused frame costs is at most the 1 MiB read before the limit
	// tripped, garbage the collector frees on its own schedule: RSS peaks within two frames' worth.
	if growth := b.rss.peakSince() - b.rss.start(); growth > 2*size {
		t.Errorf("RSS grew by %s over six 10 MiB frames, want less than two frames (%s)", mib(growth), mib(2*size))
	}
	return "close " + strings.Join(codes, ",") + "; 1 MiB frame answered"
}

// topicArrays: a request naming more topics than max_topics is refused whole, before anything reaches Kafka, and
// a batch of more than 1000 requests is refused whole.
func (b *battery) topicArrays(t *testing.T) string {
	c := dial(t, "arrays", b.srv.url(), nil)
	const count = 100000
	var names bytes.Buffer
	for i := range count {
		if i > 0 {
			names.WriteByte(',')
		}
		fmt.Fprintf(&names, `"h%06d"`, i)
	}
	list := names.String()
	for _, tt := range []struct {
		name  string
		frame string
	}{
		{"create", `{"id":51,"t":"topic","a":"create","p":[` + list + `]}`},
		{"subscribe", `{"id":52,"t":"topic","a":"subscribe","p":{"t":[` + list + `]}}`},
		{"unsubscribe", `{"id":53,"t":"topic","a":"unsubscribe","p":{"t":[` + list + `]}}`},
		{"describe", `{"id":54,"t":"topic","a":"describe","p":{"t":[` + list + `]}}`},
		{"delete", `{"id":55,"t":"topic","a":"delete","p":[` + list + `]}`},
	} {
		if len(tt.frame) > defaultMaxFrame {
			t.Fatalf("%s: frame of %d bytes, want it within max_frame_bytes %d", tt.name, len(tt.frame), defaultMaxFrame)
		}
		start := time.Now()
		refid := tt.frame[len(`{"id":`):strings.IndexByte(tt.frame, ',')]
		r := expectReply(t, c, websocket.TextMessage, []byte(tt.frame), refid, "invalid_payload")
		p, _ := r.errorPayload()
		// Decoding stops at the protocol's bound (protocol.MaxTopics), before building every name; a count
		// between it and the route's max_topics is refused by the route's limit.
		if want := fmt.Sprintf("more than %d topics", protocol.MaxTopics); !strings.Contains(p.Message, want) {
			t.Errorf("%s: got message %q, want it to name the bound (%q)", tt.name, p.Message, want)
		}
		t.Logf("%s: %d bytes refused in %v", tt.name, len(tt.frame), time.Since(start).Round(time.Millisecond))
	}
	// A batch of 100000 requests is refused as a whole; one of 1000 (the bound) is answered 1000 times.
	expectReply(t, c, websocket.TextMessage, []byte("["+strings.TrimSuffix(strings.Repeat("{},", count), ",")+"]"), "", "invalid_frame")
	var batch bytes.Buffer
	batch.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `{"id":%d,"t":"health"}`, 100000+i)
	}
	batch.WriteByte(']')
	if err := c.writeFrame(batch.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		r, err := c.nextReply(replyTimeout)
		if err != nil {
			t.Fatalf("batch reply %d: %v", i, err)
		}
		if got, want := string(r.RefID), strconv.Itoa(100000+i); got != want || r.S != 0 {
			t.Fatalf("batch reply %d: got %s, want s:0 with refid %s", i, r.raw, want)
		}
	}
	c.request(t, map[string]any{"t": "health"})
	return "s:1 invalid_payload naming max_topics ×5; batch >1000 refused"
}

// wrongTypes: every field of every request with a value of the wrong type gets s:1, the request's id echoed as
// refid verbatim, and the code README's error table gives; the socket stays open throughout.
func (b *battery) wrongTypes(t *testing.T) string {
	c := dial(t, "types", b.srv.url(), nil)
	topic := b.attackTopic
	// Frames as {"id":N,<members>}: members use T for a valid topic name.
	cases := []struct{ members, code string }{
		// envelope
		{`"t":5`, "unknown_type"}, {`"t":null`, "unknown_type"}, {`"t":["health"]`, "unknown_type"},
		{`"t":{"t":"health"}`, "unknown_type"}, {`"t":"nope"`, "unknown_type"}, {`"a":"create"`, "unknown_type"},
		{`"t":"topic"`, "unknown_action"}, {`"t":"topic","a":["create"]`, "unknown_action"},
		{`"t":"topic","a":5`, "unknown_action"}, {`"t":"topic","a":null`, "unknown_action"},
		{`"t":"topic","a":"drop"`, "unknown_action"}, {`"t":"notif","a":{"x":1},"p":{}`, "unknown_action"},
		{`"t":"notif","a":"delete","p":{}`, "unknown_action"},
		// topic/create
		{`"t":"topic","a":"create","p":5`, "invalid_payload"}, {`"t":"topic","a":"create","p":null`, "invalid_payload"},
		{`"t":"topic","a":"create","p":{}`, "invalid_payload"}, {`"t":"topic","a":"create","p":[]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":true`, "invalid_payload"}, {`"t":"topic","a":"create"`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[5]`, "invalid_payload"}, {`"t":"topic","a":"create","p":[null]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[["T"]]`, "invalid_payload"}, {`"t":"topic","a":"create","p":[{}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":5}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":"T","partitions":"3"}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":"T","partitions":-1}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":"T","partitions":1.5}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":"T","replication":1e9}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":"T","configs":[]}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":[{"name":"T","configs":{"retention.ms":1}}]`, "invalid_payload"},
		{`"t":"topic","a":"create","p":""`, "invalid_topic"}, {`"t":"topic","a":"create","p":["a/b"]`, "invalid_topic"},
		{`"t":"topic","a":"create","p":["` + strings.Repeat("x", 300) + `"]`, "invalid_topic"},
		// topic/subscribe
		{`"t":"topic","a":"subscribe"`, "invalid_payload"}, {`"t":"topic","a":"subscribe","p":null`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":"T"`, "invalid_payload"}, {`"t":"topic","a":"subscribe","p":["T"]`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{}`, "invalid_payload"}, {`"t":"topic","a":"subscribe","p":{"t":"T"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":[]}`, "invalid_payload"}, {`"t":"topic","a":"subscribe","p":{"t":[5]}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":{"T":1}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"consumer_group":5}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"consumer_group":["g"]}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"consumer_group":"` + strings.Repeat("g", 1000) + `"}`, "invalid_topic"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"meta":"yes"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"meta":1}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"from":"yesterday"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"from":-5}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"from":{}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":[]}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":{"other":{}}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":{"T":[0]}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":{"T":{"x":1}}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":{"T":{"-1":1}}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":{"T":{"0":-1}}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"seek":{"T":{"0":"1"}}}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"commit":true}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"commit":"never"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mq_limit":0}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mq_limit":"5"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mq_interval":-1}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mq_interval":[]}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mode":5}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mode":"fanout"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mode":"broadcast","consumer_group":"g"}`, "invalid_payload"},
		{`"t":"topic","a":"subscribe","p":{"t":["T"],"mode":"broadcast","commit":"client"}`, "invalid_payload"},
		// topic/unsubscribe (a p that is not an object is ignored, as the original ignored every p)
		{`"t":"topic","a":"unsubscribe","p":{"t":"T"}`, "invalid_payload"},
		{`"t":"topic","a":"unsubscribe","p":{"t":[5]}`, "invalid_payload"},
		{`"t":"topic","a":"unsubscribe","p":{"t":[]}`, "invalid_payload"},
		{`"t":"topic","a":"unsubscribe","p":{"t":{}}`, "invalid_payload"},
		// topic/describe and topic/delete
		{`"t":"topic","a":"describe"`, "invalid_payload"}, {`"t":"topic","a":"describe","p":5`, "invalid_payload"},
		{`"t":"topic","a":"describe","p":{"t":5}`, "invalid_payload"},
		{`"t":"topic","a":"describe","p":{"t":["T"],"consumer_group":[]}`, "invalid_payload"},
		{`"t":"topic","a":"describe","p":[{}]`, "invalid_payload"},
		{`"t":"topic","a":"delete","p":5`, "invalid_payload"}, {`"t":"topic","a":"delete","p":[]`, "invalid_payload"},
		{`"t":"topic","a":"delete","p":["T"]`, "forbidden"},
		// notif/create
		{`"t":"notif"`, "invalid_payload"}, {`"t":"notif","p":"T"`, "invalid_payload"},
		{`"t":"notif","p":null`, "invalid_payload"}, {`"t":"notif","p":5`, "invalid_payload"},
		{`"t":"notif","p":["T","m"]`, "invalid_payload"}, {`"t":"notif","p":{}`, "invalid_payload"},
		{`"t":"notif","p":{"t":{},"m":"x"}`, "invalid_payload"}, {`"t":"notif","p":{"t":5,"m":"x"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":null,"m":"x"}`, "invalid_payload"}, {`"t":"notif","p":{"t":["T"],"m":"x"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T"}`, "invalid_payload"}, {`"t":"notif","p":{"t":"bad topic!","m":"x"}`, "invalid_topic"},
		{`"t":"notif","p":{"t":"T","m":"x","part":"1"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","part":-1}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","part":1.5}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","part":4294967296}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","ts":-1}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","ts":"now"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","ts":1e400}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","h":[]}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","h":[["a","b"]]}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","h":"a:b"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","h":{"a":1}}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","h":{"a":null}}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","k":5}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","k":{}}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","ack":"yes"}`, "invalid_payload"},
		{`"t":"notif","ack":1,"p":{"t":"T","m":"x"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","enc":"rot13"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"x","enc":5}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"!!!","enc":"base64"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":5,"enc":"base64"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"QQ==","k":"%%%","enc":"base64"}`, "invalid_payload"},
		{`"t":"notif","p":{"t":"T","m":"QQ==","h":{"a":"%%%"},"enc":"base64"}`, "invalid_payload"},
		// notif/ack
		{`"t":"notif","a":"ack"`, "invalid_payload"}, {`"t":"notif","a":"ack","p":"6"`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":null`, "invalid_payload"}, {`"t":"notif","a":"ack","p":{}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"id":"6"}`, "invalid_payload"}, {`"t":"notif","a":"ack","p":{"id":-1}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"id":1,"t":"T"}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"t":5,"part":0,"offset":0}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"t":"T","part":"0","offset":0}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"t":"T","offset":0}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"t":"T","part":0}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"t":"T","part":0,"offset":"0"}`, "invalid_payload"},
		{`"t":"notif","a":"ack","p":{"id":1}`, "invalid_payload"}, // no client-commit subscription
	}
	for i, tt := range cases {
		id := 60000 + i
		frame := fmt.Sprintf(`{"id":%d,%s}`, id, strings.ReplaceAll(tt.members, `"T"`, strconv.Quote(topic)))
		expectReply(t, c, websocket.TextMessage, []byte(frame), strconv.Itoa(id), tt.code)
	}
	// Ids of every JSON type are echoed verbatim, also on failures.
	odd := []struct{ frame, refid, code string }{
		{`{"id":{"k":[1,{"z":null}]},"t":5}`, `{"k":[1,{"z":null}]}`, "unknown_type"},
		{`{"id":[1,"2"],"t":"topic","a":7}`, `[1,"2"]`, "unknown_action"},
		{`{"id":true,"t":"notif","p":5}`, "true", "invalid_payload"},
		{`{"id":null,"t":"topic","a":"create","p":{}}`, "null", "invalid_payload"},
		{`{"id":-1.5e300,"t":"bogus"}`, "-1.5e300", "unknown_type"},
		{`{"id":"` + strings.Repeat("i", 1000) + `","t":"bogus"}`, `"` + strings.Repeat("i", 1000) + `"`, "unknown_type"},
	}
	for _, tt := range odd {
		expectReply(t, c, websocket.TextMessage, []byte(tt.frame), tt.refid, tt.code)
	}
	// Frames that are JSON but not requests get invalid_frame and no refid.
	for _, frame := range []string{`5`, `"x"`, `null`, `true`, `[]`, `[1]`} {
		expectReply(t, c, websocket.TextMessage, []byte(frame), "", "invalid_frame")
	}
	c.request(t, map[string]any{"t": "health"})
	return fmt.Sprintf("%d wrong-typed requests: s:1, refid, code", len(cases)+len(odd)+6)
}

// flood: publishes and health requests as fast as the client can write them. Publishes over publish_rate (1000/s,
// burst 2000) are answered s:1 rate_limited and not sent; nothing else piles up, and both sockets are still
// answered afterwards.
func (b *battery) flood(t *testing.T) string {
	const length = 3 * time.Second
	pub := dial(t, "flood-publish", b.srv.url(), nil)
	hp := dial(t, "flood-health", b.srv.url(), nil)
	type tally struct {
		sent                  int           // by the writer
		elapsed               time.Duration // writing the flood
		served                time.Duration // from the flood's start to the answer of the request after it
		writeErr              error
		limited, otherErr, ok int // by the reader
		firstOther            string
		readErr               error
	}
	run := func(c *wsClient, frame func(i int) []byte, last []byte, lastRef string) (r tally) {
		// One goroutine reads while this one writes: the server's replies must never back up into the test.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				rep, err := c.nextReply(replyTimeout)
				if err != nil {
					r.readErr = err
					return
				}
				switch {
				case string(rep.RefID) == lastRef:
					return
				case rep.S == 0:
					r.ok++
				default:
					if p, _ := rep.errorPayload(); p.Code == "rate_limited" {
						r.limited++
					} else {
						r.otherErr++
						if r.firstOther == "" {
							r.firstOther = string(rep.raw)
						}
					}
				}
			}
		}()
		start := time.Now()
		for time.Since(start) < length {
			c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.conn.WriteMessage(websocket.TextMessage, frame(r.sent)); err != nil {
				r.writeErr = err
				break
			}
			r.sent++
		}
		r.elapsed = time.Since(start)
		// Requests are answered in order: the reply to this one comes after every reply to the flood.
		answered := time.Now()
		if err := c.writeFrame(last); err != nil {
			t.Error(err)
		}
		select {
		case <-done:
		case <-time.After(replyTimeout):
			t.Errorf("%s: no answer to %s within %v of the flood's end", c.name, last, replyTimeout)
			c.conn.Close()
			<-done
		}
		r.served = time.Since(start)
		t.Logf("%s: answered %v after the flood", c.name, time.Since(answered).Round(time.Millisecond))
		return r
	}
	var wg sync.WaitGroup
	var pubs, healths tally
	wg.Go(func() {
		prefix := []byte(`{"t":"notif","p":{"t":"` + b.attackTopic + `","m":"flood"},"id":`)
		pubs = run(pub, func(i int) []byte {
			return append(strconv.AppendInt(slices.Clone(prefix), int64(i), 10), '}')
		}, []byte(`{"id":"end","t":"health"}`), `"end"`)
	})
	wg.Go(func() {
		healths = run(hp, func(i int) []byte {
			return []byte(`{"id":` + strconv.Itoa(i) + `,"t":"health"}`)
		}, []byte(`{"id":"end","t":"health"}`), `"end"`)
	})
	wg.Wait()
	t.Logf("publishes: %d sent in %v (%.0f/s), read by the server within %v; %d accepted, %d rate_limited, %d other errors",
		pubs.sent, pubs.elapsed.Round(time.Millisecond), float64(pubs.sent)/pubs.elapsed.Seconds(), pubs.served.Round(time.Millisecond),
		pubs.sent-pubs.limited, pubs.limited, pubs.otherErr)
	t.Logf("health: %d sent in %v (%.0f/s), %d answered s:0, %d errors", healths.sent, healths.elapsed,
		float64(healths.sent)/healths.elapsed.Seconds(), healths.ok, healths.otherErr+healths.limited)
	for _, r := range []struct {
		name string
		tally
	}{{"publish", pubs}, {"health", healths}} {
		if err := cmp.Or(r.writeErr, r.readErr); err != nil {
			t.Errorf("%s flood: %v", r.name, err)
		}
		if r.otherErr > 0 {
			t.Errorf("%s flood: %d replies other than rate_limited (first %s), want none", r.name, r.otherErr, r.firstOther)
		}
	}
	accepted := pubs.sent - pubs.limited
	// The server reads the flood over more time than the client took to write it (it is still reading when the
	// client stops): the rate applies over the time the server took.
	allowed := defaultPublishBurst + int(math.Ceil(defaultPublishRate*pubs.served.Seconds()*1.1)) + 100
	if accepted > allowed {
		t.Errorf("publish flood: %d of %d publishes accepted in %v, want at most %d (rate %d/s, burst %d)",
			accepted, pubs.sent, pubs.served, allowed, defaultPublishRate, defaultPublishBurst)
	}
	if pubs.sent > allowed && pubs.limited == 0 {
		t.Errorf("publish flood: %d publishes in %v and none rate_limited, want the excess refused", pubs.sent, pubs.elapsed)
	}
	if healths.ok != healths.sent {
		t.Errorf("health flood: %d of %d answered s:0, want every one", healths.ok, healths.sent)
	}
	pub.request(t, map[string]any{"t": "health"})
	return fmt.Sprintf("pub %d sent/%d rate_limited; health %d/%d answered", pubs.sent, pubs.limited, healths.ok, healths.sent)
}

// halfOpen: sockets whose peer completed the upgrade and then went silent are closed by keepalive after
// ping_interval + pong_timeout (default 30s + 10s, so this case runs its own Caddy with 2s + 1s: long enough that
// opening the sockets on a loaded machine does not outlast it). Raw TCP
// connections that stop in the middle of the handshake are Caddy's business (its read_header timeout, 1 minute
// by default): they never reach wskafka, which neither counts nor holds them.
func (b *battery) halfOpen(t *testing.T) string {
	const silent, half = 10, 10
	const interval, timeout = 2 * time.Second, time.Second
	srv2 := startCaddy(t, caddyOptions{wskafka: "\t\t\tlimits {\n\t\t\t\tping_interval 2s\n\t\t\t\tpong_timeout 1s\n\t\t\t}"})
	rss2 := watchRSS(t, srv2.Pid())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv2.port))
	// A well-behaved client (it asks for health every 100ms, so it is never quiet) watches the others go.
	watcher := dial(t, "watcher", srv2.url(), nil)

	var silentConns []net.Conn
	for i := range silent {
		conn, _, err := rawUpgrade(addr, 0)
		if err != nil {
			t.Fatalf("silent socket %d: %v", i, err)
		}
		defer conn.Close()
		silentConns = append(silentConns, conn)
	}
	var halfConns []net.Conn
	for i := range half {
		conn, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			t.Fatalf("half handshake %d: %v", i, err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", addr)
		halfConns = append(halfConns, conn)
	}
	opened := time.Now()
	// A client sees its 101 a moment before the server has registered the session: wait for all of them.
	for deadline := opened.Add(interval); ; {
		n := len(healthOf(t, watcher).Consumers)
		if n == silent+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health lists %d sockets, want the %d silent ones and the watcher", n, silent+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var closedAfter time.Duration
	for deadline := opened.Add(interval + timeout + 5*time.Second); ; {
		if n := len(healthOf(t, watcher).Consumers); n == 1 {
			closedAfter = time.Since(opened)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("silent sockets still open %v after they went quiet, want them closed after %v", time.Since(opened), interval+timeout)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	if closedAfter < interval+timeout-200*time.Millisecond {
		t.Errorf("silent sockets closed %v after they went quiet, want not before ping_interval + pong_timeout (%v)", closedAfter, interval+timeout)
	}
	// The client side sees the close: the pings the server sent, then EOF or a reset, never a hang.
	pings := 0
	for i, conn := range silentConns {
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := readServerFrames(bufio.NewReader(conn), websocket.PingMessage)
		pings += n
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			t.Errorf("silent socket %d: still open after health stopped listing it", i)
		}
	}
	// Half handshakes: observed, not wskafka's to close.
	stillOpen := 0
	for _, conn := range halfConns {
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := conn.Read(make([]byte, 1))
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			stillOpen++
		}
	}
	if n := len(healthOf(t, watcher).Consumers); n != 1 {
		t.Errorf("health lists %d sockets with %d half handshakes open, want only the watcher: a half handshake is no socket", n, half)
	}
	t.Logf("silent upgraded sockets closed %v after going quiet (%d pings seen); %d of %d half handshakes still open after %v (Caddy's read_header timeout, 1m by default, closes them); second Caddy RSS peak %s",
		closedAfter.Round(time.Millisecond), pings, stillOpen, half, time.Since(opened).Round(time.Millisecond), mib(rss2.overallPeak()))
	return fmt.Sprintf("silent ws closed after %v; %d/%d half handshakes open", closedAfter.Round(100*time.Millisecond), stillOpen, half)
}

// neverReads: a subscriber that stops reading, with a tiny receive buffer, while megabytes are produced to its
// topic. Its server-side queue is bounded by max_queue_bytes and its fetching stops while that is full; the frame
// the writer cannot get out within write_timeout closes the socket (README: "a frame that takes longer to reach
// the client closes the socket"), well before keepalive would.
func (b *battery) neverReads(t *testing.T) string {
	const records, recordBytes = 60, 100 << 10
	d := websocket.Dialer{
		HandshakeTimeout: dialTimeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				err = conn.(*net.TCPConn).SetReadBuffer(4096)
			}
			return conn, err
		},
	}
	conn, resp, err := d.Dial(b.srv.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer conn.Close()
	stuck := &wsClient{name: "never-reads", conn: conn, nextID: 1000, seen: make(map[string]bool)}
	stuck.request(t, subscribeMsg(uniqueName(t, "stuck-group"), b.stuckTopic))
	control := dial(t, "control", b.srv.url(), nil)
	// From here on the socket is never read.

	values := make([][]byte, records)
	for i := range values {
		values[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, recordBytes)
	}
	produced := time.Now()
	kcatProduceValues(t, b.stuckTopic, values)
	t.Logf("produced %d × %d KiB in %v", records, recordBytes>>10, time.Since(produced).Round(time.Millisecond))

	var closedAfter time.Duration
	for deadline := produced.Add(defaultKeepalive - 5*time.Second); ; {
		if !slices.Contains(healthTopics(t, control), b.stuckTopic) {
			closedAfter = time.Since(produced)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the never-reading socket is still open %v after %d MiB were produced to it, want it closed by write_timeout (%v)",
				time.Since(produced).Round(time.Millisecond), records*recordBytes>>20, defaultWriteTimeout)
		}
		time.Sleep(250 * time.Millisecond) // poll interval
	}
	if closedAfter < defaultWriteTimeout {
		t.Errorf("the never-reading socket was closed %v after the records were produced, want not before write_timeout (%v)", closedAfter, defaultWriteTimeout)
	}
	// The client side would see the end of the connection only after the server's kernel has sent it what its send
	// buffer took before the write blocked (up to tcp_wmem's maximum, 4 MiB by default, outside Caddy's RSS),
	// through a 4 KiB window: minutes. The server has let go of the socket, which is what this case is about.
	t.Logf("closed %v after the records were produced", closedAfter.Round(time.Millisecond))
	return fmt.Sprintf("closed by write_timeout after %v", closedAfter.Round(100*time.Millisecond))
}

// --- the bystander ------------------------------------------------------------------------------------------

// bystander publishes one message every bystanderInterval through the bridge (with receipts) and receives them on
// another socket, recording each message's delivery latency.
type bystander struct {
	pub, sub *wsClient
	stop     chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	sent    map[int]time.Time     // sequence number → when it was written
	latency map[int]time.Duration // sequence number → written to delivered
	acked   map[int]bool
	errs    []string
}

func startBystander(t *testing.T, url, topic, group string) *bystander {
	t.Helper()
	by := &bystander{
		pub: dial(t, "bystander-publisher", url, nil), sub: dial(t, "bystander-subscriber", url, nil),
		stop: make(chan struct{}), sent: map[int]time.Time{}, latency: map[int]time.Duration{}, acked: map[int]bool{},
	}
	by.sub.request(t, subscribeMsg(group, topic))
	by.wg.Go(func() { by.receive() })
	by.wg.Go(func() { by.readReceipts() })
	by.wg.Go(func() { by.publish(topic) })
	t.Cleanup(func() { by.close() })
	return by
}

func (by *bystander) fail(format string, args ...any) {
	by.mu.Lock()
	defer by.mu.Unlock()
	if len(by.errs) < 10 {
		by.errs = append(by.errs, fmt.Sprintf(format, args...))
	}
}

func (by *bystander) publish(topic string) {
	ticker := time.NewTicker(bystanderInterval)
	defer ticker.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-by.stop:
			return
		case <-ticker.C:
		}
		frame := fmt.Sprintf(`{"id":%d,"t":"notif","a":"create","ack":true,"p":{"t":%q,"m":"%d"}}`, seq, topic, seq)
		by.mu.Lock()
		by.sent[seq] = time.Now()
		by.mu.Unlock()
		by.pub.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := by.pub.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			by.fail("publishing %d: %v", seq, err)
			return
		}
	}
}

// readReceipts reads the publisher's receipts: each publish must be taken by Kafka.
func (by *bystander) readReceipts() {
	for {
		by.pub.conn.SetReadDeadline(time.Time{})
		_, frame, err := by.pub.conn.ReadMessage()
		if err != nil {
			select {
			case <-by.stop:
			default:
				by.fail("publisher: reading: %v", err)
			}
			return
		}
		var r struct {
			RefID int `json:"refid"`
			S     int `json:"s"`
		}
		if err := json.Unmarshal(frame, &r); err != nil || r.S != 0 {
			by.fail("publisher: got %s, want a receipt (s:0)", frame)
			continue
		}
		by.mu.Lock()
		by.acked[r.RefID] = true
		by.mu.Unlock()
	}
}

func (by *bystander) receive() {
	for {
		_, frame, err := by.sub.conn.ReadMessage()
		now := time.Now()
		if err != nil {
			select {
			case <-by.stop:
			default:
				by.fail("subscriber: reading: %v", err)
			}
			return
		}
		var notes []struct {
			P string `json:"p"`
		}
		if err := json.Unmarshal(frame, &notes); err != nil {
			by.fail("subscriber: got %s, want a notification frame", frame)
			continue
		}
		by.mu.Lock()
		for _, n := range notes {
			seq, err := strconv.Atoi(n.P)
			sentAt, ok := by.sent[seq]
			switch {
			case err != nil || !ok:
				by.errs = append(by.errs, fmt.Sprintf("subscriber: got %q, which was never published", n.P))
			case by.latency[seq] != 0:
				by.errs = append(by.errs, fmt.Sprintf("subscriber: got %d twice", seq))
			default:
				by.latency[seq] = max(now.Sub(sentAt), time.Nanosecond)
			}
		}
		by.mu.Unlock()
	}
}

// finish stops publishing, waits (bounded) for every published message to arrive, and returns the figures.
func (by *bystander) finish(t *testing.T) *bystanderFigures {
	t.Helper()
	close(by.stop)
	deadline := time.Now().Add(bystanderDrain)
	for {
		by.mu.Lock()
		done := len(by.latency) >= len(by.sent) && len(by.acked) >= len(by.sent)
		by.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	by.close()
	by.mu.Lock()
	defer by.mu.Unlock()
	f := &bystanderFigures{sent: by.sent, latency: by.latency, errs: by.errs}
	for seq := range by.sent {
		if !by.acked[seq] {
			f.errs = append(f.errs, fmt.Sprintf("publish %d: no receipt", seq))
		}
	}
	return f
}

// close ends the bystander's goroutines; it is idempotent.
func (by *bystander) close() {
	select {
	case <-by.stop:
	default:
		close(by.stop)
	}
	by.pub.conn.SetReadDeadline(time.Now())
	by.sub.conn.SetReadDeadline(time.Now())
	by.wg.Wait()
}

type bystanderFigures struct {
	sent    map[int]time.Time
	latency map[int]time.Duration
	errs    []string
}

// window returns how many messages were published in [start, end), how many of them never arrived, and the 99th
// percentile latency of those that did.
func (f *bystanderFigures) window(start, end time.Time) (sent, lost int, p99 time.Duration) {
	var lat []time.Duration
	for seq, at := range f.sent {
		if at.Before(start) || !at.Before(end) {
			continue
		}
		sent++
		if l, ok := f.latency[seq]; ok {
			lat = append(lat, l)
		} else {
			lost++
		}
	}
	return sent, lost, testkit.Percentile(lat, 0.99)
}

func (f *bystanderFigures) p99All() time.Duration {
	return testkit.Percentile(slices.Collect(maps.Values(f.latency)), 0.99).Round(time.Millisecond)
}

func (f *bystanderFigures) maxAll() time.Duration {
	return testkit.Percentile(slices.Collect(maps.Values(f.latency)), 1).Round(time.Millisecond)
}

// --- memory -------------------------------------------------------------------------------------------------

// rssWatch samples a process's resident memory (VmRSS) every rssSample, keeping the peak since the last reset and
// over its whole life.
type rssWatch struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	last      int64
	peak      int64 // since reset
	overall   int64
	resetAt   int64 // the value at the last reset
	sampleErr error
}

const rssSample = 20 * time.Millisecond

func watchRSS(t *testing.T, pid int) *rssWatch {
	t.Helper()
	w := &rssWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := testkit.ResidentBytes(pid); err != nil {
		t.Fatal(err)
	}
	w.sample()
	go func() {
		defer close(w.done)
		ticker := time.NewTicker(rssSample)
		defer ticker.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-ticker.C:
				w.sample()
			}
		}
	}()
	t.Cleanup(func() {
		close(w.stop)
		<-w.done
	})
	return w
}

func (w *rssWatch) sample() int64 {
	v, err := testkit.ResidentBytes(w.pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// The process has exited: keep the figures.
		w.sampleErr = err
		return w.last
	}
	w.last = v
	w.peak = max(w.peak, v)
	w.overall = max(w.overall, v)
	return v
}

// reset samples now, starts a new period from that value, and returns it.
func (w *rssWatch) reset() int64 {
	v := w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.peak, w.resetAt = v, v
	return v
}

func (w *rssWatch) peakSince() int64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

func (w *rssWatch) start() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resetAt
}

func (w *rssWatch) current() int64 { return w.sample() }

func (w *rssWatch) overallPeak() int64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.overall
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

// --- raw and hostile clients ----------------------------------------------------------------------------------

// expectReply sends one frame of the given type and checks the next reply: s:0 when code is "", else s:1 with
// that code; refid exactly as given, or absent when refid is "". Every reply must be a UTF-8 text frame.
func expectReply(t *testing.T, c *wsClient, typ int, frame []byte, refid, code string) *reply {
	t.Helper()
	shown := string(frame)
	if len(shown) > 80 {
		shown = shown[:80] + fmt.Sprintf("…(%d bytes)", len(frame))
	}
	c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.conn.WriteMessage(typ, frame); err != nil {
		t.Fatalf("%s: writing %q: %v", c.name, shown, err)
	}
	r, err := c.nextReply(replyTimeout)
	if err != nil {
		t.Fatalf("%s: %q: %v", c.name, shown, err)
	}
	if !utf8.Valid(r.raw) {
		t.Errorf("%s: %q: got reply %q, which is not UTF-8: a text frame must be (RFC 6455 §5.6)", c.name, shown, r.raw)
	}
	switch {
	case refid == "" && r.has("refid"):
		t.Errorf("%s: %q: got reply %s, want no refid", c.name, shown, r.raw)
	case refid != "" && string(r.RefID) != refid:
		t.Errorf("%s: %q: got reply %s, want refid %s", c.name, shown, r.raw, refid)
	}
	if code == "" {
		if r.S != 0 {
			t.Errorf("%s: %q: got reply %s, want s:0", c.name, shown, r.raw)
		}
		return r
	}
	p, err := r.errorPayload()
	if r.S != 1 || err != nil || p.Code != code || p.Message == "" {
		t.Errorf("%s: %q: got reply %s, want s:1 with code %s and a message", c.name, shown, r.raw, code)
	}
	return r
}

// hugeFragmented sends a text message of size bytes with gorilla, which fragments it into frames of its write
// buffer's size, and returns the close code the server answers with.
func hugeFragmented(url string, size int) (int, error) {
	c, err := dialErr("huge-fragmented", url, nil)
	if err != nil {
		return 0, err
	}
	defer c.conn.Close()
	written := make(chan error, 1)
	go func() {
		c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		written <- c.conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte{'x'}, size))
	}()
	c.conn.SetReadDeadline(time.Now().Add(replyTimeout))
	_, frame, err := c.conn.ReadMessage()
	c.conn.Close()
	<-written
	var closeErr *websocket.CloseError
	if !errors.As(err, &closeErr) {
		return 0, fmt.Errorf("got frame %.80q, error %v; want a close frame", frame, err)
	}
	return closeErr.Code, nil
}

// hugeSingleFrame sends the header of one text frame of size bytes, then streams its payload, and returns the
// close code the server answers with.
func hugeSingleFrame(port, size int) (int, error) {
	conn, br, err := rawUpgrade(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 0)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	written := make(chan error, 1)
	go func() {
		// FIN + text, masked, 64-bit length, mask key 0 (legal, and the payload goes as is: RFC 6455 §5.3).
		header := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(header[2:10], uint64(size))
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := conn.Write(header); err != nil {
			written <- err
			return
		}
		chunk := bytes.Repeat([]byte{'x'}, 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := conn.Write(chunk); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	conn.SetReadDeadline(time.Now().Add(replyTimeout))
	code, err := readCloseFrame(br)
	conn.Close()
	<-written
	return code, err
}

// rawUpgrade opens a TCP connection and performs the WebSocket handshake by hand (RFC 6455 §4.1); rcvbuf, when
// not 0, sets the socket's receive buffer first.
func rawUpgrade(addr string, rcvbuf int) (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, nil, err
	}
	if rcvbuf > 0 {
		conn.(*net.TCPConn).SetReadBuffer(rcvbuf)
	}
	key := make([]byte, 16)
	rand.Read(key)
	conn.SetDeadline(time.Now().Add(dialTimeout))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", addr, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade: got %s, want 101", resp.Status)
	}
	conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// readServerFrame reads one unmasked server frame (RFC 6455 §5.2) and returns its opcode and payload.
func readServerFrame(r *bufio.Reader) (opcode int, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return int(h[0] & 0x0f), payload, err
}

// readCloseFrame reads server frames up to a close frame and returns its code.
func readCloseFrame(r *bufio.Reader) (int, error) {
	for {
		op, payload, err := readServerFrame(r)
		if err != nil {
			return 0, fmt.Errorf("reading until a close frame: %w", err)
		}
		if op == websocket.CloseMessage {
			if len(payload) < 2 {
				return websocket.CloseNoStatusReceived, nil
			}
			return int(binary.BigEndian.Uint16(payload)), nil
		}
	}
}

// readServerFrames reads server frames until the connection ends, counting those with opcode op; a frame of
// another opcode is an error. It returns the count and the error that ended the reading (nil at EOF).
func readServerFrames(r *bufio.Reader, op int) (int, error) {
	n := 0
	for {
		got, payload, err := readServerFrame(r)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if got != op {
			return n, fmt.Errorf("got a frame of opcode %d (%q), want only %d", got, payload, op)
		}
		n++
	}
}
