package wskafka

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	jsclient "github.com/wskafka/wskafka/client"
)

func init() {
	caddy.RegisterModule(Files{})
}

// etagSuffix names the sidecar file that holds a file's ETag, for file_server's etag_file_extensions.
const etagSuffix = ".etag"

// Files is the file system of the JavaScript client library and the demo page, embedded in the binary, for
// file_server: register it with the global option `filesystem <name> wskafka` and serve it with
// `file_server { fs <name> }`. Embedded files have no modification time, so file_server could send neither
// Last-Modified nor its usual ETag and browsers would fetch them anew every time; Files therefore adds to every
// file a sidecar "<name>.etag" holding a digest of its content, which file_server sends as the ETag when told
// `etag_file_extensions .etag`: browsers revalidate and get 304 until the binary changes.
type Files struct{}

// CaddyModule returns the Caddy module information.
func (Files) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "caddy.fs.wskafka", New: func() caddy.Module { return new(Files) }}
}

// Open opens an embedded file, or the ETag sidecar of one.
func (Files) Open(name string) (fs.File, error) {
	if base, ok := strings.CutSuffix(name, etagSuffix); ok {
		if tag, ok := etags[base]; ok {
			return &memFile{Reader: bytes.NewReader(tag), info: memInfo{name: name[strings.LastIndex(name, "/")+1:], size: int64(len(tag))}}, nil
		}
	}
	return jsclient.Files.Open(name)
}

// UnmarshalCaddyfile takes no settings: `filesystem <name> wskafka`.
func (*Files) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	if d.NextArg() || d.NextBlock(0) {
		return d.Errf("the wskafka file system takes no settings")
	}
	return nil
}

// etags are the ETags of the embedded files, by path: a strong validator (RFC 9110 §8.8.3) from their content.
var etags = func() map[string][]byte {
	tags := make(map[string][]byte)
	err := fs.WalkDir(jsclient.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := fs.ReadFile(jsclient.Files, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(content)
		tags[path] = []byte(`"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`)
		return nil
	})
	if err != nil {
		panic("wskafka: reading the embedded client files: " + err.Error()) // a broken build, not a runtime state
	}
	return tags
}()

// memFile is a sidecar file, held in memory.
type memFile struct {
	*bytes.Reader
	info memInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// Interface guards
var (
	_ fs.FS                 = Files{}
	_ caddyfile.Unmarshaler = (*Files)(nil)
)
