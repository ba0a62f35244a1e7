package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kcatRecord is one record as kcat reports it.
type kcatRecord struct {
	Key       []byte // nil for a null key
	Value     []byte // nil for a null value
	Partition int
	Offset    int64
	Time      int64        // ms since the epoch
	Headers   []kcatHeader // in the record's order
}

type kcatHeader struct{ Name, Value string }

// kcatRecordFormat prints key and value with their lengths, so that they are read back byte for byte, then
// partition, offset, timestamp and the headers (name=value, comma-separated, raw bytes) up to the line's end.
// Header names and values of the tests hold no ',', '=' or newline.
const kcatRecordFormat = `%K:%k%S:%s%p:%o:%T:%h\n`

// parseKcatRecords reads what kcat printed with kcatRecordFormat.
func parseKcatRecords(t *testing.T, out []byte) []kcatRecord {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(out))
	field := func(delim byte) string {
		s, err := r.ReadString(delim)
		if err != nil {
			t.Fatalf("kcat output %q: reading up to %q: %v", out, delim, err)
		}
		return strings.TrimSuffix(s, string(delim))
	}
	number := func(delim byte) int64 {
		s := field(delim)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("kcat output %q: %v", out, err)
		}
		return n
	}
	sized := func() []byte {
		n := number(':')
		if n < 0 {
			return nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("kcat output %q: reading %d bytes: %v", out, n, err)
		}
		return b
	}
	var recs []kcatRecord
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return recs
		}
		var rec kcatRecord
		rec.Key = sized()
		rec.Value = sized()
		rec.Partition = int(number(':'))
		rec.Offset = number(':')
		rec.Time = number(':')
		if h := field('\n'); h != "" {
			for _, pair := range strings.Split(h, ",") {
				name, value, ok := strings.Cut(pair, "=")
				if !ok {
					t.Fatalf("kcat output %q: header %q has no '='", out, pair)
				}
				rec.Headers = append(rec.Headers, kcatHeader{name, value})
			}
		}
		recs = append(recs, rec)
	}
}

// kcatRecordAt reads the one record at partition and offset of topic.
func kcatRecordAt(t *testing.T, topic string, partition int, offset int64) kcatRecord {
	t.Helper()
	out := kcat(t, nil, "-C", "-t", topic, "-p", strconv.Itoa(partition), "-o", strconv.FormatInt(offset, 10),
		"-c", "1", "-e", "-f", kcatRecordFormat)
	recs := parseKcatRecords(t, out)
	if len(recs) != 1 {
		t.Fatalf("kcat -p %d -o %d on %s: got %d records, want 1: %q", partition, offset, topic, len(recs), out)
	}
	return recs[0]
}

// kcatRecords reads every record of topic, from the beginning to the current end.
func kcatRecords(t *testing.T, topic string) []kcatRecord {
	t.Helper()
	return parseKcatRecords(t, kcat(t, nil, "-C", "-t", topic, "-o", "beginning", "-e", "-f", kcatRecordFormat))
}

// receipt is the p of the reply to a publish with "ack": true.
type receipt struct {
	T      string `json:"t"`
	Part   *int   `json:"part"`
	Offset *int64 `json:"offset"`
	TS     *int64 `json:"ts"`
}

// parseReceipt checks that a reply is a receipt, {"t","part","offset","ts"} and nothing else, and returns it.
func parseReceipt(t *testing.T, r *reply) receipt {
	t.Helper()
	if r.S != 0 || r.T != "notif" || r.A != "create" {
		t.Fatalf("publish reply %s: want s:0, t notif, a create", r.raw)
	}
	keys, err := objectKeys(r.P)
	if err != nil {
		t.Fatalf("receipt %s: %v", r.raw, err)
	}
	if want := []string{"t", "part", "offset", "ts"}; !slices.Equal(keys, want) {
		t.Fatalf("receipt %s: got keys %q, want %q", r.raw, keys, want)
	}
	var rc receipt
	if err := json.Unmarshal(r.P, &rc); err != nil || rc.Part == nil || rc.Offset == nil || rc.TS == nil {
		t.Fatalf("receipt %s: %v", r.raw, err)
	}
	return rc
}

// createPartitioned creates a topic with a partition count over the protocol, with the per-topic form of create,
// and checks the reply and, with kcat, the broker.
func createPartitioned(t *testing.T, c *wsClient, topic string, partitions int) {
	t.Helper()
	r := c.request(t, topicMsg("create", []any{map[string]any{"name": topic, "partitions": partitions}}))
	if got, want := string(r.P), fmt.Sprintf(`[{"name":%q,"s":0}]`, topic); got != want {
		t.Fatalf("create reply p: got %s, want %s", got, want)
	}
	want := make([]int, partitions)
	for i := range want {
		want[i] = i
	}
	if got := kcatPartitions(t, topic); !slices.Equal(got, want) {
		t.Fatalf("kcat -L %s: got partitions %v, want %v", topic, got, want)
	}
}

