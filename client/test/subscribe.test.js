import assert from 'node:assert/strict'
import { connect } from '../wskafka.js'
import { fakeServer, until, sleep, WebSocket, test } from './fake-server.js'

async function setup (t, opts = {}, serverOpts = {}) {
  const server = await fakeServer(serverOpts)
  const client = connect(server.url, { WebSocket, backoffBase: 10, backoffMax: 50, reconnectSoon: 10, tryLater: 0, ...opts })
  const errors = []
  const gaps = []
  client.on('error', (e) => errors.push(e))
  client.on('gap', (g) => gaps.push(g))
  t.after(async () => { client.close(); await server.close() })
  return { server, client, errors, gaps }
}

// The connections that carry a subscription, in order.
const subConns = (server) => server.conns.filter((c) => c.subscribes.length)

test('topics of one group, mode and commit share a socket and one subscribe; others get their own', async (t) => {
  const { client, server } = await setup(t)
  const a = client.subscribe('a', () => {}, { group: 'g', commit: 'client' })
  const b = client.subscribe(['b', 'c'], () => {}, { group: 'g', commit: 'client' })
  const d = client.subscribe('d', () => {}, { group: 'other' })
  await Promise.all([a.ready, b.ready, d.ready])
  const [g, other] = subConns(server)
  assert.equal(subConns(server).length, 2)
  assert.deepEqual(g.subscribes, [{ t: ['a', 'b', 'c'], consumer_group: 'g', commit: 'client', meta: true, assignments: true }])
  assert.deepEqual(other.subscribes, [{ t: ['d'], consumer_group: 'other', meta: true, assignments: true }])
})

test('changes within the subscribe window go out as one subscribe', async (t) => {
  const { client, server } = await setup(t, { subscribeWindow: 30 })
  await client.subscribe('a', () => {}).ready
  const b = client.subscribe('b', () => {})
  await sleep(10)
  const c = client.subscribe('c', () => {})
  await Promise.all([b.ready, c.ready])
  assert.deepEqual(subConns(server)[0].subscribes.map((s) => s.t), [['a'], ['a', 'b', 'c']])
  await b.unsubscribe()
  assert.deepEqual(subConns(server)[0].subscribes.at(-1).t, ['a', 'c'])
})

test('after a reconnect a broadcast is subscribed again, seeking past what was delivered', async (t) => {
  const { client, server } = await setup(t, {}, { partitions: 2 })
  const got = []
  await client.subscribe('orders', (r) => { got.push(`${r.partition}:${r.offset}`) }, { mode: 'broadcast' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1, 2, 3, 4].map((offset) => ({ topic: 'orders', offset })))
  server.deliver(conn, [{ topic: 'orders', part: 1, offset: 7 }])
  await until(() => got.length === 6)
  conn.ws.close(1012, 'reload')
  await until(() => subConns(server).length === 2, 2000, 'resubscribed')
  assert.deepEqual(subConns(server)[1].subscribes[0].seek, { orders: { 0: 5, 1: 8 } })
})

test('a group member subscribes again without seek: the group\'s commits are its position', async (t) => {
  const { client, server, gaps } = await setup(t, {}, { partitions: 2 })
  const got = []
  await client.subscribe('orders', (r) => { got.push(`${r.partition}:${r.offset}`) }, { group: 'g' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1, 2].map((offset) => ({ topic: 'orders', offset })))
  await until(() => got.length === 3)
  conn.ws.close(1012, 'reload')
  await until(() => subConns(server).length === 2, 2000, 'resubscribed')
  const conn2 = subConns(server)[1]
  assert.equal(conn2.subscribes[0].seek, undefined)
  server.assigned(conn2, { orders: { 0: 9, 1: 0 } }) // another member read 3..8 meanwhile: no gap
  server.deliver(conn2, [2, 9].map((offset) => ({ topic: 'orders', offset }))) // 2 again: a duplicate
  await until(() => got.length === 4)
  await sleep(10)
  assert.deepEqual(got, ['0:0', '0:1', '0:2', '0:9'])
  assert.deepEqual(gaps, [])
})

