package wskafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/wskafka/wskafka/kafkago"
)

// secret is the password of the tests; no log line, error or pool key may contain it.
const secret = "s3cret-Pa55word"

// TestKafkaSecurityCaddyfile protects the tls and sasl blocks' syntax: every setting lands in its field, and a
// bare tls means TLS with the system's pool.
func TestKafkaSecurityCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		tls   *KafkaTLS
		sasl  *KafkaSASL
	}{
		{
			name: "every setting",
			input: `wskafka {
				brokers k:9093
				tls {
					ca_file /etc/kafka/ca.pem
					cert_file /etc/kafka/client.pem
					key_file /etc/kafka/client.key
					server_name kafka.internal
					insecure_skip_verify
				}
				sasl {
					mechanism scram-sha-512
					username alice
					password {env.KAFKA_PASSWORD}
				}
			}`,
			tls: &KafkaTLS{
				CAFile: "/etc/kafka/ca.pem", CertFile: "/etc/kafka/client.pem", KeyFile: "/etc/kafka/client.key",
				ServerName: "kafka.internal", InsecureSkipVerify: true,
			},
			sasl: &KafkaSASL{Mechanism: "scram-sha-512", Username: "alice", Password: "{env.KAFKA_PASSWORD}"},
		},
		{
			name:  "bare tls",
			input: "wskafka {\n\tbrokers k:9093\n\ttls\n}",
			tls:   &KafkaTLS{},
		},
		{
			name:  "empty blocks",
			input: "wskafka {\n\tbrokers k:9093\n\ttls {\n\t}\n\tsasl {\n\t}\n}",
			tls:   &KafkaTLS{},
			sasl:  &KafkaSASL{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if !reflect.DeepEqual(h.TLS, tt.tls) {
				t.Errorf("tls: got %+v, want %+v", h.TLS, tt.tls)
			}
			if !reflect.DeepEqual(h.SASL, tt.sasl) {
				t.Errorf("sasl: got %+v, want %+v", h.SASL, tt.sasl)
			}
		})
	}
}

