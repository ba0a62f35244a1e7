package wskafka

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/wskafka/wskafka/kafkago"
)

// KafkaTLS makes the bridge's Kafka connections (producer, consumers, admin) use TLS. Every field may hold
// placeholders such as {env.KAFKA_CA}, resolved when the config loads.
type KafkaTLS struct {
	// CAFile is a PEM file of the certificates a broker's certificate must chain to. Default: the system's
	// certificate pool.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile is a PEM client certificate (chain), for brokers that authenticate clients by certificate; it
	// needs KeyFile. Default: none.
	CertFile string `json:"cert_file,omitempty"`
	// KeyFile is the PEM private key of CertFile. Default: none.
	KeyFile string `json:"key_file,omitempty"`
	// ServerName is the name a broker's certificate must carry. Default: the host of the broker's address.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any certificate a broker presents, which leaves the connection open to
	// interception; the log warns about it. Default: false.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`

	resolved kafkago.TLSConfig // the files read, by provision
}

// KafkaSASL authenticates the bridge's Kafka connections. Username and password may hold placeholders such as
// {env.KAFKA_PASSWORD} (resolved when the config loads, so the secret stays out of the config); the password is
// never logged.
type KafkaSASL struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512 (case does not matter). Default: none; required.
	Mechanism string `json:"mechanism,omitempty"`
	// Username is the SASL user. Default: none; required.
	Username string `json:"username,omitempty"`
	// Password is the user's password, best given as a placeholder: {env.VAR} or {file./path}. Default: none;
	// required.
	Password string `json:"password,omitempty"`

	resolved kafkago.SASLConfig // placeholders replaced, by provision
}

