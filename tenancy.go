package wskafka

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/wskafka/wskafka/bridge"
	"github.com/wskafka/wskafka/protocol"
)

// The settings that serve many tenants from one route (Handler.Namespace, CredentialExpiry, MaxConnectionAge):
// each connection's namespace and the moment it must close, resolved from the request when it upgrades.

// refusal is why connectionTerms refuses an upgrade; reason is the label of connections_refused_total.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }

func refuse(reason string, format string, args ...any) *refusal {
	return &refusal{reason: reason, err: fmt.Errorf(format, args...)}
}

// connectionTerms resolves, for one upgrade, the namespace of its names and the moment the socket must close
// (its credential's expiry or its largest age, whichever comes first; zero for never), and sets them on client.
// A namespace or an expiry that the route sets and that does not resolve refuses the connection rather than
// serving it without: a placeholder that resolved to nothing (the authentication handler set no tenant) must not
// mean "every topic".
func (h *Handler) connectionTerms(repl *caddy.Replacer, now time.Time, client *bridge.Client) *refusal {
	if h.Namespace != "" {
		prefix, err := repl.ReplaceOrErr(h.Namespace, true, true)
		if err != nil {
			return refuse("namespace", "namespace %s: %w", h.Namespace, err)
		}
		if client.Namespace, err = protocol.NewNamespace(prefix); err != nil {
			return refuse("namespace", "namespace %s: %w", h.Namespace, err)
		}
	}
	var closeAt time.Time
	if h.CredentialExpiry != "" {
		value, err := repl.ReplaceOrErr(h.CredentialExpiry, true, true)
		if err != nil {
			return refuse("credential_unreadable", "credential_expiry %s: %w", h.CredentialExpiry, err)
		}
		if closeAt, err = parseExpiry(value); err != nil {
			return refuse("credential_unreadable", "credential_expiry %s: %w", h.CredentialExpiry, err)
		}
		if !closeAt.After(now) {
			return refuse("credential_expired", "the credential expired at %s", closeAt.UTC().Format(time.RFC3339))
		}
	}
	if age := time.Duration(h.MaxConnectionAge); age > 0 {
		// Up to the jitter earlier than the age, never later: the age is a bound the operator relies on, and
		// sockets opened together then close spread out.
		at := now.Add(age)
		if jitter := time.Duration(durationOr0(h.MaxConnectionAgeJitter)); jitter > 0 {
			at = at.Add(-rand.N(jitter))
		}
		if closeAt.IsZero() || at.Before(closeAt) {
			closeAt, client.ClosesAtAge = at, true
		}
	}
	client.CloseAt = closeAt
	return nil
}

// parseExpiry reads when a credential expires: Unix seconds (a JWT's "exp", RFC 7519 §4.1.4, fractions allowed)
// or an RFC 3339 time.
func parseExpiry(value string) (time.Time, error) {
	value = strings.TrimSpace(value)
	if secs, err := strconv.ParseFloat(value, 64); err == nil {
		// Written to refuse NaN too; 2^40 s is some 35,000 years.
		if !(secs > 0 && secs <= 1<<40) {
			return time.Time{}, fmt.Errorf("%q is not a time in Unix seconds", value)
		}
		return time.UnixMilli(int64(secs * 1000)), nil
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither Unix seconds nor an RFC 3339 time", value)
	}
	return t, nil
}

// validateTenancy checks the tenancy settings; placeholders are left as they are, since they resolve per
// connection.
func (h *Handler) validateTenancy() []error {
	var errs []error
	if h.MaxConnectionAge < 0 {
		errs = append(errs, errors.New("max_connection_age must not be negative"))
	}
	if j := durationOr0(h.MaxConnectionAgeJitter); j < 0 {
		errs = append(errs, errors.New("max_connection_age_jitter must not be negative"))
	} else if h.MaxConnectionAge > 0 && j >= h.MaxConnectionAge {
		errs = append(errs, errors.New("max_connection_age_jitter must be shorter than max_connection_age"))
	}
	if h.MaxConnectionAge == 0 && h.MaxConnectionAgeJitter != nil && *h.MaxConnectionAgeJitter > 0 {
		errs = append(errs, errors.New("max_connection_age_jitter needs max_connection_age"))
	}
	return errs
}

// applyTenancyDefaults spreads the closing of sockets of the same age over a tenth of it unless told otherwise.
func (h *Handler) applyTenancyDefaults() {
	if h.MaxConnectionAge > 0 && h.MaxConnectionAgeJitter == nil {
		h.MaxConnectionAgeJitter = durationPtr(time.Duration(h.MaxConnectionAge) / 10)
	}
}

// unmarshalMaxConnectionAge reads `max_connection_age <age> [<jitter>]`.
func (h *Handler) unmarshalMaxConnectionAge(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return d.ArgErr()
	}
	age, err := caddy.ParseDuration(args[0])
	if err != nil {
		return d.Errf("max_connection_age: %q is not a duration: %v", args[0], err)
	}
	h.MaxConnectionAge = caddy.Duration(age)
	if len(args) == 2 {
		jitter, err := caddy.ParseDuration(args[1])
		if err != nil {
			return d.Errf("max_connection_age: jitter %q is not a duration: %v", args[1], err)
		}
		h.MaxConnectionAgeJitter = durationPtr(jitter)
	}
	return nil
}

// refuseTerms answers an upgrade whose namespace or credential expiry did not resolve, or whose credential has
// expired: 401 (or, to a client offering the wskafka subprotocol, an upgrade closed at once with
// CloseCredentialExpired, which a browser can read), and 403 for a namespace, which a new credential would not
// mend unless the authentication handler sets what it needs.
func (h *Handler) refuseTerms(w http.ResponseWriter, r *http.Request, why *refusal) error {
	bridge.CountRefused(why.reason)
	h.logger.Info("connection refused", zap.String("remote", r.RemoteAddr), zap.String("reason", why.reason), zap.Error(why.err))
	if why.reason == "namespace" {
		return caddyhttp.Error(http.StatusForbidden, why)
	}
	if slices.Contains(websocket.Subprotocols(r), subprotocol) {
		return h.refuseInBand(w, r, bridge.CloseCredentialExpired, why.reason)
	}
	return caddyhttp.Error(http.StatusUnauthorized, why)
}
