// Package bridge serves WebSocket sessions speaking wskafka's protocol and bridges them to Kafka: one Hub per
// handler, a Session per socket with its reader, its single writer, a Publisher and at most one Subscription,
// and Broadcaster streams shared by every handler of a cluster.
//
// The bridge reaches Kafka only through its port (kafka.go: records, the Producer, Admin and Consumers
// interfaces, sentinel errors), and imports neither Caddy nor a Kafka client: the Caddy module wires it to the
// kafkago adapter, and tests to fakes.
package bridge
