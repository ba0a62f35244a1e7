package wskafka

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/wskafka/wskafka/bridge"
)

// defaultIdentity is the placeholder Caddy's authentication handlers (basic_auth, forward_auth with
// copy_headers into the user id, any caddyauth provider) set to the authenticated user.
const defaultIdentity = "{http.auth.user.id}"

// Permissions says what the clients of a route may do. Each list holds glob patterns (path.Match syntax: *
// matches any run of characters, ? one character, [a-z] a class) of the topic names allowed for that operation;
// patterns may hold placeholders, resolved for each connection when it opens, e.g. `user.{http.auth.user.id}.*`.
// With a permissions block, an operation whose list is empty is not allowed at all. A route without one allows
// everything, as the original connector did, and its Provision logs a warning.
type Permissions struct {
	// Publish: topics clients may publish to.
	Publish []string `json:"publish,omitempty"`
	// Subscribe: topics clients may subscribe to.
	Subscribe []string `json:"subscribe,omitempty"`
	// Groups: consumer groups a subscribe may name (the route's consumer.group_id is always allowed).
	Groups []string `json:"groups,omitempty"`
	// Create: topics clients may create.
	Create []string `json:"create,omitempty"`
	// List: topics topic/list shows.
	List []string `json:"list,omitempty"`
	// Describe: topics clients may describe.
	Describe []string `json:"describe,omitempty"`
	// Delete: topics clients may delete (with topics.allow_delete).
	Delete []string `json:"delete,omitempty"`
	// Health is what health lists: "all" sockets of the route, or the caller's "own". Default: own.
	Health string `json:"health,omitempty"`
}

// validate checks the patterns' syntax; placeholders are left as they are, since they resolve per connection.
func (p *Permissions) validate() []error {
	var errs []error
	for name, list := range p.lists() {
		for _, pattern := range list {
			if _, err := path.Match(pattern, ""); err != nil {
				errs = append(errs, fmt.Errorf("permissions.%s: pattern %q: %v", name, pattern, err))
			}
		}
	}
	if p.Health != "" && p.Health != "all" && p.Health != "own" {
		errs = append(errs, fmt.Errorf("permissions.health: unknown value %q (want all or own)", p.Health))
	}
	return errs
}

func (p *Permissions) lists() map[string][]string {
	return map[string][]string{
		"publish": p.Publish, "subscribe": p.Subscribe, "groups": p.Groups, "create": p.Create,
		"list": p.List, "describe": p.Describe, "delete": p.Delete,
	}
}

// access resolves the patterns' placeholders for one request.
func (p *Permissions) access(repl *caddy.Replacer) *bridge.Access {
	resolve := func(patterns []string) []string {
		out := make([]string, len(patterns))
		for i, pattern := range patterns {
			out[i] = repl.ReplaceAll(pattern, "")
		}
		return out
	}
	return &bridge.Access{
		Publish:   resolve(p.Publish),
		Subscribe: resolve(p.Subscribe),
		Groups:    resolve(p.Groups),
		Create:    resolve(p.Create),
		List:      resolve(p.List),
		Describe:  resolve(p.Describe),
		Delete:    resolve(p.Delete),
		HealthAll: p.Health == "all",
	}
}

func (p *Permissions) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var list *[]string
		switch d.Val() {
		case "publish":
			list = &p.Publish
		case "subscribe":
			list = &p.Subscribe
		case "groups":
			list = &p.Groups
		case "create":
			list = &p.Create
		case "list":
			list = &p.List
		case "describe":
			list = &p.Describe
		case "delete":
			list = &p.Delete
		case "health":
			if err := stringArg(d, &p.Health); err != nil {
				return err
			}
			continue
		default:
			return d.Errf("unrecognized permissions subdirective %q", d.Val())
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		*list = append(*list, args...)
	}
	return nil
}

// originAllowed is the upgrade's check against cross-site WebSocket hijacking: a browser always sends Origin, so
// a request from another site is refused unless its origin is listed (patterns like https://*.example.com are
// allowed; "*" allows any). Native clients send no Origin and are not affected; the site's own origin always
// passes.
func originAllowed(r *http.Request, origins []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pattern := range origins {
		if ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(origin)); ok {
			return true
		}
	}
	return false
}

// clientIP is the address per-client limits count connections by when there is no identity: Caddy's client IP,
// which honours the server's trusted_proxies.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
