// Package protocol is wskafka's wire format: the JSON text frames of the original Node.js WebSocket connector
// to Kafka, decoded, validated and encoded without I/O.
//
// Every frame a client sends is a JSON object
//
//	{"id": <any JSON value>, "t": "<type>", "a": "<action>", "p": <payload>}
//
// or, read by DecodeFrame, a JSON array of 1 to MaxBatch such objects, each handled as if it had been sent alone.
// t and a pick the request:
//
//	t:"topic"  a:"create"       p: ["name", …] or "name"           create topics
//	t:"topic"  a:"list"                                             list topic partitions
//	t:"topic"  a:"subscribe"    p: {"t": ["name", …], "consumer_group": "group"}
//	t:"topic"  a:"unsubscribe"
//	t:"notif"  a:"create" or no a, p: {"t": "topic", "m": <message>}  publish; no reply
//	t:"health"                                                     list the open connections
//
// Those are the original's requests, and a client that sends only them gets exactly the original's frames. Every
// addition is opt-in (JSON null counts as absent for every optional member):
//
//	t:"topic"  a:"create"       p: elements may also be {"name", "partitions", "replication", "configs": {…}};
//	                            then the reply lists {"name", "s", "error"} per topic
//	t:"topic"  a:"describe"     p: ["name", …] or {"t": ["name", …], "consumer_group": "group"}
//	t:"topic"  a:"delete"       p: ["name", …] or "name"
//	t:"topic"  a:"subscribe"    p also: "mode": "group"|"broadcast", "meta": true, "from": "earliest"|"latest"|ms,
//	                            "seek": {"topic": {"0": offset}}, "commit": "auto"|"client", "mq_limit", "mq_interval"
//	t:"topic"  a:"unsubscribe"  p: {"t": ["name", …]} leaves only those topics
//	t:"notif"  a:"create"       p also: "k": key, "h": {"name": "value"}, "part": partition, "ts": ms,
//	                            "enc": "base64" (m, k and header values are then base64), "ack": true;
//	                            "ack": true at the top level or in p asks for a reply with a Receipt
//	t:"notif"  a:"ack"          p: {"id": N} or {"t": "topic", "part": P, "offset": O}
//
// Every reply is
//
//	{"id": N, "refid": <the request's id, verbatim>, "t": "<t>", "a": "<a>", "s": 0 or 1, "p": <payload>}
//
// with the keys in that order; refid is left out when the request had no id, a when it had none, p when there is
// nothing to say. s is 0 on success and 1 on failure, and a failure's p is always
//
//	{"code": "<code>", "message": "<what was wrong, naming the field>"}
//
// (with further members after these two where ErrorReplyWith adds them, such as a create's per-topic results)
// with code one of invalid_json, invalid_frame, unknown_type, unknown_action, invalid_payload and invalid_topic
// (the request itself is wrong), or unknown_topic, kafka_unavailable, kafka_timeout, kafka_error, shutting_down,
// forbidden and cancelled (the bridge could not carry it out). A frame that could not be read as an object with a
// string t is answered with t "error". Unlike the original, which stayed silent, every malformed frame is answered.
//
// Consumed records reach the client as one frame holding a JSON array,
//
//	[{"id": N, "t": "notif", "p": "<the record's value as a JSON string>"}, …]
//
// where p is the value's bytes as a string, never parsed, or null for a null value. A subscription with
// "meta": true adds "topic", "part", "offset", "k", "h" and "ts" to each element, and "enc": "base64" when the
// value, key or a header value is not UTF-8 (they are then base64).
package protocol
