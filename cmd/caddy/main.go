// Command caddy is Caddy with its standard modules and wskafka compiled in.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/wskafka/wskafka"
)

func main() {
	caddycmd.Main()
}