// TestKafkaSecurityCaddyfileErrors covers every error branch of the two blocks' parsers.
func TestKafkaSecurityCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  string
	}{
		{"tls with an argument", "tls on", "wrong argument count"},
		{"unknown tls subdirective", "tls {\n ca_path /x\n}", `unrecognized tls subdirective "ca_path"`},
		{"ca_file without a path", "tls {\n ca_file\n}", "wrong argument count"},
		{"cert_file with two paths", "tls {\n cert_file a b\n}", "wrong argument count"},
		{"key_file without a path", "tls {\n key_file\n}", "wrong argument count"},
		{"server_name without a name", "tls {\n server_name\n}", "wrong argument count"},
		{"insecure_skip_verify with an argument", "tls {\n insecure_skip_verify yes\n}", "wrong argument count"},
		{"sasl with an argument", "sasl plain", "wrong argument count"},
		{"unknown sasl subdirective", "sasl {\n user alice\n}", `unrecognized sasl subdirective "user"`},
		{"mechanism without a value", "sasl {\n mechanism\n}", "wrong argument count"},
		{"username with two values", "sasl {\n username a b\n}", "wrong argument count"},
		{"password without a value", "sasl {\n password\n}", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("wskafka {\n" + tt.block + "\n}"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestKafkaSecurityAdapt protects the JSON a Caddyfile adapts to: snake_case fields, and an {env.*} password kept
// as a placeholder, so the secret is not in the adapted config.
func TestKafkaSecurityAdapt(t *testing.T) {
	cfg := adapt(t, `:8080 {
	wskafka {
		brokers k:9093
		tls {
			ca_file /etc/kafka/ca.pem
			server_name kafka.internal
		}
		sasl {
			mechanism plain
			username alice
			password {env.KAFKA_PASSWORD}
		}
	}
}`)
	h := wskafkaHandler(t, cfg)
	want := map[string]any{
		"tls":  map[string]any{"ca_file": "/etc/kafka/ca.pem", "server_name": "kafka.internal"},
		"sasl": map[string]any{"mechanism": "plain", "username": "alice", "password": "{env.KAFKA_PASSWORD}"},
	}
	for field, w := range want {
		if !reflect.DeepEqual(h[field], w) {
			t.Errorf("%s: got %v, want %v", field, h[field], w)
		}
	}
}

// TestKafkaSecurityValidate protects Validate's messages about the two blocks: each names its field.
func TestKafkaSecurityValidate(t *testing.T) {
	brokers := []string{"k:9093"}
	sasl := func(m, u, p string) *KafkaSASL { return &KafkaSASL{Mechanism: m, Username: u, Password: p} }
	tests := []struct {
		name string
		h    Handler
		want []string
	}{
		{"unknown mechanism", Handler{Brokers: brokers, SASL: sasl("gssapi", "alice", secret)},
			[]string{`sasl.mechanism: unknown value "gssapi" (want one of plain, scram-sha-256, scram-sha-512)`}},
		{"no mechanism", Handler{Brokers: brokers, SASL: sasl("", "alice", secret)},
			[]string{"sasl.mechanism is required (want one of plain, scram-sha-256, scram-sha-512)"}},
		{"no username", Handler{Brokers: brokers, SASL: sasl("plain", "", secret)}, []string{"sasl.username is required"}},
		{"no password", Handler{Brokers: brokers, SASL: sasl("plain", "alice", "")}, []string{"sasl.password is required"}},
		{"empty sasl block", Handler{Brokers: brokers, SASL: &KafkaSASL{}}, []string{
			"sasl.mechanism is required (want one of plain, scram-sha-256, scram-sha-512)",
			"sasl.username is required", "sasl.password is required",
		}},
		{"cert without key", Handler{Brokers: brokers, TLS: &KafkaTLS{CertFile: "c.pem"}},
			[]string{"tls.key_file is required with tls.cert_file"}},
		{"key without cert", Handler{Brokers: brokers, TLS: &KafkaTLS{KeyFile: "k.pem"}},
			[]string{"tls.cert_file is required with tls.key_file"}},
		{"embedded broker", Handler{Brokers: []string{embeddedBrokers}, TLS: &KafkaTLS{}},
			[]string{"tls and sasl apply to real brokers: the embedded broker speaks plaintext only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := validateErrors(tt.h.Validate())
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			for _, msg := range got {
				if strings.Contains(msg, secret) {
					t.Errorf("message %q contains the password", msg)
				}
			}
		})
	}

	ok := []Handler{
		{Brokers: brokers, TLS: &KafkaTLS{}},
		{Brokers: brokers, TLS: &KafkaTLS{CertFile: "c.pem", KeyFile: "k.pem"}},
		{Brokers: brokers, SASL: sasl("SCRAM-SHA-256", "alice", "{env.KAFKA_PASSWORD}")},
	}
	for _, h := range ok {
		if err := h.Validate(); err != nil {
			t.Errorf("%+v: got %v, want no error", h, err)
		}
	}
}

// testPKI is a CA, a broker certificate for 127.0.0.1 signed by it, and a client certificate, written as PEM files.
type testPKI struct {
	caFile, clientCert, clientKey, otherKey string
	server                                  tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wskafka test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, key *ecdsa.PrivateKey, usage x509.ExtKeyUsage) []byte {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	serverKey, clientKey := newKey(), newKey()
	serverDER := issue(2, serverKey, x509.ExtKeyUsageServerAuth)
	return testPKI{
		caFile:     write("ca.pem", "CERTIFICATE", caDER),
		clientCert: write("client.pem", "CERTIFICATE", issue(3, clientKey, x509.ExtKeyUsageClientAuth)),
		clientKey:  write("client.key", "PRIVATE KEY", keyDER(clientKey)),
		otherKey:   write("other.key", "PRIVATE KEY", keyDER(newKey())),
		server:     tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey},
	}
}

// TestKafkaSecurityProvisionErrors protects what only Provision can check: the files exist and hold what they
// should, and placeholders resolve. Each message names the field, and none contains the password.
func TestKafkaSecurityProvisionErrors(t *testing.T) {
	pki := newTestPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	t.Setenv("WSKAFKA_TEST_UNSET", "")
	tests := []struct {
		name string
		tls  *KafkaTLS
		sasl *KafkaSASL
		want string
	}{
		{name: "unreadable ca_file", tls: &KafkaTLS{CAFile: missing}, want: "tls.ca_file: open " + missing},
		{name: "ca_file without a certificate", tls: &KafkaTLS{CAFile: pki.clientKey}, want: "tls.ca_file " + pki.clientKey + ": no PEM certificate found"},
		{name: "unreadable cert_file", tls: &KafkaTLS{CertFile: missing, KeyFile: pki.clientKey}, want: "tls.cert_file: open " + missing},
		{name: "unreadable key_file", tls: &KafkaTLS{CertFile: pki.clientCert, KeyFile: missing}, want: "tls.key_file: open " + missing},
		{name: "key of another certificate", tls: &KafkaTLS{CertFile: pki.clientCert, KeyFile: pki.otherKey}, want: "tls.cert_file and tls.key_file: tls: private key does not match public key"},
		{name: "ca_file placeholder", tls: &KafkaTLS{CAFile: "{env.WSKAFKA_TEST_UNSET}" + missing}, want: "tls.ca_file: open " + missing},
		{name: "password variable unset", sasl: &KafkaSASL{Mechanism: "plain", Username: "alice", Password: "{env.WSKAFKA_TEST_UNSET}"},
			want: "sasl.password: {env.WSKAFKA_TEST_UNSET} resolves to an empty value (is the variable set?)"},
		{name: "username variable unset", sasl: &KafkaSASL{Mechanism: "plain", Username: "{env.WSKAFKA_TEST_UNSET}", Password: secret},
			want: "sasl.username: {env.WSKAFKA_TEST_UNSET} resolves to an empty value (is the variable set?)"},
		{name: "password SCRAM refuses", sasl: &KafkaSASL{Mechanism: "scram-sha-256", Username: "alice", Password: secret + "\u0007"},
			want: "sasl: the username or the password has characters SCRAM does not allow (RFC 4013 SASLprep)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := Handler{Brokers: []string{closedAddr(t)}, TLS: tt.tls, SASL: tt.sasl}
			err := h.Provision(ctx)
			defer h.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the password", err)
			}
			if len(h.poolKeys) != 0 {
				t.Errorf("got pool keys %q after a failed Provision, want none", h.poolKeys)
			}
		})
	}
}

