package kafkago

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"go.uber.org/zap"
)

// SASLMechanisms are the SASL mechanisms the Kafka clients can authenticate with, in the order the docs list them.
var SASLMechanisms = []string{"plain", "scram-sha-256", "scram-sha-512"}

// TLSConfig is how the Kafka clients use TLS to reach the brokers. It holds the PEM contents rather than file
// names, so that a reload after a certificate renewal builds new clients; the contents are left out of the JSON
// encoding (the pool key), which carries a digest of them instead.
type TLSConfig struct {
	// CA holds the PEM certificates a broker's certificate must chain to; empty: the system's pool.
	CA []byte `json:"-"`
	// Cert and Key are a PEM client certificate (chain) and its private key, for brokers that ask for one.
	Cert []byte `json:"-"`
	Key  []byte `json:"-"`
	// ServerName is the name a broker's certificate must have; empty: the host of the broker's address.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any certificate a broker presents.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// MarshalJSON encodes the settings with a keyed digest in place of the PEM contents.
func (c TLSConfig) MarshalJSON() ([]byte, error) {
	type fields TLSConfig // without this method
	return json.Marshal(struct {
		fields
		Digest string `json:"pem_digest"`
	}{fields(c), digest(c.CA, c.Cert, c.Key)})
}

// Build returns the crypto/tls config the settings describe. Its errors never quote the PEM contents.
func (c TLSConfig) Build() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	if len(c.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CA) {
			return nil, errors.New("no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	if len(c.Cert) > 0 || len(c.Key) > 0 {
		pair, err := tls.X509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// SASLConfig is how the Kafka clients authenticate to the brokers. The password is left out of every encoding:
// JSON (the pool key) carries a keyed digest of it, and fmt prints only the mechanism and the username.
type SASLConfig struct {
	Mechanism string `json:"mechanism"` // one of SASLMechanisms
	Username  string `json:"username"`
	Password  string `json:"-"`
}

// MarshalJSON encodes the settings with a keyed digest in place of the password.
func (c SASLConfig) MarshalJSON() ([]byte, error) {
	type fields SASLConfig // without this method
	return json.Marshal(struct {
		fields
		Digest string `json:"password_digest"`
	}{fields(c), digest([]byte(c.Password))})
}

// String describes the settings without the password.
func (c SASLConfig) String() string { return c.Mechanism + " as " + c.Username }

// GoString is String for %#v.
func (c SASLConfig) GoString() string { return "kafkago.SASLConfig{" + c.String() + "}" }

// Build returns the kafka-go mechanism the settings describe. Its errors never quote the credentials: the SCRAM
// client's own errors do (xdg-go/scram quotes the input SASLprep refused), so they are not wrapped.
func (c SASLConfig) Build() (sasl.Mechanism, error) {
	var algo scram.Algorithm
	switch c.Mechanism {
	case "plain":
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case "scram-sha-256":
		algo = scram.SHA256
	case "scram-sha-512":
		algo = scram.SHA512
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q (want one of %s)", c.Mechanism, strings.Join(SASLMechanisms, ", "))
	}
	m, err := scram.Mechanism(algo, c.Username, c.Password)
	if err != nil {
		return nil, errors.New("the username or the password has characters SCRAM does not allow (RFC 4013 SASLprep)")
	}
	return m, nil
}

// digestKey keys the digests of secrets in pool keys. Pool keys live only as long as the process, so a key of
// its own makes the digests useless anywhere else, and a guessed password cannot be checked against one.
var digestKey = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails (it crashes the program instead)
	return b
}()

// digest returns a keyed digest of parts, each length-prefixed so that different splits differ; "" when all are
// empty.
func digest(parts ...[]byte) string {
	mac := hmac.New(sha256.New, digestKey)
	total := 0
	for _, p := range parts {
		mac.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		mac.Write(p)
		total += len(p)
	}
	if total == 0 {
		return ""
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// authLogInterval spaces the log lines about failed authentications: every client request fails the same way
// until the settings are fixed.
const authLogInterval = 10 * time.Second

// security is what every Kafka client of a Client uses to reach the brokers: TLS, a SASL mechanism, both or
// neither.
type security struct {
	tls     *tls.Config
	sasl    sasl.Mechanism
	cfg     *SASLConfig
	logger  *zap.Logger
	nextLog atomic.Int64 // unix nanoseconds before which a failed authentication is not logged again
}

func newSecurity(cfg Config, logger *zap.Logger) (*security, error) {
	s := &security{cfg: cfg.SASL, logger: logger}
	var err error
	if cfg.TLS != nil {
		if s.tls, err = cfg.TLS.Build(); err != nil {
			return nil, fmt.Errorf("kafka tls: %w", err)
		}
	}
	if cfg.SASL != nil {
		if s.sasl, err = cfg.SASL.Build(); err != nil {
			return nil, fmt.Errorf("kafka sasl: %w", err)
		}
	}
	return s, nil
}

// newTransport returns a Transport (the Writer's, an admin Client's, a fetcher's, a group member's) with the
// cluster's TLS and SASL settings.
func (k *Client) newTransport() *transport {
	return &transport{
		Transport: &kafka.Transport{
			ClientID:    k.cfg.ClientID,
			DialTimeout: k.cfg.ConnectTimeout,
			TLS:         k.security.tls,
			SASL:        k.security.sasl,
		},
		security: k.security,
	}
}

// transport is a kafka-go Transport that reports why the cluster could not be reached, and logs failed
// authentications: kafka-go reports them only to the caller, which turns them into error replies, so the operator
// would not otherwise see that the settings are wrong.
type transport struct {
	*kafka.Transport
	security *security
}

// RoundTrip implements kafka.RoundTripper.
func (t *transport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	res, err := t.Transport.RoundTrip(ctx, addr, req)
	if errors.Is(err, kafka.BrokerNotAvailable) {
		// A request for the controller or a given broker (CreateTopics, DeleteTopics, Produce) is routed by the
		// cluster layout kafka-go discovers with a metadata request; when that discovery failed (refused
		// credentials, an untrusted certificate), kafka-go answers BrokerNotAvailable and keeps the cause, which a
		// metadata request returns from its cache without a round trip.
		if _, cause := t.Transport.RoundTrip(ctx, addr, new(metadata.Request)); cause != nil {
			err = cause
		}
	}
	if err != nil {
		t.security.authFailed(err)
	}
	return res, err
}

// authFailed logs err, at most once per authLogInterval, when it says a broker refused the credentials. The
// broker's message names the mechanism and the reason, never the password.
func (s *security) authFailed(err error) {
	if !errors.Is(err, kafka.SASLAuthenticationFailed) {
		return
	}
	now := time.Now().UnixNano()
	next := s.nextLog.Load()
	if now < next || !s.nextLog.CompareAndSwap(next, now+int64(authLogInterval)) {
		return
	}
	fields := []zap.Field{zap.Error(err)}
	if s.cfg != nil {
		fields = append(fields, zap.String("mechanism", s.cfg.Mechanism), zap.String("username", s.cfg.Username))
	}
	s.logger.Error("kafka authentication failed: check the sasl settings", fields...)
}

// Interface guards
var (
	_ kafka.RoundTripper = (*transport)(nil)
	_ json.Marshaler     = TLSConfig{}
	_ json.Marshaler     = SASLConfig{}
	_ fmt.Stringer       = SASLConfig{}
	_ fmt.GoStringer     = SASLConfig{}
)
