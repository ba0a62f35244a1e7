// Package kafkago implements the bridge's Kafka port with github.com/segmentio/kafka-go: the admin client, the
// producer, partition fetchers, consumer-group members on kafka-go's protocol messages, TLS and SASL, and the
// mapping of kafka-go's errors to the port's sentinels. It imports the bridge as a database/sql driver imports
// database/sql/driver.
package kafkago
