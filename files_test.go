package wskafka

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The embedded library is served by file_server from the wskafka file system on the socket's own route, with an
// ETag from its content that a browser's revalidation matches (304), and the socket still upgrades there.
func TestFilesServeTheLibrary(t *testing.T) {
	addr := startCaddyfile(t, `{
	admin off
	filesystem wskafka-client wskafka
}
http://{addr} {
	route {
		wskafka {
			brokers {brokers}
		}
		file_server {
			fs wskafka-client
			etag_file_extensions .etag
		}
	}
}`)
	url := "http://" + addr + "/wskafka.js"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(string(body), "export function connect") {
		t.Fatalf("got %d %q, %d bytes; want the library as JavaScript", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if want := string(etags["wskafka.js"]); etag != want {
		t.Fatalf("got ETag %q, want %q", etag, want)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidating: got %d, want 304", resp.StatusCode)
	}
	c := dial(t, "ws://"+addr+"/")
	succeeded(t, "ping", c.request(`{"id":1,"t":"ping"}`, "1"))
}

// The file system takes no settings.
func TestFilesCaddyfile(t *testing.T) {
	for _, input := range []string{"wskafka extra", "wskafka {\n\tsetting\n}"} {
		if err := new(Files).UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			t.Fatalf("%q: got no error, want one", input)
		}
	}
	if err := new(Files).UnmarshalCaddyfile(caddyfile.NewTestDispenser("wskafka")); err != nil {
		t.Fatalf("got %v, want none", err)
	}
}
