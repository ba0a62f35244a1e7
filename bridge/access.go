package bridge

import (
	"path"
	"time"

	"github.com/wskafka/wskafka/protocol"
)

// Client is who is at the other end of a socket, as the handler established it before the upgrade.
type Client struct {
	// Identity is the authenticated user ("" when the request carried none).
	Identity string
	// Addr is the client's IP address: what per-client limits count by when there is no identity.
	Addr string
	// Access is what the client may do; nil allows everything, as the original connector did.
	Access *Access
	// Namespace is put before every topic and group the client names, and taken off every name it is sent; its
	// permissions apply to the names it sees. The zero Namespace is none.
	Namespace protocol.Namespace
	// CloseAt is when the socket is closed with CloseCredentialExpired: its credential expires, or it reaches the
	// route's largest age. Zero: never.
	CloseAt time.Time
	// ClosesAtAge says that CloseAt is the route's largest age, which comes before the credential expires: the
	// close frame's reason says which.
	ClosesAtAge bool
}

// key is what per-client connection limits count by.
func (c Client) key() string {
	if c.Identity != "" {
		return "id:" + c.Identity
	}
	return "ip:" + c.Addr
}

// Access lists, per operation, the glob patterns (path.Match syntax) of the topics a client may use, with the
// route's placeholders already replaced for this client; an empty list allows nothing. Groups lists the consumer
// groups a subscribe may name (the route's default group is always allowed).
type Access struct {
	Publish, Subscribe, Groups, Create, List, Describe, Delete []string
	// HealthAll lets health list every socket of the route; otherwise it lists the caller's own.
	HealthAll bool
}

// allows reports whether name matches one of patterns. The patterns were checked when the config loaded, so
// path.Match cannot fail here.
func allows(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// denied returns the names that no pattern of the operation allows; nil when a has no rules.
func (a *Access) denied(patterns func(*Access) []string, names []string) []string {
	if a == nil {
		return nil
	}
	var out []string
	for _, n := range names {
		if !allows(patterns(a), n) {
			out = append(out, n)
		}
	}
	return out
}

// The operations' pattern lists, for denied.
func publishPatterns(a *Access) []string   { return a.Publish }
func subscribePatterns(a *Access) []string { return a.Subscribe }
func groupPatterns(a *Access) []string     { return a.Groups }
func createPatterns(a *Access) []string    { return a.Create }
func describePatterns(a *Access) []string  { return a.Describe }
func deletePatterns(a *Access) []string    { return a.Delete }
