import assert from 'node:assert/strict'
import { connect, fromBase64, toBase64 } from '../wskafka.js'
import { fakeServer, until, sleep, WebSocket, test } from './fake-server.js'

// A client for tests: fast timers, the ws package's WebSocket (Node 20 has no global one), closed by t.after.
async function setup (t, opts = {}, serverOpts = {}) {
  const server = await fakeServer(serverOpts)
  const client = connect(server.url, { WebSocket, backoffBase: 10, backoffMax: 50, reconnectSoon: 10, tryLater: 0, ...opts })
  const errors = []
  client.on('error', (e) => errors.push(e))
  t.after(async () => { client.close(); await server.close() })
  await until(() => client.state === 'connected', 2000, 'connected')
  return { server, client, errors }
}

test('the client asks for the wskafka subprotocol', async (t) => {
  const { server } = await setup(t)
  assert.equal(server.conns[0].protocol, 'wskafka')
})

test('requests made in the same tick go out as one array frame, answered by refid', async (t) => {
  const { server, client } = await setup(t)
  const [topics, health, receipt] = await Promise.all([
    client.listTopics(),
    client.health(),
    client.publish('orders', { total: 1 }, { key: 'k1', headers: { source: 'web' } })
  ])
  const conn = server.conns[0]
  assert.equal(conn.frames.length, 1, 'one frame')
  assert.ok(Array.isArray(conn.frames[0]), 'an array frame')
  assert.deepEqual(conn.frames[0].map((r) => `${r.t}/${r.a}`), ['topic/list', 'health/undefined', 'notif/create'])
  assert.deepEqual(topics, { echo: null })
  assert.deepEqual(health, { echo: null })
  assert.deepEqual(receipt, { topic: 'orders', partition: 0, offset: 0, timestamp: 1700000000123 })
  const pub = conn.frames[0][2]
  assert.equal(pub.ack, true)
  assert.deepEqual(pub.p, { t: 'orders', m: { total: 1 }, k: 'k1', h: { source: 'web' } })
  // A request alone is sent as an object, not an array.
  await client.ping()
  assert.equal(conn.frames[1].t, 'ping')
})

test('a batch holds at most 1000 requests', async (t) => {
  const { server, client } = await setup(t)
  await Promise.all(Array.from({ length: 2500 }, (_, i) => client.request('health', undefined, { i })))
  assert.deepEqual(server.conns[0].frames.map((f) => f.length), [1000, 1000, 500])
})

test('a frame stays under maxFrameBytes, and a request above it is refused unsent', async (t) => {
  const { server, client } = await setup(t, { maxFrameBytes: 300 })
  const big = client.publish('orders', 'x'.repeat(400))
  const small = Array.from({ length: 6 }, () => client.publish('orders', 'y'.repeat(60)))
  await assert.rejects(big, { code: 'too_big' })
  await Promise.all(small)
  const frames = server.conns[0].frames
  assert.ok(frames.length >= 2, `split into ${frames.length} frames`)
  for (const f of frames) assert.ok(JSON.stringify(f).length <= 300)
  assert.ok(!server.requests().some((r) => r.p?.m?.startsWith('x')))
})

test('replies are matched by refid whatever their order', async (t) => {
  const held = []
  const { client, server } = await setup(t, {}, {
    handle (req, conn) {
      if (req.t !== 'health') return false
      held.push([conn, req])
      if (held.length === 3) for (const [c, r] of held.reverse()) server.reply(c, r, r.p)
      return true
    }
  })
  const replies = await Promise.all([1, 2, 3].map((n) => client.health({ n })))
  assert.deepEqual(replies, [{ n: 1 }, { n: 2 }, { n: 3 }])
})

test('a failure reply rejects with its code and message', async (t) => {
  const { client, server } = await setup(t, {}, {
    handle (req, conn) {
      if (req.t !== 'topic') return false
      server.reply(conn, req, { code: 'unknown_topic', message: 'publishing to nope' }, 1)
      return true
    }
  })
  await assert.rejects(client.describeTopics('nope'), { code: 'unknown_topic', message: 'publishing to nope' })
})

test('a request without a reply times out', async (t) => {
  const { client } = await setup(t, {}, { handle: (req) => req.t === 'health' })
  const t0 = Date.now()
  await assert.rejects(client.health(undefined, { timeout: 50 }), { code: 'timeout' })
  assert.ok(Date.now() - t0 < 1000)
})

test('on close, every request sent and not answered fails as outcome unknown', async (t) => {
  const { client, server } = await setup(t, {}, { handle: (req) => req.t === 'notif' })
  const a = client.publish('orders', 'a')
  const b = client.publish('orders', 'b')
  await until(() => server.requests().length === 2)
  server.conns[0].ws.close(1012, 'reload')
  await assert.rejects(a, { code: 'outcome_unknown', closeCode: 1012 })
  await assert.rejects(b, { code: 'outcome_unknown' })
})

test('while disconnected a request rejects at once with not_connected', async (t) => {
  const { client, server } = await setup(t, { backoffBase: 5000, backoffMax: 5000, random: () => 0.5 })
  server.conns[0].ws.close(1011)
  await until(() => client.state === 'disconnected')
  const t0 = Date.now()
  await assert.rejects(client.health(), { code: 'not_connected' })
  assert.ok(Date.now() - t0 < 100)
})

