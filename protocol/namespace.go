package protocol

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Namespace is the prefix a route puts before every topic and consumer group its clients name (a tenant's
// "acme." before "orders"), and takes off every name it sends back, so that each tenant sees only names of its
// own and cannot type one of another's. The zero Namespace is no namespace: names are used as sent.
//
// A client name is checked by Kafka's rules on its own while decoding and then again with the prefix, where the
// length limits count the whole name. Since a valid client name only adds characters after the prefix, no input
// reaches a name that does not start with it.
type Namespace struct {
	prefix string
}

// NewNamespace returns the namespace of prefix, a route's namespace template resolved for one connection. The
// prefix must be made of the characters Kafka allows in topic names, since it begins every topic of the
// namespace, and leave room for at least one character of a name.
func NewNamespace(prefix string) (Namespace, error) {
	switch {
	case prefix == "":
		return Namespace{}, errors.New("namespace is empty")
	case len(prefix) >= maxTopicName:
		return Namespace{}, fmt.Errorf("namespace is %d characters: it must be shorter than %d to leave room for a topic name", len(prefix), maxTopicName)
	}
	for _, c := range prefix {
		if !topicNameChar(c) {
			return Namespace{}, fmt.Errorf("namespace %q contains %q: only a-z, A-Z, 0-9, '.', '_' and '-' are allowed", prefix, c)
		}
	}
	return Namespace{prefix: prefix}, nil
}

// Prefix is what the namespace puts before names; "" for no namespace.
func (ns Namespace) Prefix() string { return ns.prefix }

// IsZero reports whether ns is no namespace.
func (ns Namespace) IsZero() bool { return ns.prefix == "" }

// Topic returns the Kafka name of a client's topic name, checked by Kafka's rules as a whole.
func (ns Namespace) Topic(name string) (string, error) {
	full := ns.prefix + name
	if err := ValidTopicName(name); err != nil {
		return "", err
	}
	if len(full) > maxTopicName {
		return "", fmt.Errorf("topic name %q is longer than %d characters, the most this route's namespace leaves", name, maxTopicName-len(ns.prefix))
	}
	return full, nil
}

// Group returns the Kafka name of a client's consumer group name, checked as a whole.
func (ns Namespace) Group(name string) (string, error) {
	if err := ValidGroupName(name); err != nil {
		return "", err
	}
	if n := utf8.RuneCountInString(ns.prefix + name); n > maxGroupName {
		return "", fmt.Errorf("consumer group name %q is longer than %d characters, the most this route's namespace leaves", name, maxGroupName-len(ns.prefix))
	}
	return ns.prefix + name, nil
}

// Visible returns the name a client of the namespace knows a Kafka topic or group by, and whether the name is in
// the namespace at all (a name outside it is not the client's to see).
func (ns Namespace) Visible(full string) (string, bool) {
	if !strings.HasPrefix(full, ns.prefix) || len(full) == len(ns.prefix) {
		return "", false
	}
	return full[len(ns.prefix):], true
}

// VisibleText takes the prefix off every name in a message meant for the client (an error naming topics, or
// Kafka's own words about them): wherever the prefix begins a word, that is, where it does not follow a
// character that could be part of a topic name. "kafka.(*Client)" keeps its "a." under the namespace "a.".
func (ns Namespace) VisibleText(text string) string {
	if ns.prefix == "" || !strings.Contains(text, ns.prefix) {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	for i := 0; i < len(text); {
		j := strings.Index(text[i:], ns.prefix)
		if j < 0 {
			b.WriteString(text[i:])
			break
		}
		at := i + j
		b.WriteString(text[i:at])
		if at > 0 && topicNameChar(rune(text[at-1])) {
			b.WriteByte(text[at])
			i = at + 1
			continue
		}
		i = at + len(ns.prefix)
	}
	return b.String()
}

func topicNameChar(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// applyNamespace puts the namespace before every topic and group name of a decoded request of op. The fields named in
// messages are those the names came from. A publish to the topic of the last one reuses its Kafka name, as
// decoding reuses the client's: a publish is the one request sent at a high rate.
func (d *Decoder) applyNamespace(op Op, req *Request) *Error {
	ns := d.namespace
	topic := func(field string, name *string) *Error {
		full, err := ns.Topic(*name)
		if err != nil {
			return errorf(CodeInvalidTopic, "%s: %v", field, err)
		}
		*name = full
		return nil
	}
	topics := func(field string) *Error {
		for i := range req.Topics {
			if err := topic(field, &req.Topics[i]); err != nil {
				return err
			}
		}
		return nil
	}
	group := func() *Error {
		if req.Group == "" {
			return nil
		}
		full, err := ns.Group(req.Group)
		if err != nil {
			return errorf(CodeInvalidTopic, "p.consumer_group: %v", err)
		}
		req.Group = full
		return nil
	}
	switch op {
	case OpPublish:
		if req.Publish.Topic == d.nsTopic && d.nsTopic != "" {
			req.Publish.Topic = d.nsFull
			return nil
		}
		client := req.Publish.Topic
		if err := topic("p.t", &req.Publish.Topic); err != nil {
			return err
		}
		d.nsTopic, d.nsFull = client, req.Publish.Topic
	case OpCreateTopics:
		// Create holds one spec per name of Topics, in the same order.
		for i := range req.Create {
			if err := topic("p", &req.Create[i].Name); err != nil {
				return err
			}
			req.Topics[i] = req.Create[i].Name
		}
	case OpDeleteTopics:
		return topics("p")
	case OpDescribeTopics:
		if err := topics("p.t"); err != nil {
			return err
		}
		return group()
	case OpUnsubscribe:
		return topics("p.t")
	case OpSubscribe:
		if err := topics("p.t"); err != nil {
			return err
		}
		if err := group(); err != nil {
			return err
		}
		if seek := req.Subscribe.Seek; seek != nil {
			// Every key is one of p.t, checked while decoding, so it is valid and fits as p.t did.
			namespaced := make(map[string]map[int32]int64, len(seek))
			for name, offsets := range seek {
				namespaced[ns.prefix+name] = offsets
			}
			req.Subscribe.Seek = namespaced
		}
	case OpAck:
		if !req.AckOf.ByID {
			return topic("p.t", &req.AckOf.Topic)
		}
	}
	return nil
}
