package bridge

import "github.com/wskafka/wskafka/protocol"

// encodeNotifications encodes records as one notification frame, the one encoding of every subscription kind.
// Ids come from the process-wide counter, so that they are unique within every connection the frame goes to;
// first is the id of the first record's notification, the others follow in order.
// With meta, topics are named as the sockets of namespace ns know them.
func encodeNotifications(batch []Record, meta bool, ns protocol.Namespace) (frame []byte, first uint64) {
	first = reserveFrameIDs(len(batch))
	notes := make([]protocol.Notification, len(batch))
	for i := range batch {
		notes[i] = notification(first+uint64(i), &batch[i], meta, ns)
	}
	return protocol.AppendNotifications(nil, notes), first
}

func notification(id uint64, rec *Record, meta bool, ns protocol.Namespace) protocol.Notification {
	n := protocol.Notification{ID: id, Value: rec.Value}
	if meta {
		n.Meta = true
		n.Topic = visibleTopic(ns, rec.Topic)
		n.Partition = int32(rec.Partition)
		n.Offset = rec.Offset
		n.Key = rec.Key
		n.Time = rec.Time.UnixMilli()
		for _, h := range rec.Headers {
			n.Headers = append(n.Headers, protocol.Header{Key: h.Key, Value: h.Value})
		}
	}
	return n
}
