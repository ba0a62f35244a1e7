// conversation.mjs plays the original README's conversation against a wskafka endpoint with the ws package (the
// library the original server was built on), as an independent client, and checks every reply; then two opt-in
// extensions: a publish with "ack": true (a receipt) and a batch frame (a JSON array of requests).
//
//   node e2e/node/conversation.mjs ws://127.0.0.1:8080/ws
//   NODE_EXTRA_CA_CERTS=root.crt node e2e/node/conversation.mjs wss://127.0.0.1:8443/ws
//
// It exits 0 when every step passed, 1 with the failing step on stderr otherwise. Every wait is bounded.
import { randomUUID } from "node:crypto";
import WebSocket from "ws";

const STEP_TIMEOUT_MS = 45_000;

const url = process.argv[2];
if (!url) {
  console.error("usage: node conversation.mjs <ws or wss url>");
  process.exit(2);
}

const run = `node-${Date.now()}-${randomUUID().slice(0, 8)}`;
const topic1 = `e2e-${run}-topic1`;
const topic2 = `e2e-${run}-topic2`;
const group = `e2e-${run}-ingestion_1`;

// Connection wraps a socket: replies are matched by refid, notifications are queued.
class Connection {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.waiters = [];
    this.ids = new Set();
    this.closed = null;
    ws.on("message", (data, isBinary) => {
      if (isBinary) {
        this.fail(new Error(`got a binary frame, want text: ${data}`));
        return;
      }
      let frame;
      try {
        frame = JSON.parse(data.toString("utf8"));
      } catch (err) {
        this.fail(new Error(`frame is not JSON: ${data}`));
        return;
      }
      this.frames.push({ frame, text: data.toString("utf8") });
      this.wake();
    });
    ws.on("close", (code, reason) => {
      this.closed = new Error(`socket closed: ${code} ${reason}`);
      this.wake();
    });
    ws.on("error", (err) => this.fail(err));
  }

  fail(err) {
    this.closed = err;
    this.wake();
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  // next waits for the first frame that pick accepts and removes it from the queue.
  async next(what, pick) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
      const i = this.frames.findIndex((f) => pick(f.frame));
      if (i >= 0) {
        const [f] = this.frames.splice(i, 1);
        return f;
      }
      if (this.closed) throw new Error(`waiting for ${what}: ${this.closed.message}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waiting for ${what}: timed out after ${STEP_TIMEOUT_MS} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(msg) {
    this.ws.send(JSON.stringify(msg));
  }

  // request sends msg and returns the reply whose refid is msg.id, after checking the envelope.
  async request(msg, wantS = 0) {
    this.send(msg);
    const { frame, text } = await this.next(`the reply to ${JSON.stringify(msg)}`, (f) => !Array.isArray(f) && f.refid === msg.id);
    check(frame.t === msg.t, `reply ${text}: got t ${frame.t}, want ${msg.t}`);
    if (msg.a !== undefined) check(frame.a === msg.a, `reply ${text}: got a ${frame.a}, want ${msg.a}`);
    check(frame.s === wantS, `reply ${text}: got s ${frame.s}, want ${wantS}`);
    this.checkID(frame.id, text);
    return frame;
  }

  // notifications waits until n notifications arrived and returns their payloads.
  async notifications(n) {
    const out = [];
    while (out.length < n) {
      const { frame, text } = await this.next(`${n - out.length} more notifications`, (f) => Array.isArray(f));
      for (const note of frame) {
        check(note.t === "notif", `notification ${text}: got t ${note.t}, want notif`);
        this.checkID(note.id, text);
        out.push(note.p);
      }
    }
    check(out.length === n, `got ${out.length} notifications, want ${n}: ${JSON.stringify(out)}`);
    return out;
  }

  checkID(id, text) {
    check(Number.isInteger(id), `frame ${text}: got id ${id}, want an integer`);
    check(!this.ids.has(id), `frame ${text}: id ${id} repeated, want ids unique within the connection`);
    this.ids.add(id);
  }

  close() {
    this.ws.close(1000);
  }
}

function check(ok, message) {
  if (!ok) throw new Error(message);
}

// checkReceipt checks a receipt: p is exactly {t, part, offset, ts}, naming the topic, with a timestamp taken
// after `after` and not in the future.
function checkReceipt(r, topic, after) {
  const text = JSON.stringify(r);
  check(sameList(Object.keys(r.p ?? {}), ["t", "part", "offset", "ts"]), `receipt ${text}: want p with keys t, part, offset, ts`);
  check(r.p.t === topic, `receipt ${text}: got t ${r.p.t}, want ${topic}`);
  check(Number.isInteger(r.p.part) && r.p.part >= 0, `receipt ${text}: want a partition >= 0`);
  check(Number.isInteger(r.p.offset) && r.p.offset >= 0, `receipt ${text}: want an offset >= 0`);
  // Milliseconds: the bridge stamps the record when it sends it, between the request and the reply.
  check(Number.isInteger(r.p.ts) && r.p.ts >= after - 1000 && r.p.ts <= Date.now() + 1000, `receipt ${text}: got ts ${r.p.ts}, want about ${after}`);
}

function sameList(got, want) {
  return JSON.stringify(got) === JSON.stringify(want);
}

async function connect() {
  const ws = new WebSocket(url, { handshakeTimeout: STEP_TIMEOUT_MS });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return new Connection(ws);
}

async function conversation() {
  const conn = await connect();
  try {
    // Create
    let r = await conn.request({ id: 1, t: "topic", a: "create", p: [topic1, topic2] });
    check(sameList(r.p, [topic1, topic2]), `create: got p ${JSON.stringify(r.p)}, want ${JSON.stringify([topic1, topic2])}`);

    // List: one entry per partition; ours are there with partitions 0..n-1, no internal topics.
    r = await conn.request({ id: 23, t: "topic", a: "list" });
    check(Array.isArray(r.p), `list: got p ${JSON.stringify(r.p)}, want an array`);
    for (const name of [topic1, topic2]) {
      const parts = r.p.filter((e) => e.topic === name).map((e) => e.partition).sort((a, b) => a - b);
      check(parts.length > 0, `list: got no partitions of ${name}`);
      check(parts.every((p, i) => p === i), `list: ${name}: got partitions ${parts}, want 0..${parts.length - 1}`);
    }
    check(!r.p.some((e) => e.topic.startsWith("__")), "list: got internal topics, want them hidden");

    // Subscribe
    r = await conn.request({ id: 1000, t: "topic", a: "subscribe", p: { t: [topic1, topic2], consumer_group: group } });
    check(sameList(r.p, [topic1, topic2]), `subscribe: got p ${JSON.stringify(r.p)}, want ${JSON.stringify([topic1, topic2])}`);

    // Send: no reply; the notification comes back to this socket, which subscribed.
    const message = "{custom_message:'msg'}";
    conn.send({ id: 1320, t: "notif", a: "create", p: { t: topic1, m: message } });
    const notes = await conn.notifications(1);
    check(notes[0] === message, `receive: got p ${JSON.stringify(notes[0])}, want ${JSON.stringify(message)}`);

    // Healthcheck: this socket, with its topics.
    r = await conn.request({ id: 1500, t: "health" });
    check(Array.isArray(r.p?.consumers), `health: got p ${JSON.stringify(r.p)}, want {consumers: [...]}`);
    check(
      r.p.consumers.some((c) => Number.isInteger(c.ws) && sameList(c.topics, [topic1, topic2])),
      `health: got ${JSON.stringify(r.p)}, want a consumer with topics ${JSON.stringify([topic1, topic2])}`,
    );

    // Unsubscribe
    r = await conn.request({ id: 1300, t: "topic", a: "unsubscribe" });
    check(r.p === undefined, `unsubscribe: got p ${JSON.stringify(r.p)}, want none`);
    r = await conn.request({ id: 1501, t: "health" });
    check(
      !r.p.consumers.some((c) => c.topics.includes(topic1)),
      `health after unsubscribe: got ${JSON.stringify(r.p)}, want no consumer of ${topic1}`,
    );

    // Bad input is answered s:1 with refid and code, and the socket stays usable.
    r = await conn.request({ id: "bad", t: "nope" }, 1);
    check(r.p?.code === "unknown_type", `bad input: got p ${JSON.stringify(r.p)}, want code unknown_type`);
    r = await conn.request({ id: 1502, t: "health" });

    // Opt-in: a publish with "ack": true is answered with a receipt naming where Kafka stored the record.
    const before = Date.now();
    r = await conn.request({ id: 1600, t: "notif", a: "create", ack: true, p: { t: topic1, m: "with a receipt", k: "node-key" } });
    checkReceipt(r, topic1, before);

    // Opt-in: a JSON array of requests is handled as if each had been sent alone, each answered on its own.
    conn.send([
      { id: 1601, t: "notif", a: "create", p: { t: topic1, m: "batched", part: r.p.part, ack: true } },
      { id: "1602", t: "health" },
    ]);
    const batched = await conn.next("the reply to batch element 1601", (f) => !Array.isArray(f) && f.refid === 1601);
    check(batched.frame.s === 0 && batched.frame.t === "notif" && batched.frame.a === "create", `batch: got ${batched.text}, want a receipt`);
    conn.checkID(batched.frame.id, batched.text);
    checkReceipt(batched.frame, topic1, before);
    check(
      batched.frame.p.part === r.p.part && batched.frame.p.offset === r.p.offset + 1,
      `batch: got receipt ${batched.text}, want the offset after ${JSON.stringify(r.p)} in the same partition`,
    );
    const health = await conn.next("the reply to batch element \"1602\"", (f) => !Array.isArray(f) && f.refid === "1602");
    check(health.frame.s === 0 && health.frame.t === "health" && Array.isArray(health.frame.p?.consumers), `batch: got ${health.text}, want a health reply`);
    conn.checkID(health.frame.id, health.text);
    check(conn.frames.length === 0, `batch: got extra frames ${JSON.stringify(conn.frames.map((f) => f.text))}`);
  } finally {
    conn.close();
  }
}

const timer = setTimeout(() => {
  console.error("conversation: overall timeout");
  process.exit(1);
}, 4 * STEP_TIMEOUT_MS);

try {
  await conversation();
  clearTimeout(timer);
  console.log(`conversation: ok (${url}, topics ${topic1} ${topic2}, group ${group})`);
  process.exit(0);
} catch (err) {
  console.error(`conversation: FAILED against ${url}: ${err.stack || err}`);
  process.exit(1);
}
