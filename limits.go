package wskafka

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/wskafka/wskafka/bridge"
)

// Defaults of the limits: what a public site can live with. README's Security section derives the memory bound
// per connection from them.
const (
	defaultMaxFrameBytes           = 1 << 20
	defaultMaxConnections          = 10000
	defaultMaxConnectionsPerClient = 100
	defaultPublishRate             = 1000
	defaultPublishBurst            = 2000
	defaultPublishBytesRate        = 1 << 20
	defaultMaxTopics               = 100
	defaultMaxQueueBytes           = 1 << 20
	defaultMaxBufferBytes          = 4 << 20
	defaultPingInterval            = 30 * time.Second
	defaultPongTimeout             = 10 * time.Second
)

// Limits bound what one client can make the server hold or do. A value of -1 lifts a bound (0 takes the
// default); ping_interval off (-1 in JSON) disables keepalive.
type Limits struct {
	// MaxFrameBytes is the largest frame a client may send; a larger one closes its socket with 1009 (message
	// too big). Default: 1048576.
	MaxFrameBytes int `json:"max_frame_bytes,omitempty"`
	// MaxConnections bounds the open sockets of the route; past it the upgrade is refused with 503.
	// Default: 10000.
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxConnectionsPerClient bounds the open sockets of one identity, or of one IP address for connections
	// without an identity; past it the upgrade is refused with 429. Default: 100.
	MaxConnectionsPerClient int `json:"max_connections_per_client,omitempty"`
	// PublishRate bounds one socket's publishes per second, with bursts of PublishBurst; a publish over it is
	// answered s:1 with code rate_limited and not sent. Default: 1000 (burst 2000).
	PublishRate  float64 `json:"publish_rate,omitempty"`
	PublishBurst int     `json:"publish_burst,omitempty"`
	// PublishBytesRate bounds one socket's published bytes (keys and values) per second. Default: 1048576.
	PublishBytesRate int `json:"publish_bytes_rate,omitempty"`
	// MaxTopics bounds the topics one request names. Default: 100.
	MaxTopics int `json:"max_topics,omitempty"`
	// MaxQueueBytes bounds, per socket, the frames waiting to be written and the records fetched for its
	// subscription; while it is full the subscription stops fetching from Kafka. Default: 1048576.
	MaxQueueBytes int `json:"max_queue_bytes,omitempty"`
	// MaxBufferBytes bounds, per socket, the publishes buffered before a flush (producer.mq_limit bounds their
	// number); while it is full the socket is not read. Default: 4194304.
	MaxBufferBytes int `json:"max_buffer_bytes,omitempty"`
	// PingInterval is how often a quiet socket is pinged. Default: 30s.
	PingInterval caddy.Duration `json:"ping_interval,omitempty"`
	// PongTimeout is how long past PingInterval a socket may stay silent (no frame, no pong) before it is
	// closed as dead. Default: 10s.
	PongTimeout caddy.Duration `json:"pong_timeout,omitempty"`
}

func (l *Limits) applyDefaults() {
	setDefault(&l.MaxFrameBytes, defaultMaxFrameBytes)
	setDefault(&l.MaxConnections, defaultMaxConnections)
	setDefault(&l.MaxConnectionsPerClient, defaultMaxConnectionsPerClient)
	setDefault(&l.PublishRate, defaultPublishRate)
	setDefault(&l.PublishBurst, defaultPublishBurst)
	setDefault(&l.PublishBytesRate, defaultPublishBytesRate)
	setDefault(&l.MaxTopics, defaultMaxTopics)
	setDefault(&l.MaxQueueBytes, defaultMaxQueueBytes)
	setDefault(&l.MaxBufferBytes, defaultMaxBufferBytes)
	setDefault(&l.PingInterval, caddy.Duration(defaultPingInterval))
	setDefault(&l.PongTimeout, caddy.Duration(defaultPongTimeout))
}

func (l *Limits) validate() []error {
	var errs []error
	for _, f := range []struct {
		name  string
		value float64
	}{
		{"max_frame_bytes", float64(l.MaxFrameBytes)}, {"max_connections", float64(l.MaxConnections)},
		{"max_connections_per_client", float64(l.MaxConnectionsPerClient)}, {"publish_rate", l.PublishRate},
		{"publish_burst", float64(l.PublishBurst)}, {"publish_bytes_rate", float64(l.PublishBytesRate)},
		{"max_topics", float64(l.MaxTopics)}, {"max_queue_bytes", float64(l.MaxQueueBytes)},
		{"max_buffer_bytes", float64(l.MaxBufferBytes)},
		{"ping_interval", float64(l.PingInterval)}, {"pong_timeout", float64(l.PongTimeout)},
	} {
		if f.value < -1 {
			errs = append(errs, fmt.Errorf("limits.%s must be positive, or -1 for no bound", f.name))
		}
	}
	return errs
}

// unbounded turns the config's -1 (no bound) into the bridge's 0.
func unbounded[T int | float64 | caddy.Duration](v T) T {
	if v < 0 {
		return 0
	}
	return v
}

func (l *Limits) bridge() bridge.Limits {
	maxFrame := int64(unbounded(l.MaxFrameBytes))
	if maxFrame == 0 {
		maxFrame = -1 // gorilla: no read limit
	}
	return bridge.Limits{
		MaxFrameBytes:           maxFrame,
		MaxConnections:          unbounded(l.MaxConnections),
		MaxConnectionsPerClient: unbounded(l.MaxConnectionsPerClient),
		PublishRate:             unbounded(l.PublishRate),
		PublishBurst:            unbounded(l.PublishBurst),
		PublishBytesRate:        unbounded(l.PublishBytesRate),
		MaxTopics:               unbounded(l.MaxTopics),
		MaxQueueBytes:           queueBytes(l.MaxQueueBytes),
		PingInterval:            time.Duration(unbounded(l.PingInterval)),
		PongTimeout:             time.Duration(unbounded(l.PongTimeout)),
	}
}

// queueBytes maps "no bound" to a budget no queue reaches.
func queueBytes(v int) int64 {
	if v < 0 {
		return 1 << 62
	}
	return int64(v)
}

func (l *Limits) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "max_frame_bytes":
			err = intArg(d, &l.MaxFrameBytes)
		case "max_connections":
			err = intArg(d, &l.MaxConnections)
		case "max_connections_per_client":
			err = intArg(d, &l.MaxConnectionsPerClient)
		case "publish_rate":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			if l.PublishRate, err = strconv.ParseFloat(args[0], 64); err != nil {
				return d.Errf("publish_rate: %q is not a number", args[0])
			}
			if len(args) == 2 {
				if l.PublishBurst, err = strconv.Atoi(args[1]); err != nil {
					return d.Errf("publish_rate: burst %q is not a whole number", args[1])
				}
			}
		case "publish_bytes_rate":
			err = intArg(d, &l.PublishBytesRate)
		case "max_topics":
			err = intArg(d, &l.MaxTopics)
		case "max_queue_bytes":
			err = intArg(d, &l.MaxQueueBytes)
		case "max_buffer_bytes":
			err = intArg(d, &l.MaxBufferBytes)
		case "ping_interval":
			// "off" disables keepalive.
			if d.NextArg() && d.Val() == "off" {
				l.PingInterval = -1
				if d.NextArg() {
					return d.ArgErr()
				}
				continue
			}
			d.Prev()
			err = durationArg(d, &l.PingInterval)
		case "pong_timeout":
			err = durationArg(d, &l.PongTimeout)
		default:
			return d.Errf("unrecognized limits subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