test('duplicates (offset below the next expected) are dropped', async (t) => {
  const { client, server } = await setup(t)
  const got = []
  await client.subscribe('orders', (r) => { got.push(r.offset) }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1, 2].map((offset) => ({ topic: 'orders', offset })))
  server.deliver(conn, [1, 2, 3].map((offset) => ({ topic: 'orders', offset })))
  await until(() => got.includes(3))
  await sleep(10)
  assert.deepEqual(got, [0, 1, 2, 3])
})

test('offset holes inside a stream (compaction, transaction markers) are not gaps', async (t) => {
  const { client, server, gaps } = await setup(t)
  const got = []
  await client.subscribe('orders', (r) => { got.push(r.offset) }, { mode: 'broadcast' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 5, 9].map((offset) => ({ topic: 'orders', offset })))
  await until(() => got.length === 3)
  conn.ws.close(1012)
  await until(() => subConns(server).length === 2)
  assert.deepEqual(subConns(server)[1].subscribes[0].seek, { orders: { 0: 10 } })
  await sleep(20)
  assert.deepEqual(gaps, [])
})

test('a broadcast starting above the offset asked for (assigned) is a gap; the first subscribe is not', async (t) => {
  const { client, server, gaps } = await setup(t, {}, { start: (topic, part, want) => Math.max(want ?? 0, 20) })
  const got = []
  await client.subscribe('orders', (r) => { got.push(r.offset) }, { mode: 'broadcast' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [20, 21].map((offset) => ({ topic: 'orders', offset })))
  await until(() => got.length === 2)
  assert.deepEqual(gaps, [], 'no position known: no gap')
  server.start = (topic, part, want) => Math.max(want ?? 0, 40) // retention deleted 22..39 meanwhile
  conn.ws.close(1013, 'too slow')
  await until(() => gaps.length === 1, 2000, 'a gap')
  assert.deepEqual(gaps, [{ topic: 'orders', partition: 0, from: 22, to: 40 }])
  assert.deepEqual(subConns(server)[1].subscribes[0].seek, { orders: { 0: 22 } })
})

test('partitions no longer assigned are forgotten: what comes back of them is not a duplicate', async (t) => {
  const { client, server } = await setup(t, {}, { partitions: 2 })
  const got = []
  await client.subscribe('orders', (r) => { got.push(`${r.partition}:${r.offset}`) }, { group: 'g' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [{ topic: 'orders', part: 0, offset: 3 }, { topic: 'orders', part: 1, offset: 8 }])
  await until(() => got.length === 2)
  server.assigned(conn, { orders: { 1: 9 } }) // a rebalance: partition 0 went to another member
  await sleep(10)
  server.assigned(conn, { orders: { 0: 2, 1: 9 } }) // and came back, from the group's commit
  server.deliver(conn, [{ topic: 'orders', part: 0, offset: 2 }])
  await until(() => got.length === 3)
  assert.deepEqual(got, ['0:3', '1:8', '0:2'])
})

test('broadcast subscriptions resume with seek too', async (t) => {
  const { client, server } = await setup(t)
  await client.subscribe('news', () => {}, { mode: 'broadcast', from: 'latest' }).ready
  const conn = subConns(server)[0]
  assert.deepEqual(conn.subscribes[0], { t: ['news'], mode: 'broadcast', meta: true, assignments: true, from: 'latest' })
  server.deliver(conn, [{ topic: 'news', offset: 41 }])
  await sleep(10)
  conn.ws.close(1013, 'too slow for broadcast')
  await until(() => subConns(server).length === 2)
  assert.deepEqual(subConns(server)[1].subscribes[0].seek, { news: { 0: 42 } })
  assert.throws(() => client.subscribe('news', () => {}, { mode: 'broadcast', commit: 'client' }), TypeError)
})

test('with commit "client" an ack never passes an unfinished earlier record of its partition', async (t) => {
  const { client, server } = await setup(t)
  const finish = new Map()
  await client.subscribe('orders', (r) => new Promise((resolve) => finish.set(r.offset, resolve)), { group: 'g', commit: 'client' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1, 2, 5].map((offset) => ({ topic: 'orders', offset })))
  await until(() => finish.size === 4)
  finish.get(2)()
  finish.get(5)()
  await sleep(20)
  assert.deepEqual(conn.acks, [], 'offsets 2 and 5 are done, 0 is not')
  finish.get(0)()
  await until(() => conn.acks.length === 1)
  assert.deepEqual(conn.acks, [{ t: 'orders', part: 0, offset: 0 }])
  finish.get(1)()
  await until(() => conn.acks.length === 2)
  assert.deepEqual(conn.acks[1], { t: 'orders', part: 0, offset: 5 }, 'cumulative: 1, 2 and 5 in one ack')
})

test('acks of different partitions do not wait for each other; sync handlers ack too', async (t) => {
  const { client, server } = await setup(t, {}, { partitions: 2 })
  let hold
  await client.subscribe('orders', (r) => (r.partition === 0 ? new Promise((resolve) => { hold = resolve }) : undefined), { group: 'g', commit: 'client' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [{ topic: 'orders', part: 0, offset: 0 }, { topic: 'orders', part: 1, offset: 0 }, { topic: 'orders', part: 1, offset: 1 }])
  await until(() => conn.acks.length === 1)
  assert.deepEqual(conn.acks, [{ t: 'orders', part: 1, offset: 1 }])
  hold()
  await until(() => conn.acks.length === 2)
  assert.deepEqual(conn.acks[1], { t: 'orders', part: 0, offset: 0 })
})

test('a handler error is isolated and reported; the record is not acknowledged until retry() or skip()', async (t) => {
  const { client, server, errors } = await setup(t)
  let failing = true
  const got = []
  await client.subscribe('orders', async (r) => {
    if (r.offset === 1 && failing) throw new Error('boom')
    got.push(r.offset)
  }, { group: 'g', commit: 'client' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1, 2].map((offset) => ({ topic: 'orders', offset })))
  await until(() => errors.length === 1 && got.length === 2)
  const e = errors[0]
  assert.equal(e.code, 'handler_failed')
  assert.equal(e.cause.message, 'boom')
  assert.equal(e.record.offset, 1)
  await sleep(10)
  assert.deepEqual(conn.acks, [{ t: 'orders', part: 0, offset: 0 }], 'nothing acknowledged past the failed record')
  e.retry()
  await sleep(10)
  assert.equal(errors.length, 2, 'failing again')
  failing = false
  errors[1].retry()
  await until(() => conn.acks.length === 2)
  assert.deepEqual(conn.acks[1], { t: 'orders', part: 0, offset: 2 })
  assert.deepEqual(got, [0, 2, 1])
})

test('a failed record is delivered again after a reconnect (from the group\'s commit, which it held back)', async (t) => {
  const { client, server, errors } = await setup(t)
  const got = []
  await client.subscribe('orders', (r) => {
    if (r.offset === 1 && got.length < 3) throw new Error('boom')
    got.push(r.offset)
  }, { group: 'g', commit: 'client' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1, 2, 3].map((offset) => ({ topic: 'orders', offset })))
  await until(() => errors.length === 1 && got.length === 3)
  conn.ws.close(1012)
  await until(() => subConns(server).length === 2)
  const conn2 = subConns(server)[1]
  assert.equal(conn2.subscribes[0].seek, undefined)
  server.deliver(conn2, [1, 2, 3, 4].map((offset) => ({ topic: 'orders', offset })))
  await until(() => got.length === 5)
  assert.deepEqual(got, [0, 2, 3, 1, 4], '2 and 3 were handled already: dropped')
  await until(() => conn2.acks.at(-1)?.offset === 4)
})

test('another handler skip()s: the partition is acknowledged past it', async (t) => {
  const { client, server, errors } = await setup(t)
  await client.subscribe('orders', (r) => { if (r.offset === 0) throw new Error('poison') }, { group: 'g', commit: 'client' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [0, 1].map((offset) => ({ topic: 'orders', offset })))
  await until(() => errors.length === 1)
  errors[0].skip()
  await until(() => conn.acks.length === 1)
  assert.deepEqual(conn.acks, [{ t: 'orders', part: 0, offset: 1 }])
})

test('positions persist in storage under a key and survive a reload', async (t) => {
  const store = new Map()
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) }
  const { client, server } = await setup(t, { persist: 'wsk', storage })
  let hold
  await client.subscribe('orders', (r) => (r.offset === 6 ? new Promise((resolve) => { hold = resolve }) : undefined), { mode: 'broadcast' }).ready
  server.deliver(subConns(server)[0], [4, 5, 6, 7].map((offset) => ({ topic: 'orders', offset })))
  await until(() => hold)
  client.close() // offset 6 still being handled: the reload resumes there
  const saved = JSON.parse(store.get('wsk'))
  assert.deepEqual(Object.values(saved), [{ orders: { 0: 6 } }])
  hold()

  const again = connect(server.url, { WebSocket, persist: 'wsk', storage })
  t.after(() => again.close())
  await again.subscribe('orders', () => {}, { mode: 'broadcast' }).ready
  assert.deepEqual(subConns(server)[1].subscribes[0].seek, { orders: { 0: 6 } })
})

test('a refused subscribe rejects ready, is reported, and closes its socket', async (t) => {
  const { client, server, errors } = await setup(t, {}, {
    handle (req, conn) {
      if (req.a !== 'subscribe') return false
      conn.subscribes.push(req.p)
      server.reply(conn, req, { code: 'unknown_topic', message: 'nope does not exist' }, 1)
      return true
    }
  })
  const sub = client.subscribe('nope', () => {})
  await assert.rejects(sub.ready, { code: 'unknown_topic' })
  assert.equal(errors[0].code, 'unknown_topic')
  await until(() => subConns(server)[0].ws.readyState === WebSocket.CLOSED, 2000, 'closed')
})

test('the last unsubscribe sends unsubscribe and closes the socket', async (t) => {
  const { client, server } = await setup(t)
  const sub = client.subscribe('orders', () => {})
  await sub.ready
  await sub.unsubscribe()
  const conn = subConns(server)[0]
  assert.equal(conn.requests.at(-1).a, 'unsubscribe')
  await until(() => conn.ws.readyState === WebSocket.CLOSED, 2000, 'closed')
  assert.equal(client.state, 'connected')
})

test('a subscribe that times out is tried again on a new socket, its subscriptions kept', async (t) => {
  let slow = true
  const { client, server, errors } = await setup(t, { subscribeTimeout: 50 }, {
    handle: (req, conn) => {
      if (req.a !== 'subscribe' || !slow) return false
      conn.subscribes.push(req.p)
      return true
    }
  })
  const sub = client.subscribe('orders', () => {}, { group: 'g' })
  await until(() => errors.some((e) => e.code === 'timeout'), 2000, 'the timeout reported')
  slow = false
  await sub.ready
  // At least one new socket (a loaded machine may time out more than once before slow is cleared).
  assert.ok(subConns(server).length >= 2, `got ${subConns(server).length} sockets, want a new one after the timeout`)
})

test('handlers of one topic are isolated: a throwing one stops no other, and is reported once all have finished', async (t) => {
  const { client, server, errors } = await setup(t)
  let finish
  const calls = []
  await client.subscribe('orders', (r) => {
    calls.push(`a${r.offset}`)
    if (r.offset === 0) throw new Error('a fails')
  }, { group: 'g', commit: 'client' }).ready
  await client.subscribe('orders', (r) => {
    calls.push(`b${r.offset}`)
    if (r.offset === 1) throw new Error('b fails')
    return new Promise((resolve) => { finish = resolve })
  }, { group: 'g', commit: 'client' }).ready
  const conn = subConns(server)[0]
  server.deliver(conn, [{ topic: 'orders', offset: 0 }])
  await until(() => finish)
  assert.deepEqual(calls, ['a0', 'b0'])
  await sleep(20)
  assert.equal(errors.length, 0, 'reported once every handler has finished')
  finish()
  await until(() => errors.length === 1)
  assert.equal(errors[0].cause.message, 'a fails')
  server.deliver(conn, [{ topic: 'orders', offset: 1 }])
  await until(() => errors.length === 2)
  assert.equal(errors[1].cause.message, 'b fails', 'the second handler failing counts too')
  errors[0].skip()
  errors[1].skip()
  await until(() => conn.acks.length === 1)
  assert.deepEqual(conn.acks, [{ t: 'orders', part: 0, offset: 1 }])
})
