package bridge

import "github.com/wskafka/wskafka/protocol"

// A session of a namespace (Client.Namespace) works with Kafka's names throughout: its decoder puts the prefix
// before every name the client sends, so that permissions, the topic check, subscriptions, broadcast streams and
// metrics all see one name per topic. What goes back to the client passes through here, which takes the prefix
// off: replies, error messages, the assigned frame and delivery metadata.

// namespace is the session's namespace; the zero one when the route has none.
func (s *Session) namespace() protocol.Namespace { return s.client.Namespace }

// visible is the client's name of a Kafka topic or group of its namespace.
func (s *Session) visible(name string) string {
	if v, ok := s.namespace().Visible(name); ok {
		return v
	}
	return name
}

// visibleNames is visible for each of names.
func (s *Session) visibleNames(names []string) []string {
	if s.namespace().IsZero() {
		return names
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.visible(n)
	}
	return out
}

// inNamespace reports whether a Kafka topic belongs to the session's namespace: topic/list shows only those.
func (s *Session) inNamespace(topic string) bool {
	_, ok := s.namespace().Visible(topic)
	return ok || s.namespace().IsZero()
}

// defaultGroup is the Kafka name of the route's consumer group for a subscribe that names none: each namespace
// has its own, so that tenants never share a group.
func (s *Session) defaultGroup() string {
	return s.namespace().Prefix() + s.hub.cfg.Consumer.GroupID
}

// visibleError is perr as the client may read it: the names in its message without the prefix.
func (s *Session) visibleError(perr *protocol.Error) *protocol.Error {
	if s.namespace().IsZero() {
		return perr
	}
	return &protocol.Error{Code: perr.Code, Message: s.namespace().VisibleText(perr.Message)}
}

// visiblePayload is a reply's payload with the client's names: every payload type that carries topic names is
// rewritten here, so that no reply leaks a Kafka name.
func (s *Session) visiblePayload(payload any) any {
	if s.namespace().IsZero() {
		return payload
	}
	switch p := payload.(type) {
	case []string:
		return s.visibleNames(p)
	case []protocol.TopicResult:
		out := make([]protocol.TopicResult, len(p))
		for i, r := range p {
			out[i] = r
			out[i].Name = s.visible(r.Name)
			if r.Error != nil {
				out[i].Error = &protocol.ErrorPayload{Code: r.Error.Code, Message: s.namespace().VisibleText(r.Error.Message)}
			}
		}
		return out
	case []protocol.TopicPartition:
		out := make([]protocol.TopicPartition, len(p))
		for i, tp := range p {
			out[i] = protocol.TopicPartition{Topic: s.visible(tp.Topic), Partition: tp.Partition}
		}
		return out
	case []protocol.TopicDescription:
		out := make([]protocol.TopicDescription, len(p))
		for i, d := range p {
			out[i] = d
			out[i].Topic = s.visible(d.Topic)
		}
		return out
	case protocol.Receipt:
		p.Topic = s.visible(p.Topic)
		return p
	case protocol.Health:
		consumers := make([]protocol.Consumer, len(p.Consumers))
		for i, c := range p.Consumers {
			consumers[i] = protocol.Consumer{WS: c.WS, Topics: s.visibleNames(c.Topics)}
		}
		p.Consumers = consumers
		if p.Kafka != nil && p.Kafka.Error != "" {
			p.Kafka = &protocol.KafkaHealth{Error: s.namespace().VisibleText(p.Kafka.Error)}
		}
		return p
	}
	return payload
}

// visibleTopic is what delivery metadata names a record's topic by, for the sockets of namespace ns.
func visibleTopic(ns protocol.Namespace, topic string) string {
	if v, ok := ns.Visible(topic); ok {
		return v
	}
	return topic
}
