package protocol

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxTopicName is Kafka's limit (org.apache.kafka.common.internals.Topic): a topic's name becomes part of its
// partitions' directory names, which must stay within the file system's 255 bytes.
const maxTopicName = 249

// maxGroupName is wskafka's own cap: Kafka accepts much longer group ids, and a client should not be able to make
// the broker store arbitrarily long ones.
const maxGroupName = 255

// ValidTopicName reports why Kafka would refuse name as a topic name: it must be 1 to 249 characters of
// a-z, A-Z, 0-9, '.', '_' and '-', and neither "." nor "..". Refusing such names here answers at once, where
// the broker would answer late and in its own words.
func ValidTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case len(name) > maxTopicName:
		return fmt.Errorf("topic name is longer than %d characters", maxTopicName)
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed: Kafka reserves \".\" and \"..\"", name)
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q contains %q: only a-z, A-Z, 0-9, '.', '_' and '-' are allowed", name, c)
		}
	}
	return nil
}

// ValidGroupName reports why name is refused as a consumer group name: it must be 1 to 255 characters.
func ValidGroupName(name string) error {
	switch {
	case name == "":
		return errors.New("consumer group name is empty")
	case utf8.RuneCountInString(name) > maxGroupName:
		return fmt.Errorf("consumer group name is longer than %d characters", maxGroupName)
	}
	return nil
}
