// Package protocol is wskafka's wire format: the JSON text frames of the original Node.js WebSocket connector
// to Kafka, decoded, validated and encoded without I/O.
//
// Every frame a client sends is a JSON object
//
//	{"id": <any JSON value>, "t": "<type>", "a": "<action>", "p": <payload>}
//
// where t and a pick the request:
//
//	t:"topic"  a:"create"       p: ["name", …] or "name"           create topics
//	t:"topic"  a:"list"                                             list topic partitions
//	t:"topic"  a:"subscribe"    p: {"t": ["name", …], "consumer_group": "group"}
//	t:"topic"  a:"unsubscribe"
//	t:"notif"  a:"create" or no a, p: {"t": "topic", "m": <message>}  publish; no reply
//	t:"health"                                                     list the open connections
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
// with code one of invalid_json, invalid_frame, unknown_type, unknown_action, invalid_payload and invalid_topic
// (the request itself is wrong), or unknown_topic, kafka_unavailable, kafka_timeout, kafka_error, shutting_down
// and cancelled (the bridge could not carry it out). A frame that could not be read as an object with a string t
// is answered with t "error". Unlike the original, which stayed silent, every malformed frame is answered.
//
// Consumed records reach the client as one frame holding a JSON array,
//
//	[{"id": N, "t": "notif", "p": "<the record's value as a JSON string>"}, …]
//
// where p is the value's bytes as a string, never parsed, or null for a null value.
package protocol