// TestKafkaSecurityPoolKey protects the pool key: it never holds the password in clear, yet a changed password
// (or CA) makes new clients and an unchanged config shares them.
func TestKafkaSecurityPoolKey(t *testing.T) {
	pki := newTestPKI(t)
	addr := closedAddr(t)
	provision := func(password string) string {
		t.Helper()
		t.Setenv("WSKAFKA_TEST_PASSWORD", password)
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		h := &Handler{
			Brokers: []string{addr},
			TLS:     &KafkaTLS{CAFile: pki.caFile},
			SASL:    &KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "alice", Password: "{env.WSKAFKA_TEST_PASSWORD}"},
		}
		if err := h.Provision(ctx); err != nil {
			t.Fatalf("got %v, want no error", err)
		}
		t.Cleanup(func() { h.Cleanup() })
		if got := h.SASL.bridge().Password; got != password {
			t.Fatalf("got the password resolved to %q, want the variable's value", got)
		}
		return h.poolKeys[len(h.poolKeys)-1]
	}
	first, same, other := provision(secret), provision(secret), provision(secret+"2")
	for _, key := range []string{first, other} {
		if strings.Contains(key, secret) {
			t.Errorf("pool key %s contains the password", key)
		}
		var decoded struct {
			TLS  map[string]any `json:"tls"`
			SASL map[string]any `json:"sasl"`
		}
		if err := json.Unmarshal([]byte(key), &decoded); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"mechanism": true, "username": true, "password_digest": true}
		for k := range decoded.SASL {
			if !want[k] {
				t.Errorf("pool key's sasl has %q, want only %v", k, want)
			}
		}
		if decoded.SASL["mechanism"] != "scram-sha-256" || decoded.TLS["pem_digest"] == "" {
			t.Errorf("pool key %s: want the mechanism lower-cased and a digest of the CA", key)
		}
	}
	if first != same {
		t.Errorf("got pool keys %s and %s for the same settings, want one", first, same)
	}
	if first == other {
		t.Errorf("got the same pool key for different passwords, want different clients")
	}
}