// sendAll sends the requests without waiting, each with a fresh numeric id, and returns their replies in the
// order of the requests (replies are matched by refid, whatever order they come in).
func (c *wsClient) sendAll(t *testing.T, msgs []map[string]any) []*reply {
	t.Helper()
	index := make(map[string]int, len(msgs))
	for i, msg := range msgs {
		c.nextID++
		msg["id"] = c.nextID
		index[strconv.Itoa(c.nextID)] = i
		if err := c.send(msg); err != nil {
			t.Fatal(err)
		}
	}
	replies := make([]*reply, len(msgs))
	for range msgs {
		r, err := c.nextReply(replyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		i, ok := index[string(r.RefID)]
		if !ok || replies[i] != nil {
			t.Fatalf("%s: got reply %s, want one reply to each of ids %v", c.name, r.raw, index)
		}
		replies[i] = r
	}
	return replies
}

// TestReceiptOffsetsMatchKafka protects receipts: each {"t","part","offset","ts"} names exactly the record the
// publish wrote, as the broker (kcat) reports it at that partition and offset: same key, same value bytes, same
// timestamp. The publishes go out in one burst, so several records share one produce request per partition.
func TestReceiptOffsetsMatchKafka(t *testing.T) {
	needSuite(t)
	needKcat(t)
	srv := startCaddy(t, caddyOptions{})
	c := dial(t, "publisher", srv.url(), nil)
	topic := uniqueName(t, "t")
	createPartitioned(t, c, topic, 2)

	const n = 12
	var msgs []map[string]any
	for i := range n {
		p := map[string]any{"t": topic, "m": fmt.Sprintf("value %d", i), "k": fmt.Sprintf("key-%d", i)}
		msg := map[string]any{"t": "notif", "a": "create", "p": p}
		// Both forms of asking: at the top level and in p.
		if i%2 == 0 {
			msg["ack"] = true
		} else {
			p["ack"] = true
		}
		msgs = append(msgs, msg)
	}
	replies := c.sendAll(t, msgs)

	perPartition := map[int]int{}
	seen := map[string]bool{}
	for i, r := range replies {
		rc := parseReceipt(t, r)
		if rc.T != topic {
			t.Errorf("receipt %s: got t %q, want %q", r.raw, rc.T, topic)
		}
		if *rc.Part < 0 || *rc.Part > 1 {
			t.Fatalf("receipt %s: got part %d, want 0 or 1", r.raw, *rc.Part)
		}
		where := fmt.Sprintf("%d/%d", *rc.Part, *rc.Offset)
		if seen[where] {
			t.Fatalf("receipt %s: partition/offset %s named twice", r.raw, where)
		}
		seen[where] = true
		perPartition[*rc.Part]++
		rec := kcatRecordAt(t, topic, *rc.Part, *rc.Offset)
		wantKey, wantValue := fmt.Sprintf("key-%d", i), fmt.Sprintf("value %d", i)
		if string(rec.Key) != wantKey || string(rec.Value) != wantValue {
			t.Errorf("receipt %s: kcat at %s: got key %q value %q, want key %q value %q", r.raw, where, rec.Key, rec.Value, wantKey, wantValue)
		}
		if rec.Partition != *rc.Part || rec.Offset != *rc.Offset {
			t.Errorf("receipt %s: kcat reports partition %d offset %d", r.raw, rec.Partition, rec.Offset)
		}
		if rec.Time != *rc.TS {
			t.Errorf("receipt %s: kcat at %s: got timestamp %d, want the receipt's ts %d", r.raw, where, rec.Time, *rc.TS)
		}
	}
	// Nothing else was written: the topic holds exactly the n records.
	if got := len(kcatRecords(t, topic)); got != n {
		t.Errorf("kcat: topic holds %d records, want %d", got, n)
	}
	t.Logf("records per partition: %v", perPartition)
}

// metaNote is one notification of a subscription with "meta": true.
type metaNote struct {
	ID     json.Number     `json:"id"`
	P      *string         `json:"p"`
	Topic  string          `json:"topic"`
	Part   int             `json:"part"`
	Offset int64           `json:"offset"`
	K      *string         `json:"k"`
	H      json.RawMessage `json:"h"`
	TS     int64           `json:"ts"`
	Enc    string          `json:"enc"`
}

// parseMeta decodes a meta notification, base64 undone, with its headers in order.
func parseMeta(t *testing.T, n notification) (metaNote, []byte, []byte, []kcatHeader) {
	t.Helper()
	var m metaNote
	if err := json.Unmarshal(n.raw, &m); err != nil {
		t.Fatalf("meta notification %s: %v", n.raw, err)
	}
	keys, err := objectKeys(n.raw)
	if err != nil {
		t.Fatalf("meta notification %s: %v", n.raw, err)
	}
	for _, key := range []string{"topic", "part", "offset", "k", "h", "ts"} {
		if !slices.Contains(keys, key) {
			t.Fatalf("meta notification %s: got no %q", n.raw, key)
		}
	}
	decode := func(s *string) []byte {
		if s == nil {
			return nil
		}
		if m.Enc != "base64" {
			return []byte(*s)
		}
		b, err := base64.StdEncoding.DecodeString(*s)
		if err != nil {
			t.Fatalf("meta notification %s: %q: %v", n.raw, *s, err)
		}
		return b
	}
	if m.Enc != "" && m.Enc != "base64" {
		t.Fatalf("meta notification %s: got enc %q, want none or base64", n.raw, m.Enc)
	}
	// h is an object whose members keep the record's header order, repeated names included: read it as pairs.
	dec := json.NewDecoder(bytes.NewReader(m.H))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("meta notification %s: got h %s, want an object", n.raw, m.H)
	}
	var headers []kcatHeader
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			t.Fatalf("meta notification %s: h: %v", n.raw, err)
		}
		var value string
		if err := dec.Decode(&value); err != nil {
			t.Fatalf("meta notification %s: h: %v", n.raw, err)
		}
		headers = append(headers, kcatHeader{name.(string), string(decode(&value))})
	}
	return m, decode(m.P), decode(m.K), headers
}

