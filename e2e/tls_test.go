package e2e

import (
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestTLS serves wskafka on https with Caddy's own CA (tls internal) and speaks the protocol over wss:// from Go
// and from Node, both trusting only the root certificate Caddy wrote to its storage, with verification on.
func TestTLS(t *testing.T) {
	needSuite(t)
	srv := startCaddy(t, caddyOptions{tls: true})

	t.Run("untrusted", func(t *testing.T) {
		// Verification is on: without Caddy's root the handshake fails.
		_, err := dialErr("untrusted", srv.url(), nil)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("dialing %s without Caddy's root: got %v, want x509.UnknownAuthorityError", srv.url(), err)
		}
	})

	t.Run("go", func(t *testing.T) {
		sub := dial(t, "subscriber", srv.url(), srv.tlsConfig(t))
		pub := dial(t, "publisher", srv.url(), srv.tlsConfig(t))
		topic := uniqueName(t, "t")
		createTopics(t, sub, topic)
		sub.request(t, subscribeMsg(uniqueName(t, "group"), topic))
		pub.publish(t, topic, "over tls")
		if got := sub.mustReceive(t, 1); !slices.Equal(got, []string{"over tls"}) {
			t.Fatalf("received: got %q, want %q", got, []string{"over tls"})
		}
		assertHealth(t, pub, topic, "")
		sub.request(t, topicMsg("unsubscribe", nil))
	})

	t.Run("node", func(t *testing.T) {
		needNode(t)
		out, err := runNode(t, srv.url(), "NODE_EXTRA_CA_CERTS="+srv.rootPath())
		if err != nil {
			t.Fatalf("node conversation.mjs %s: got %v, want exit status 0\n%s", srv.url(), err, out)
		}
		t.Logf("%s", out)
	})

	t.Run("node untrusted", func(t *testing.T) {
		needNode(t)
		out, err := runNode(t, srv.url())
		if err == nil || !strings.Contains(out, "certificate") {
			t.Fatalf("node conversation.mjs %s without Caddy's root: got %v\n%s\nwant a certificate error", srv.url(), err, out)
		}
	})
}