// unmarshalKafkaTLS parses
//
//	tls {
//	    ca_file <path>
//	    cert_file <path>
//	    key_file <path>
//	    server_name <name>
//	    insecure_skip_verify
//	}
//
// where the block is optional: a bare tls uses TLS with the system's certificate pool.
func unmarshalKafkaTLS(d *caddyfile.Dispenser, field **KafkaTLS) error {
	if *field == nil {
		*field = new(KafkaTLS)
	}
	t := *field
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ca_file":
			err = stringArg(d, &t.CAFile)
		case "cert_file":
			err = stringArg(d, &t.CertFile)
		case "key_file":
			err = stringArg(d, &t.KeyFile)
		case "server_name":
			err = stringArg(d, &t.ServerName)
		case "insecure_skip_verify":
			if d.NextArg() {
				return d.ArgErr()
			}
			t.InsecureSkipVerify = true
		default:
			return d.Errf("unrecognized tls subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalKafkaSASL parses
//
//	sasl {
//	    mechanism plain|scram-sha-256|scram-sha-512
//	    username <name>
//	    password <secret>|{env.VAR}
//	}
func unmarshalKafkaSASL(d *caddyfile.Dispenser, field **KafkaSASL) error {
	if *field == nil {
		*field = new(KafkaSASL)
	}
	s := *field
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "mechanism":
			err = stringArg(d, &s.Mechanism)
		case "username":
			err = stringArg(d, &s.Username)
		case "password":
			err = stringArg(d, &s.Password)
		default:
			return d.Errf("unrecognized sasl subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// validateKafkaSecurity checks the tls and sasl settings as written; provisionKafkaSecurity checks what they
// resolve to.
func (h *Handler) validateKafkaSecurity() []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if (h.TLS != nil || h.SASL != nil) && isEmbedded(h.Brokers) {
		fail("tls and sasl apply to real brokers: the embedded broker speaks plaintext only")
	}
	if t := h.TLS; t != nil {
		if t.CertFile != "" && t.KeyFile == "" {
			fail("tls.key_file is required with tls.cert_file")
		}
		if t.KeyFile != "" && t.CertFile == "" {
			fail("tls.cert_file is required with tls.key_file")
		}
	}
	if s := h.SASL; s != nil {
		switch m := strings.ToLower(s.Mechanism); {
		case m == "":
			fail("sasl.mechanism is required (want one of %s)", strings.Join(kafkago.SASLMechanisms, ", "))
		case !slices.Contains(kafkago.SASLMechanisms, m):
			fail("sasl.mechanism: unknown value %q (want one of %s)", s.Mechanism, strings.Join(kafkago.SASLMechanisms, ", "))
		}
		if s.Username == "" {
			fail("sasl.username is required")
		}
		if s.Password == "" {
			fail("sasl.password is required")
		}
	}
	return errs
}

// provisionKafkaSecurity resolves the placeholders of the tls and sasl settings and reads the TLS files, so that
// a missing file or an unset variable fails the config load rather than the first connection.
func (h *Handler) provisionKafkaSecurity() error {
	repl := caddy.NewReplacer()
	// ReplaceKnown, not ReplaceAll: both resolve the global {env.*} and {file.*} placeholders, but ReplaceAll also
	// blanks unknown ones, which would change a literal password that has braces in it.
	resolve := func(s string) string { return repl.ReplaceKnown(s, "") }
	if t := h.TLS; t != nil {
		t.resolved = kafkago.TLSConfig{ServerName: resolve(t.ServerName), InsecureSkipVerify: t.InsecureSkipVerify}
		for _, f := range []struct {
			name string
			path string
			pem  *[]byte
		}{
			{"tls.ca_file", t.CAFile, &t.resolved.CA},
			{"tls.cert_file", t.CertFile, &t.resolved.Cert},
			{"tls.key_file", t.KeyFile, &t.resolved.Key},
		} {
			if f.path == "" {
				continue
			}
			pem, err := os.ReadFile(resolve(f.path))
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			*f.pem = pem
		}
		if _, err := (kafkago.TLSConfig{CA: t.resolved.CA}).Build(); err != nil {
			return fmt.Errorf("tls.ca_file %s: %w", resolve(t.CAFile), err)
		}
		if _, err := (kafkago.TLSConfig{Cert: t.resolved.Cert, Key: t.resolved.Key}).Build(); err != nil {
			return fmt.Errorf("tls.cert_file and tls.key_file: %w", err)
		}
		if t.InsecureSkipVerify {
			h.logger.Warn("tls.insecure_skip_verify is set: the brokers' certificates are not checked, so anyone on the path can read and change the Kafka traffic, credentials included")
		}
	}
	if s := h.SASL; s != nil {
		s.resolved = kafkago.SASLConfig{
			Mechanism: strings.ToLower(s.Mechanism),
			Username:  resolve(s.Username),
			Password:  resolve(s.Password),
		}
		// A value that resolves to nothing was placeholders only, so naming it gives no secret away.
		if s.resolved.Username == "" {
			return fmt.Errorf("sasl.username: %s resolves to an empty value (is the variable set?)", s.Username)
		}
		if s.resolved.Password == "" {
			return fmt.Errorf("sasl.password: %s resolves to an empty value (is the variable set?)", s.Password)
		}
		if _, err := s.resolved.Build(); err != nil {
			return fmt.Errorf("sasl: %w", err)
		}
	}
	if h.TLS != nil || h.SASL != nil {
		fields := []zap.Field{zap.Bool("tls", h.TLS != nil)}
		if h.SASL != nil {
			fields = append(fields, zap.String("sasl_mechanism", h.SASL.resolved.Mechanism), zap.String("sasl_username", h.SASL.resolved.Username))
		}
		h.logger.Info("kafka connections secured", fields...)
	}
	return nil
}

// bridge returns the settings provision resolved, for the bridge's KafkaConfig; nil without a tls block.
func (t *KafkaTLS) bridge() *kafkago.TLSConfig {
	if t == nil {
		return nil
	}
	c := t.resolved
	return &c
}

// bridge returns the settings provision resolved, for the bridge's KafkaConfig; nil without a sasl block.
func (s *KafkaSASL) bridge() *kafkago.SASLConfig {
	if s == nil {
		return nil
	}
	c := s.resolved
	return &c
}