// TestKeysHeadersWithKcat checks keys, headers, partitions, timestamps and binary values in both directions,
// with kcat on the Kafka side: what a publish sets (base64 included) is what kcat reads, and what kcat produces
// is what a meta subscriber receives.
func TestKeysHeadersWithKcat(t *testing.T) {
	needSuite(t)
	needKcat(t)
	srv := startCaddy(t, caddyOptions{})
	c := dial(t, "client", srv.url(), nil)

	t.Run("websocket to kafka", func(t *testing.T) {
		topic := uniqueName(t, "t")
		createPartitioned(t, c, topic, 3)
		b64 := base64.StdEncoding.EncodeToString
		binValue := []byte{0x00, 0xff, 0xfe, '\n', '"', 0x80, 'z', 0x00}
		binKey := []byte{'k', 0x00, 0xc3}
		// Timestamps set by the client, an hour back: old enough to differ from "now", recent enough that no
		// retention check deletes them before kcat reads them.
		base := time.Now().Add(-time.Hour).UnixMilli()
		tests := []struct {
			name    string
			p       map[string]any
			raw     string // the whole frame as text, when p cannot say it
			part    int
			ts      int64
			key     []byte
			value   []byte
			headers []kcatHeader
		}{
			{
				name: "base64",
				p: map[string]any{"t": topic, "enc": "base64", "m": b64(binValue), "k": b64(binKey),
					"h": map[string]any{"bin": b64([]byte{0xff, 0x01, 'x'})}, "part": 2, "ts": base + 123},
				part: 2, ts: base + 123, key: binKey, value: binValue,
				headers: []kcatHeader{{"bin", "\xff\x01x"}},
			},
			{
				name: "text",
				p: map[string]any{"t": topic, "m": "text value é", "k": "text key",
					"h": map[string]any{"trace": "abc-123"}, "part": 1, "ts": base},
				part: 1, ts: base, key: []byte("text key"), value: []byte("text value é"),
				headers: []kcatHeader{{"trace", "abc-123"}},
			},
			{
				// Repeated header names are kept, in the order sent: a JSON object with a repeated member.
				name: "repeated header names",
				raw:  `{"t":"notif","a":"create","ack":true,"p":{"t":"` + topic + `","m":"twice","h":{"x":"1","y":"2","x":"3"},"part":1,"ts":` + strconv.FormatInt(base+1, 10) + `}}`,
				part: 1, ts: base + 1, value: []byte("twice"),
				headers: []kcatHeader{{"x", "1"}, {"y", "2"}, {"x", "3"}},
			},
			{
				name: "partition 0, no key",
				p:    map[string]any{"t": topic, "m": "keyless", "part": 0, "ts": base + 2},
				part: 0, ts: base + 2, value: []byte("keyless"),
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var r *reply
				var err error
				if tt.raw != "" {
					if err = c.writeFrame([]byte(tt.raw)); err == nil {
						r, err = c.nextReply(replyTimeout)
					}
				} else {
					r, err = c.roundTrip(map[string]any{"t": "notif", "a": "create", "p": tt.p, "ack": true})
				}
				if err != nil {
					t.Fatal(err)
				}
				rc := parseReceipt(t, r)
				if *rc.Part != tt.part || *rc.TS != tt.ts {
					t.Errorf("receipt %s: got part %d ts %d, want part %d ts %d", r.raw, *rc.Part, *rc.TS, tt.part, tt.ts)
				}
				rec := kcatRecordAt(t, topic, *rc.Part, *rc.Offset)
				if rec.Partition != tt.part || rec.Offset != *rc.Offset || rec.Time != tt.ts {
					t.Errorf("kcat: got partition %d offset %d timestamp %d, want %d %d %d", rec.Partition, rec.Offset, rec.Time, tt.part, *rc.Offset, tt.ts)
				}
				if !bytes.Equal(rec.Key, tt.key) || (rec.Key == nil) != (tt.key == nil) {
					t.Errorf("kcat: got key %q, want %q", rec.Key, tt.key)
				}
				if !bytes.Equal(rec.Value, tt.value) {
					t.Errorf("kcat: got value %q, want %q", rec.Value, tt.value)
				}
				if !slices.Equal(rec.Headers, tt.headers) {
					t.Errorf("kcat: got headers %q, want %q", rec.Headers, tt.headers)
				}
			})
		}
	})

	t.Run("kafka to websocket", func(t *testing.T) {
		topic := uniqueName(t, "t")
		createPartitioned(t, c, topic, 3)
		c.request(t, topicMsg("subscribe", map[string]any{"t": []string{topic}, "consumer_group": uniqueName(t, "group"), "meta": true}))

		// A text record with a key and headers, into partition 1 ...
		kcat(t, strings.NewReader("my key:my value\n"), "-P", "-t", topic, "-p", "1", "-K", ":",
			"-H", "trace=abc-123", "-H", "x-id=42", "-H", "trace=again")
		// ... one with neither key nor headers into partition 0 ("k":null, "h":{}) ...
		kcat(t, strings.NewReader("no key\n"), "-P", "-t", topic, "-p", "0")
		// ... and a binary one into partition 2 (a file is one record, byte for byte), with a binary header.
		binValue := []byte{0xff, 0x00, 'b', 0xfe}
		path := filepath.Join(t.TempDir(), "record")
		if err := os.WriteFile(path, binValue, 0o644); err != nil {
			t.Fatal(err)
		}
		kcat(t, nil, "-P", "-t", topic, "-p", "2", "-k", "bin key", "-H", "bin=\xfe\x01", path)

		want := kcatRecords(t, topic)
		if len(want) != 3 {
			t.Fatalf("kcat: topic holds %d records, want 3", len(want))
		}
		notes, err := c.receiveNotes(3, replyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range notes {
			m, value, key, headers := parseMeta(t, n)
			if m.Topic != topic {
				t.Errorf("notification %s: got topic %q, want %q", n.raw, m.Topic, topic)
			}
			i := slices.IndexFunc(want, func(r kcatRecord) bool { return r.Partition == m.Part && r.Offset == m.Offset })
			if i < 0 {
				t.Errorf("notification %s: kcat reports no record at partition %d offset %d (it has %+v)", n.raw, m.Part, m.Offset, want)
				continue
			}
			rec := want[i]
			if !bytes.Equal(value, rec.Value) || !bytes.Equal(key, rec.Key) || (key == nil) != (rec.Key == nil) {
				t.Errorf("notification %s: got key %q value %q, want %q %q (kcat)", n.raw, key, value, rec.Key, rec.Value)
			}
			if !slices.Equal(headers, rec.Headers) {
				t.Errorf("notification %s: got headers %q, want %q (kcat)", n.raw, headers, rec.Headers)
			}
			if m.TS != rec.Time {
				t.Errorf("notification %s: got ts %d, want %d (kcat)", n.raw, m.TS, rec.Time)
			}
			wantEnc := ""
			if rec.Partition == 2 {
				wantEnc = "base64" // the value is not UTF-8
			}
			if m.Enc != wantEnc {
				t.Errorf("notification %s: got enc %q, want %q", n.raw, m.Enc, wantEnc)
			}
			want = slices.Delete(want, i, i+1)
		}
		c.request(t, topicMsg("unsubscribe", nil))
	})
}