// TestSASLConfigNeverPrintsPassword protects the other ways a config reaches a log: fmt and JSON.
func TestSASLConfigNeverPrintsPassword(t *testing.T) {
	cfg := kafkago.Config{Brokers: []string{"k:9093"}, SASL: &kafkago.SASLConfig{Mechanism: "plain", Username: "alice", Password: secret}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{string(b), fmt.Sprintf("%v %+v %#v %s", *cfg.SASL, *cfg.SASL, *cfg.SASL, cfg.SASL)} {
		if strings.Contains(out, secret) {
			t.Errorf("got %s, want no password", out)
		}
		if !strings.Contains(out, "alice") {
			t.Errorf("got %s, want the username", out)
		}
	}
}

// TestSASLOverTLSInProcess runs the conversation through the in-process broker with TLS and each SASL mechanism,
// the password given as {env.*}, and checks that a wrong password is answered s:1 at once, with the password in
// neither the reply nor the log. (kfake refuses credentials by closing the connection, which kafka-go reports as
// an EOF; the e2e suite checks the "authentication failed" wording against Apache Kafka, which answers with error
// 58 and a reason.)
func TestSASLOverTLSInProcess(t *testing.T) {
	pki := newTestPKI(t)
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.EnableSASL(), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}})}
	for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		opts = append(opts, kfake.Superuser(m, "alice", secret))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()

	for _, mechanism := range kafkago.SASLMechanisms {
		t.Run(mechanism, func(t *testing.T) {
			t.Setenv("WSKAFKA_TEST_PASSWORD", secret)
			srv, logPath := startSecuredServer(t, cluster.ListenAddrs(), pki.caFile, mechanism)
			c := dial(t, srv.url)
			topic := topicName(t)
			if r := c.request(`{"id":1,"t":"topic","a":"create","p":["`+topic+`"]}`, "1"); *r.S != 0 {
				t.Fatalf("create: got s %d p %s, want s 0", *r.S, r.P)
			}
			if r := c.request(`{"id":2,"t":"topic","a":"subscribe","p":{"t":["`+topic+`"],"consumer_group":"`+topic+`"}}`, "2"); *r.S != 0 {
				t.Fatalf("subscribe: got s %d p %s, want s 0", *r.S, r.P)
			}
			c.send(`{"id":3,"t":"notif","p":{"t":"` + topic + `","m":"over sasl"}}`)
			if got := c.receive(1); !slices.Equal(got, []string{"over sasl"}) {
				t.Fatalf("received %q, want %q", got, []string{"over sasl"})
			}
			assertLogHidesSecret(t, logPath)
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("WSKAFKA_TEST_PASSWORD", secret+"-wrong")
		srv, logPath := startSecuredServer(t, cluster.ListenAddrs(), pki.caFile, "scram-sha-256")
		c := dial(t, srv.url)
		r := c.request(`{"id":1,"t":"topic","a":"list"}`, "1")
		if *r.S != 1 || r.errorCode() != "kafka_error" {
			t.Fatalf("list: got s %d p %s, want s 1 with code kafka_error", *r.S, r.P)
		}
		if strings.Contains(string(r.P), secret) {
			t.Errorf("list: got p %s, want no password in it", r.P)
		}
		caddy.Stop() // flushes the log
		assertLogHidesSecret(t, logPath)
	})
}

// startSecuredServer loads a Caddy config whose handler reaches brokers over TLS with SASL, the password from
// WSKAFKA_TEST_PASSWORD, and logs at INFO to a file whose path it returns.
func startSecuredServer(t *testing.T, brokers []string, caFile, mechanism string) (server, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	addr := freeAddr(t)
	handler := map[string]any{
		"handler": "wskafka", "brokers": brokers, "request_timeout": "10s",
		"tls":  map[string]any{"ca_file": caFile},
		"sasl": map[string]any{"mechanism": mechanism, "username": "alice", "password": "{env.WSKAFKA_TEST_PASSWORD}"},
	}
	loadConfig(t, map[string]any{
		"admin": map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
			"level": "INFO", "writer": map[string]any{"output": "file", "filename": logPath},
		}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"test": map[string]any{
			"listen": []string{addr}, "routes": []any{map[string]any{"handle": []any{handler}}},
		}}}},
	})
	t.Cleanup(func() { caddy.Stop() })
	return server{url: "ws://" + addr + "/"}, logPath
}

// assertLogHidesSecret returns the log and fails the test if the password is in it.
func assertLogHidesSecret(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) {
		t.Errorf("log %s contains the password", path)
	}
	return string(b)
}
