package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The peer's records must be publish commands Centrifugo decodes, of the size the other scenarios use, with a
// send time the subscribers find in either server's framing.
func TestCentrifugoCommand(t *testing.T) {
	now := time.Unix(1764709200, 123456789)
	value := centrifugoCommand(nil, now, 100)
	if len(value) != 100 {
		t.Errorf("got %d bytes, want 100", len(value))
	}
	var cmd struct {
		Method  string `json:"method"`
		Payload struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(value, &cmd); err != nil {
		t.Fatalf("not JSON: %v: %s", err, value)
	}
	if cmd.Method != "publish" || cmd.Payload.Channel != centrifugoChannel {
		t.Errorf("got method %q channel %q, want publish %q", cmd.Method, cmd.Payload.Channel, centrifugoChannel)
	}
	// wskafka delivers the value JSON-escaped inside a notification's string; Centrifugo as raw JSON data.
	escaped, _ := json.Marshal(string(value))
	for name, frame := range map[string][]byte{
		"wskafka":    []byte(`[{"id":1,"t":"notif","p":` + string(escaped) + `}]`),
		"centrifugo": []byte(`{"push":{"channel":"wskbench","pub":{"data":` + string(cmd.Payload.Data) + `}}}` + "\n" + `{"push":{"pub":{"data":` + string(cmd.Payload.Data) + `}}}`),
	} {
		var got []int64
		n, err := markedStamps(frame, func(sent int64) { got = append(got, sent) })
		want := 1
		if name == "centrifugo" {
			want = 2
		}
		if err != nil || n != want || got[0] != now.UnixNano() {
			t.Errorf("%s: got %d stamps %v (%v), want %d of %d", name, n, got, err, want, now.UnixNano())
		}
	}
	if n, err := markedStamps(centrifugoProbe(), func(int64) {}); n != 0 || err != nil {
		t.Errorf("probe: got %d stamps (%v), want none", n, err)
	}
}

// A Centrifugo ping is answered also when it shares a frame with pushes; a push is no ping.
func TestCentrifugoPing(t *testing.T) {
	for frame, want := range map[string]bool{
		`{}`:                             true,
		"{\"push\":{}}\n{}":              true,
		"{}\n{\"push\":{\"pub\":{}}}":    true,
		`{"push":{"pub":{"data":{}}}}`:   false,
		`{"id":1,"connect":{"ping":25}}`: false,
	} {
		if got := centrifugoPing([]byte(frame)); got != want {
			t.Errorf("centrifugoPing(%q): got %v, want %v", frame, got, want)
		}
	}
}

// Worker i's sockets are bound to the i-th address after the base, carrying into the third byte.
func TestSourceAddrs(t *testing.T) {
	s := sourceAddrs{base: net.ParseIP("127.0.1.250"), perAddr: 10}
	for i, want := range map[int]string{0: "127.0.1.250", 9: "127.0.1.250", 10: "127.0.1.251", 60: "127.0.2.0"} {
		if got := s.of(i).(*net.TCPAddr).IP.String(); got != want {
			t.Errorf("socket %d: got %s, want %s", i, got, want)
		}
	}
	if got := (sourceAddrs{}).of(5); got != nil {
		t.Errorf("no base: got %v, want nil (the kernel's choice)", got)
	}
}

// The curves are well-formed SVG with one path per series.
func TestWriteCharts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.svg")
	panels := []chartPanel{
		{title: "CPU <per> delivery", logX: true, series: []series{{"a & b", "#000", []point{{100, 4}, {1000, 5}, {10000, 7}}}}},
		{title: "p99", logX: true, logY: true, series: []series{{"a", "#000", []point{{100, 0.5}, {10000, 400}}}, {"c", "#f00", []point{{1000, 3}}}}},
		{title: "empty"},
	}
	if err := writeCharts(path, "caption", panels); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	paths := 0
	d := xml.NewDecoder(f)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		if e, ok := tok.(xml.StartElement); ok && e.Name.Local == "path" {
			paths++
		}
	}
	if paths != 3 {
		t.Errorf("got %d paths, want 3", paths)
	}
}

func TestNiceCeil(t *testing.T) {
	for v, want := range map[float64]float64{0.7: 1, 1: 1, 1.2: 2, 3: 5, 7: 10, 42: 50, 180: 200} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%v): got %v, want %v", v, got, want)
		}
	}
	if got := fmtTick(10000); !strings.EqualFold(got, "10k") {
		t.Errorf("fmtTick(10000): got %q, want 10k", got)
	}
}