test('requests made before the first open wait for it', async (t) => {
  const server = await fakeServer()
  const client = connect(server.url, { WebSocket })
  t.after(async () => { client.close(); await server.close() })
  assert.equal(client.state, 'connecting')
  assert.deepEqual(await client.publish('orders', 'early'), { topic: 'orders', partition: 0, offset: 0, timestamp: 1700000000123 })
})

test('the offline queue keeps requests made while disconnected, up to its bound', async (t) => {
  const { client, server } = await setup(t, { queue: 2, random: () => 0.99, backoffBase: 200, backoffMax: 200 })
  server.conns[0].ws.close(1011)
  await until(() => client.state === 'disconnected')
  const a = client.publish('orders', 'a')
  const b = client.publish('orders', 'b')
  await assert.rejects(client.publish('orders', 'c'), { code: 'queue_full' })
  const receipts = await Promise.all([a, b])
  assert.equal(receipts.length, 2)
  assert.equal(server.conns.length, 2)
  assert.deepEqual(server.conns[1].requests.filter((r) => r.t === 'notif').map((r) => r.p.m), ['a', 'b'])
})

test('binary values go base64 with enc, and come back as Uint8Array', async (t) => {
  const { client, server } = await setup(t)
  await client.publish('bin', new Uint8Array([255, 0, 128]), { key: 'customer', headers: { h: 'v' } })
  const p = server.requests().find((r) => r.t === 'notif').p
  assert.deepEqual(p, { t: 'bin', m: '/wCA', k: toBase64('customer'), h: { h: toBase64('v') }, enc: 'base64' })
  assert.deepEqual(fromBase64('/wCA'), new Uint8Array([255, 0, 128]))

  const got = []
  const sub = client.subscribe('bin', (r) => { got.push(r) })
  await sub.ready
  const conn = server.conns[1]
  server.deliver(conn, [
    { topic: 'bin', offset: 0, p: '/wCA', k: toBase64('k'), h: { x: toBase64('y') }, enc: 'base64' },
    { topic: 'bin', offset: 1, p: toBase64('text'), k: '/w==', h: { x: '/g==' }, enc: 'base64' }
  ])
  await until(() => got.length === 2)
  assert.deepEqual(got[0].value, new Uint8Array([255, 0, 128]))
  assert.equal(got[0].key, 'k', 'a UTF-8 key is text again')
  assert.deepEqual(got[0].headers, { x: 'y' })
  assert.deepEqual(got[1].value, new TextEncoder().encode('text'), 'with enc, a value is always bytes')
  assert.deepEqual(got[1].key, new Uint8Array([255]))
  assert.deepEqual(got[1].headers, { x: new Uint8Array([254]) })
})

test('send() is fire-and-forget; its failure is an error event', async (t) => {
  const { client, server, errors } = await setup(t, {}, {
    handle (req, conn) {
      if (req.t !== 'notif') return false
      if (req.p.t === 'nope') server.reply(conn, req, { code: 'unknown_topic', message: 'publishing to nope' }, 1)
      return true
    }
  })
  client.send('orders', 'ok', { partition: 1, timestamp: new Date(5) })
  client.send('nope', 'lost')
  await until(() => errors.length === 1)
  assert.equal(errors[0].code, 'unknown_topic')
  const [ok] = server.requests()
  assert.equal(ok.ack, undefined)
  assert.deepEqual(ok.p, { t: 'orders', m: 'ok', part: 1, ts: 5 })
  await sleep(20)
  assert.equal(errors.length, 1)
})

test('after close(), requests reject with closed', async (t) => {
  const { client } = await setup(t)
  client.close()
  assert.equal(client.state, 'closed')
  await assert.rejects(client.health(), { code: 'closed' })
  assert.throws(() => client.subscribe('x', () => {}), { code: 'closed' })
})

test('requests made while the first attempt fails reject with not_connected', async (t) => {
  const server = await fakeServer()
  server.refuse = 403
  const client = connect(server.url, { WebSocket, backoffBase: 5000, random: () => 0.5 })
  t.after(async () => { client.close(); await server.close() })
  await assert.rejects(client.health(), { code: 'not_connected' })
  assert.equal(client.state, 'disconnected')
})

test('a WebSocket subclass sets headers for native clients (Node services)', async (t) => {
  const server = await fakeServer()
  let auth
  server.verify = (req) => { auth = req.headers.authorization }
  class AuthedWebSocket extends WebSocket {
    constructor (url, protocols) { super(url, protocols, { headers: { Authorization: 'Bearer t0k3n' } }) }
  }
  const client = connect(server.url, { WebSocket: AuthedWebSocket })
  t.after(async () => { client.close(); await server.close() })
  await client.ping()
  assert.equal(auth, 'Bearer t0k3n')
})

test('send() while disconnected is reported as an error event', async (t) => {
  const { client, server, errors } = await setup(t, { backoffBase: 5000, backoffMax: 5000, random: () => 0.5 })
  server.conns[0].ws.close(1011)
  await until(() => client.state === 'disconnected')
  client.send('orders', 'lost')
  assert.equal(errors.length, 1)
  assert.equal(errors[0].code, 'not_connected')
})
