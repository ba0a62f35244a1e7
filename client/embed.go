// Package client holds the JavaScript client library and the demo page, embedded so that the Caddy module can
// serve them from the binary (see the root package's caddy.fs.wskafka). The library itself is wskafka.js; this
// file only embeds it.
package client

import "embed"

// Files are the library (wskafka.js, wskafka.d.ts) and the demo (demo/).
//
//go:embed wskafka.js wskafka.d.ts demo
var Files embed.FS
