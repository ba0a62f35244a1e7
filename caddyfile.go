package wskafka

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("wskafka", parseCaddyfile)
	// After encode and the auth handlers, before handle/route blocks that would otherwise take the request first;
	// it then works at site level and inside route and handle alike.
	httpcaddyfile.RegisterDirectiveOrder("wskafka", httpcaddyfile.After, "encode")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax (every setting optional; defaults in the
// README and on the JSON fields):
//
//	wskafka [<matcher>] {
//	    brokers <host:port[,host:port]...> | embedded
//	    client_id <id>
//	    connect_timeout <duration>
//	    request_timeout <duration>
//	    write_timeout <duration>
//	    close_timeout <duration>
//	    close_delay <duration>
//	    tls {
//	        ca_file <path>
//	        cert_file <path>
//	        key_file <path>
//	        server_name <name>
//	        insecure_skip_verify
//	    }
//	    sasl {
//	        mechanism plain|scram-sha-256|scram-sha-512
//	        username <name>
//	        password <secret>|{env.VAR}
//	    }
//	    identity <placeholder>
//	    namespace <prefix with placeholders>
//	    credential_expiry <placeholder>
//	    max_connection_age <duration> [<jitter>]
//	    topic_metrics
//	    origins <scheme://host[:port] pattern...>
//	    permissions {
//	        publish   <topic pattern...>
//	        subscribe <topic pattern...>
//	        groups    <group pattern...>
//	        create    <topic pattern...>
//	        list      <topic pattern...>
//	        describe  <topic pattern...>
//	        delete    <topic pattern...>
//	        health    all|own
//	    }
//	    limits {
//	        max_frame_bytes <n>
//	        max_connections <n>
//	        max_connections_per_client <n>
//	        publish_rate <messages per second> [<burst>]
//	        publish_bytes_rate <bytes per second>
//	        max_topics <n>
//	        max_queue_bytes <n>
//	        max_buffer_bytes <n>
//	        ping_interval <duration>|off
//	        pong_timeout <duration>
//	    }
//	    topics {
//	        partitions <n>|-1
//	        replication <n>|-1
//	        allow_delete
//	    }
//	    producer {
//	        mq_limit <n>
//	        mq_interval <duration>
//	        required_acks none|one|all
//	        ack_timeout <duration>
//	        partitioner murmur2|crc32|fnv1a|round_robin|least_bytes
//	        compression none|gzip|snappy|lz4|zstd
//	        max_attempts <n>
//	        max_message_bytes <n>
//	        receipts
//	    }
//	    consumer {
//	        group_id <group>
//	        from_offset latest|earliest
//	        out_of_range earliest|latest
//	        mq_limit <n>
//	        mq_interval <duration>
//	        session_timeout <duration>
//	        heartbeat_interval <duration>
//	        rebalance_timeout <duration>
//	        commit_interval <duration>
//	        max_unacked <n>
//	        fetch_min_bytes <n>
//	        fetch_max_bytes <n>
//	        fetch_max_wait <duration>
//	        group_balancers round_robin|range...
//	    }
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "brokers":
			// Commas separate too, so that one environment variable can carry a list: {$KAFKA_BROKERS}.
			for _, arg := range d.RemainingArgs() {
				for _, b := range strings.Split(arg, ",") {
					if b != "" {
						h.Brokers = append(h.Brokers, b)
					}
				}
			}
			if len(h.Brokers) == 0 {
				return d.ArgErr()
			}
		case "client_id":
			err = stringArg(d, &h.ClientID)
		case "connect_timeout":
			err = durationArg(d, &h.ConnectTimeout)
		case "request_timeout":
			err = durationArg(d, &h.RequestTimeout)
		case "write_timeout":
			err = durationArg(d, &h.WriteTimeout)
		case "close_timeout":
			err = durationArg(d, &h.CloseTimeout)
		case "close_delay":
			h.CloseDelay = new(caddy.Duration)
			err = durationArg(d, h.CloseDelay)
		case "tls":
			err = unmarshalKafkaTLS(d, &h.TLS)
		case "sasl":
			err = unmarshalKafkaSASL(d, &h.SASL)
		case "identity":
			err = stringArg(d, &h.Identity)
		case "namespace":
			err = stringArg(d, &h.Namespace)
		case "credential_expiry":
			err = stringArg(d, &h.CredentialExpiry)
		case "max_connection_age":
			err = h.unmarshalMaxConnectionAge(d)
		case "topic_metrics":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.TopicMetrics = true
		case "origins":
			h.Origins = append(h.Origins, d.RemainingArgs()...)
			if len(h.Origins) == 0 {
				return d.ArgErr()
			}
		case "permissions":
			if h.Permissions == nil {
				h.Permissions = new(Permissions)
			}
			err = h.Permissions.unmarshalCaddyfile(d)
		case "limits":
			if h.Limits == nil {
				h.Limits = new(Limits)
			}
			err = h.Limits.unmarshalCaddyfile(d)
		case "topics":
			if h.Topics == nil {
				h.Topics = new(TopicOptions)
			}
			err = h.Topics.unmarshalCaddyfile(d)
		case "producer":
			if h.Producer == nil {
				h.Producer = new(ProducerOptions)
			}
			err = h.Producer.unmarshalCaddyfile(d)
		case "consumer":
			if h.Consumer == nil {
				h.Consumer = new(ConsumerOptions)
			}
			err = h.Consumer.unmarshalCaddyfile(d)
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *TopicOptions) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "partitions":
			err = intArg(d, &t.Partitions)
		case "replication":
			err = intArg(d, &t.Replication)
		case "allow_delete":
			if d.NextArg() {
				return d.ArgErr()
			}
			t.AllowDelete = true
		default:
			return d.Errf("unrecognized topics subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *ProducerOptions) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "mq_limit":
			err = intArg(d, &p.MQLimit)
		case "mq_interval":
			p.MQInterval = new(caddy.Duration)
			err = durationArg(d, p.MQInterval)
		case "required_acks":
			err = stringArg(d, &p.RequiredAcks)
		case "ack_timeout":
			err = durationArg(d, &p.AckTimeout)
		case "partitioner":
			err = stringArg(d, &p.Partitioner)
		case "compression":
			err = stringArg(d, &p.Compression)
		case "max_attempts":
			err = intArg(d, &p.MaxAttempts)
		case "max_message_bytes":
			err = intArg(d, &p.MaxMessageBytes)
		case "receipts":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.Receipts = true
		default:
			return d.Errf("unrecognized producer subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *ConsumerOptions) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "group_id":
			err = stringArg(d, &c.GroupID)
		case "from_offset":
			err = stringArg(d, &c.FromOffset)
		case "out_of_range":
			err = stringArg(d, &c.OutOfRange)
		case "mq_limit":
			err = intArg(d, &c.MQLimit)
		case "mq_interval":
			c.MQInterval = new(caddy.Duration)
			err = durationArg(d, c.MQInterval)
		case "session_timeout":
			err = durationArg(d, &c.SessionTimeout)
		case "heartbeat_interval":
			err = durationArg(d, &c.HeartbeatInterval)
		case "rebalance_timeout":
			err = durationArg(d, &c.RebalanceTimeout)
		case "commit_interval":
			c.CommitInterval = new(caddy.Duration)
			err = durationArg(d, c.CommitInterval)
		case "max_unacked":
			err = intArg(d, &c.MaxUnacked)
		case "fetch_min_bytes":
			err = intArg(d, &c.FetchMinBytes)
		case "fetch_max_bytes":
			err = intArg(d, &c.FetchMaxBytes)
		case "fetch_max_wait":
			err = durationArg(d, &c.FetchMaxWait)
		case "group_balancers":
			c.GroupBalancers = d.RemainingArgs()
			if len(c.GroupBalancers) == 0 {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized consumer subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// stringArg, intArg and durationArg read a subdirective's single argument.
func stringArg(d *caddyfile.Dispenser, field *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*field = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, field *int) error {
	name := d.Val()
	var s string
	if err := stringArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("%s: %q is not a whole number", name, s)
	}
	*field = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, field *caddy.Duration) error {
	name := d.Val()
	var s string
	if err := stringArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %q is not a duration: %v", name, s, err)
	}
	*field = caddy.Duration(dur)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
