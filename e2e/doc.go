// Package e2e is wskafka's end-to-end suite: it builds the real Caddy binary (with `go build ./cmd/caddy`, and
// once per run with xcaddy), starts it as a subprocess with a real Caddyfile, and speaks the original connector's
// protocol to it over real WebSocket connections, from Go (gorilla/websocket) and from Node.js (the ws package the
// original server was built on), over ws:// and over wss:// with Caddy's own CA. What goes through Kafka is
// checked on the Kafka side with kcat, with no project code on the verifying side, and two Caddy processes
// share one consumer group.
//
// It proves that a client written against the original README works against the module as users deploy it:
// the whole conversation (create, list, subscribe with and without consumer_group, publish, receive, unsubscribe,
// health, and an s:1 reply with refid and code for every kind of bad input), byte-exact payloads in both
// directions, TLS, and scale-out across processes.
//
// Run it against the in-process broker (an in-memory kfake cluster started by the test process, shared by every
// Caddy the suite starts and by kcat):
//
//	go test -race -count=1 ./e2e/
//
// and against a real Apache Kafka:
//
//	eval "$(scripts/kafka up)" && KAFKA_BROKERS=$KAFKA_BROKERS go test -count=1 ./e2e/; scripts/kafka down
//
// TestSASL needs the broker's SASL_SSL listener as well (KAFKA_SASL_BROKERS, KAFKA_CA, KAFKA_SASL_USERNAME and
// KAFKA_SASL_PASSWORD, exported by `set -a; eval "$(KAFKA_SASL=1 scripts/kafka up)"`); without it, it skips.
//
// The fault suite (faults_*_test.go, TestFault*) runs numbered publishers and subscribers through faults and reads
// Kafka back with kcat, counting exactly what was lost and duplicated: config reloads under load (POST /load to the
// admin API, Kafka settings changed and unchanged, closes at once and spread by close_delay), a broker killed with
// SIGKILL and started again on the same port and data, then frozen with SIGSTOP (on a private broker of its own,
// started with scripts/kafka; it skips without KAFKA_BROKERS, since the in-process broker cannot be killed), one
// of two Caddy processes killed under a commit:client group, sockets cut without a close frame, and group churn.
// An acknowledged publish missing from Kafka, a publish that got no error missing, a record a commit:client group
// never processed, and a publish never answered on an open socket fail the test; recovery times are logged only.
//
// It needs kcat (Debian package kcat), node, and the Node client's dependencies
// (`npm ci --prefix e2e/node`). Without kcat or the Node dependencies the tests that need them skip, unless the
// environment variable CI is set, where they fail. With -short the whole suite skips.
package e2e
