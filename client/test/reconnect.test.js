import assert from 'node:assert/strict'
import { backoff, connect } from '../wskafka.js'
import { fakeServer, until, WebSocket, test } from './fake-server.js'

async function setup (t, opts = {}, serverOpts = {}) {
  const server = await fakeServer(serverOpts)
  const client = connect(server.url, { WebSocket, backoffBase: 10, backoffMax: 1000, reconnectSoon: 100, tryLater: 0, ...opts })
  const retries = []
  const states = []
  client.on('retry', (r) => retries.push(r))
  client.on('state', (s) => states.push(s.state))
  t.after(async () => { client.close(); await server.close() })
  return { server, client, retries, states }
}

test('backoff is full jitter: uniform in [0, min(max, base·2^attempt))', () => {
  assert.equal(backoff(0, 100, 10000, () => 0), 0, 'the first retry may come at once')
  assert.equal(backoff(0, 100, 10000, () => 0.5), 50)
  assert.equal(backoff(3, 100, 10000, () => 0.999999), 799)
  assert.equal(backoff(30, 100, 10000, () => 0.999999), 9999, 'capped at max')
  for (let i = 0; i < 1000; i++) {
    const d = backoff(4, 100, 10000)
    assert.ok(d >= 0 && d < 1600, `got ${d}, want in [0, 1600)`)
  }
})

test('refused upgrades back off exponentially; a server that answers resets the backoff', async (t) => {
  const { client, retries, server } = await setup(t, { random: () => 0.99 })
  server.refuse = 503 // set before the first upgrade is read: every attempt is refused
  await until(() => retries.length >= 4, 3000, '4 retries')
  assert.deepEqual(retries.slice(0, 4).map((r) => [r.code, r.delay]), [[1006, 9], [1006, 19], [1006, 39], [1006, 79]])
  server.refuse = 0
  await until(() => client.state === 'connected', 3000, 'connected')
  await client.ping()
  const n = retries.length
  server.conns.at(-1).ws.terminate()
  await until(() => retries.length === n + 1)
  assert.equal(retries[n].delay, 9, 'after an answer, the backoff starts again')
})

test('1001 and 1012 reconnect soon, still jittered, whatever the attempt', async (t) => {
  const { client, retries, server } = await setup(t, { random: () => 0.5 })
  await server.next(1)
  for (const code of [1012, 1001, 1012]) {
    const n = server.conns.length
    await until(() => client.state === 'connected')
    server.conns.at(-1).ws.close(code, 'reload')
    await server.next(n + 1)
  }
  assert.deepEqual(retries.map((r) => [r.code, r.delay]), [[1012, 50], [1001, 50], [1012, 50]])
})

test('a request made after the server\'s close frame came is not sent: not_connected, never outcome unknown', async (t) => {
  const { client, server } = await setup(t)
  const conn = await server.next(1)
  await until(() => client.state === 'connected')
  // The server keeps the client's close answer unread, so the client's socket stays CLOSING: a send there is
  // dropped by the WebSocket without a word (browsers and ws alike).
  conn.ws._socket.pause()
  conn.ws.close(1012, 'reload')
  await until(() => conn.ws._socket.readableLength > 0, 2000, "the client's close frame")
  const sent = client.publish('orders', 'after the close frame')
  conn.ws._socket.resume()
  await assert.rejects(sent, (e) => e.code === 'not_connected')
  assert.deepEqual(conn.requests, [], 'nothing was written to the closing socket')
})

test('1013 (refused or too slow) retries later, with backoff, and resubscribes', async (t) => {
  const { client, retries, server } = await setup(t, { random: () => 0.5, tryLater: 40 })
  const sub = client.subscribe('news', () => {}, { mode: 'broadcast' })
  await sub.ready
  const conn = server.conns.find((c) => c.subscribes.length)
  conn.ws.close(1013, 'too_many_connections')
  await until(() => retries.length === 1)
  assert.equal(retries[0].code, 1013)
  assert.equal(retries[0].reason, 'too_many_connections')
  assert.equal(retries[0].delay, 45, 'tryLater + a jittered backoff')
  await until(() => server.conns.filter((c) => c.subscribes.length).length === 2, 2000, 'resubscribed')
})

test('1009 rejects the last frame sent as too big and never sends it again', async (t) => {
  const { client, server } = await setup(t, {}, {
    handle (req, conn) {
      if (req.p?.m === 'big') { conn.ws.close(1009, 'message too big'); return true }
      return req.p?.m === 'slow'
    }
  })
  await until(() => client.state === 'connected')
  const slow = client.publish('orders', 'slow')
  await until(() => server.requests().length === 1)
  const big = client.publish('orders', 'big')
  await assert.rejects(big, { code: 'too_big' })
  await assert.rejects(slow, { code: 'outcome_unknown' }, 'an earlier frame: outcome unknown')
  await server.next(2)
  await until(() => client.state === 'connected')
  await client.ping()
  assert.equal(server.conns[1].requests.filter((r) => r.t === 'notif').length, 0)
})

test('a ping without an answer within pingTimeout: stalled, then a new socket', async (t) => {
  const { client, states, server } = await setup(t, { pingInterval: 30, pingTimeout: 40 })
  await until(() => client.state === 'connected')
  server.silent = true
  await until(() => states.includes('stalled'), 2000, 'stalled')
  assert.ok(server.conns[0].requests.some((r) => r.t === 'ping'), 'the heartbeat is a ping request')
  server.silent = false
  await server.next(2)
  await until(() => client.state === 'connected')
  assert.deepEqual(states.slice(0, 4), ['connected', 'stalled', 'disconnected', 'connecting'])
})

test('a socket that keeps answering never stalls', async (t) => {
  const { client, states } = await setup(t, { pingInterval: 10, pingTimeout: 30 })
  await until(() => client.state === 'connected')
  await new Promise((resolve) => setTimeout(resolve, 150))
  assert.deepEqual(states, ['connected'])
})

test('4001 asks for a new credential once, then reconnects with it soon', async (t) => {
  let calls = 0
  let token = 'a'
  const { client, retries, server } = await setup(t, {
    random: () => 0.5,
    credentials: async () => { calls++; token += 'a'; return { url: `${server.url}?token=${token}` } }
  })
  await server.next(1)
  await until(() => client.state === 'connected')
  server.conns.at(-1).ws.close(4001, 'credential expired, reconnect with a new one')
  await server.next(2)
  assert.equal(server.conns[1].url, '/ws?token=aa', 'the new socket carries the new token')
  assert.equal(calls, 1)
  assert.deepEqual(retries.map((r) => [r.code, r.delay]), [[4001, 50]])
  await until(() => client.state === 'connected')
  await client.ping()
})

test('a failing credentials callback is an error event and a backoff, then it is asked again', async (t) => {
  let calls = 0
  const errors = []
  const { client, server } = await setup(t, {
    random: () => 0.5,
    credentials: () => { if (++calls === 1) throw new Error('token service down') }
  })
  client.on('error', (e) => errors.push(e.code))
  await server.next(1)
  await until(() => client.state === 'connected')
  server.conns.at(-1).ws.close(4001, 'credential expired')
  await server.next(2)
  assert.deepEqual(errors, ['credentials'])
  await until(() => client.state === 'connected')
  server.conns.at(-1).ws.close(4001, 'credential expired')
  await server.next(3)
  assert.equal(calls, 2)
})
