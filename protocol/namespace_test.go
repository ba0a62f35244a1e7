package protocol

import (
	"slices"
	"strings"
	"testing"
)

func TestNewNamespace(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		want   string // the error's message; "" when the namespace is valid
	}{
		{"host and dot", "acme.example.com.", ""},
		{"248 characters", strings.Repeat("n", 248), ""},
		{"empty", "", "namespace is empty"},
		{"249 characters", strings.Repeat("n", 249), "namespace is 249 characters: it must be shorter than 249 to leave room for a topic name"},
		{"slash", "a/", `namespace "a/" contains '/': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"port of a host", "[::1]:443.", `namespace "[::1]:443." contains '[': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"glob", "t*.", `namespace "t*." contains '*': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if _, err := NewNamespace(tt.prefix); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// namespaced decodes frame as a client of the namespace "t1." would send it.
func namespaced(t *testing.T, frame string) (Request, *Error) {
	t.Helper()
	ns, err := NewNamespace("t1.")
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	d.SetNamespace(ns)
	return d.Decode([]byte(frame))
}

// TestDecodeNamespace checks that every field that names a topic or a group gets the prefix, and that the
// length limits count it: a name the client may type on a route without a namespace may be too long here.
func TestDecodeNamespace(t *testing.T) {
	long := strings.Repeat("x", 247) // 250 with "t1."
	tests := []struct {
		name    string
		frame   string
		want    func(Request) []string // the names of the decoded request
		wantErr string                 // the error, "" for none
	}{
		{"create names", `{"t":"topic","a":"create","p":["a","t1.a"]}`,
			func(r Request) []string { return append(slices.Clone(r.Topics), namesOfSpecs(r.Create)...) },
			""},
		{"create objects", `{"t":"topic","a":"create","p":[{"name":"a","partitions":2}]}`,
			func(r Request) []string { return append(slices.Clone(r.Topics), namesOfSpecs(r.Create)...) }, ""},
		{"create too long with the prefix", `{"t":"topic","a":"create","p":["` + long + `"]}`, nil,
			`invalid_topic: p: topic name "` + long + `" is longer than 246 characters, the most this route's namespace leaves`},
		{"delete", `{"t":"topic","a":"delete","p":"a"}`, func(r Request) []string { return r.Topics }, ""},
		{"describe with group", `{"t":"topic","a":"describe","p":{"t":["a"],"consumer_group":"g"}}`,
			func(r Request) []string { return append(slices.Clone(r.Topics), r.Group) }, ""},
		{"subscribe, group and seek", `{"t":"topic","a":"subscribe","p":{"t":["a","b"],"consumer_group":"g","seek":{"b":{"0":5}}}}`,
			func(r Request) []string {
				names := append(slices.Clone(r.Topics), r.Group)
				for k := range r.Subscribe.Seek {
					names = append(names, k)
				}
				return names
			}, ""},
		{"subscribe without a group keeps the route's default", `{"t":"topic","a":"subscribe","p":{"t":["a"]}}`,
			func(r Request) []string { return append(slices.Clone(r.Topics), r.Group) }, ""},
		{"group too long with the prefix", `{"t":"topic","a":"subscribe","p":{"t":["a"],"consumer_group":"` + strings.Repeat("g", 254) + `"}}`, nil,
			`invalid_topic: p.consumer_group: consumer group name "` + strings.Repeat("g", 254) + `" is longer than 252 characters, the most this route's namespace leaves`},
		{"partial unsubscribe", `{"t":"topic","a":"unsubscribe","p":{"t":["a"]}}`, func(r Request) []string { return r.Topics }, ""},
		{"unsubscribe from everything", `{"t":"topic","a":"unsubscribe"}`, func(r Request) []string { return r.Topics }, ""},
		{"publish", `{"t":"notif","p":{"t":"a","m":"x"}}`, func(r Request) []string { return []string{r.Publish.Topic} }, ""},
		{"publish too long with the prefix", `{"t":"notif","p":{"t":"` + long + `","m":"x"}}`, nil,
			`invalid_topic: p.t: topic name "` + long + `" is longer than 246 characters, the most this route's namespace leaves`},
		{"ack by offset", `{"t":"notif","a":"ack","p":{"t":"a","part":0,"offset":1}}`, func(r Request) []string { return []string{r.AckOf.Topic} }, ""},
		{"glob characters stay refused", `{"t":"notif","p":{"t":"*","m":"x"}}`, nil,
			`invalid_topic: p.t: topic name "*" contains '*': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"a path does not climb out", `{"t":"topic","a":"create","p":["../t2.a"]}`, nil,
			`invalid_topic: p[0]: topic name "../t2.a" contains '/': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
	}
	wantFull := map[string][]string{
		"create names":                {"t1.a", "t1.t1.a", "t1.a", "t1.t1.a"},
		"create objects":              {"t1.a", "t1.a"},
		"delete":                      {"t1.a"},
		"describe with group":         {"t1.a", "t1.g"},
		"subscribe, group and seek":   {"t1.a", "t1.b", "t1.g", "t1.b"},
		"partial unsubscribe":         {"t1.a"},
		"publish":                     {"t1.a"},
		"ack by offset":               {"t1.a"},
		"unsubscribe from everything": nil,
		"subscribe without a group keeps the route's default": {"t1.a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := namespaced(t, tt.frame)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got, want := tt.want(req), wantFull[tt.name]; !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func namesOfSpecs(specs []TopicSpec) []string {
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	return names
}

// TestDecodeNamespaceRepeatedPublish checks the cache of the last publish's Kafka name: a publish to another
// topic must not keep the previous one's.
func TestDecodeNamespaceRepeatedPublish(t *testing.T) {
	ns, _ := NewNamespace("t1.")
	var d Decoder
	d.SetNamespace(ns)
	for _, tt := range []struct{ frame, want string }{
		{`{"t":"notif","p":{"t":"a","m":"1"}}`, "t1.a"},
		{`{"t":"notif","p":{"t":"a","m":"2"}}`, "t1.a"},
		{`{"t":"notif","p":{"t":"b","m":"3"}}`, "t1.b"},
		{`{"t":"notif","p":{"t":"a","m":"4"}}`, "t1.a"},
	} {
		req, err := d.Decode([]byte(tt.frame))
		if err != nil || req.Publish.Topic != tt.want {
			t.Errorf("%s: got %q, %v, want %q", tt.frame, req.Publish.Topic, err, tt.want)
		}
	}
}

func TestNamespaceVisible(t *testing.T) {
	ns, _ := NewNamespace("t1.")
	tests := []struct {
		full, want string
		ok         bool
	}{
		{"t1.orders", "orders", true},
		{"t1.t1.orders", "t1.orders", true},
		{"t2.orders", "", false},
		{"T1.orders", "", false},
		{"t1.", "", false},
		{"orders", "", false},
	}
	for _, tt := range tests {
		got, ok := ns.Visible(tt.full)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Visible(%q): got %q, %v, want %q, %v", tt.full, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNamespaceVisibleText(t *testing.T) {
	ns, _ := NewNamespace("a.")
	tests := []struct{ name, text, want string }{
		{"one name", "publishing to a.orders: [3] Unknown Topic Or Partition", "publishing to orders: [3] Unknown Topic Or Partition"},
		{"a list", "no such topic: a.x, a.y", "no such topic: x, y"},
		{"quoted", `topic "a.x" exists`, `topic "x" exists`},
		{"at the start", "a.x failed", "x failed"},
		{"inside a word", "kafka.(*Client).Metadata: a.x", "kafka.(*Client).Metadata: x"},
		{"nothing", "kafka is unreachable", "kafka is unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ns.VisibleText(tt.text); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzDecodeNamespace checks that no frame decodes to a name outside the namespace, or to one Kafka refuses.
func FuzzDecodeNamespace(f *testing.F) {
	for _, s := range []string{
		`{"t":"topic","a":"create","p":["a",{"name":"b"}]}`,
		`{"t":"topic","a":"subscribe","p":{"t":["a"],"consumer_group":"g","seek":{"a":{"0":1}}}}`,
		`{"t":"notif","p":{"t":"a","m":"x"}}`,
		`{"t":"notif","a":"ack","p":{"t":"a","part":0,"offset":1}}`,
		`[{"t":"topic","a":"describe","p":{"t":["a"],"consumer_group":"g"}},{"t":"topic","a":"delete","p":"b"}]`,
	} {
		f.Add([]byte(s))
	}
	ns, _ := NewNamespace("t1.")
	f.Fuzz(func(t *testing.T, frame []byte) {
		var d Decoder
		d.SetNamespace(ns)
		d.DecodeFrame(frame, func(req Request, err *Error) {
			if err != nil {
				return
			}
			topics := slices.Clone(req.Topics)
			for _, c := range req.Create {
				topics = append(topics, c.Name)
			}
			for k := range req.Subscribe.Seek {
				topics = append(topics, k)
			}
			if req.Op == OpPublish {
				topics = append(topics, req.Publish.Topic)
			}
			if req.Op == OpAck && !req.AckOf.ByID {
				topics = append(topics, req.AckOf.Topic)
			}
			for _, name := range topics {
				if !strings.HasPrefix(name, "t1.") || ValidTopicName(name) != nil {
					t.Fatalf("decoded topic %q outside the namespace or invalid", name)
				}
			}
			if req.Group != "" && (!strings.HasPrefix(req.Group, "t1.") || ValidGroupName(req.Group) != nil) {
				t.Fatalf("decoded group %q outside the namespace or invalid", req.Group)
			}
		})
	})
}
