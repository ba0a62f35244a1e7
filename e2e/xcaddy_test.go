package e2e

import "testing"

// TestXcaddyBuild checks a Caddy built the way the README tells users to, with xcaddy from the Go module proxy:
// xcaddy build v2.11.9 --with github.com/wskafka/wskafka=<project root>, with the JWT module of TestJWT beside it.
// The build starts in TestMain and runs while the other tests do; this file sorts last so that they run first.
func TestXcaddyBuild(t *testing.T) {
	needSuite(t)
	if xcaddy == nil {
		t.Fatal("the xcaddy build was not started")
	}
	checkBinary(t, xcaddy.wait(t))
}
