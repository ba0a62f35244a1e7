import assert from 'node:assert/strict'
import { connect } from '../wskafka.js'
import { fakeServer, until, sleep, WebSocket, test } from './fake-server.js'

// A window or document stand-in that counts its listeners.
function target (props = {}) {
  const et = new EventTarget()
  const live = new Set()
  const add = et.addEventListener.bind(et)
  const remove = et.removeEventListener.bind(et)
  return Object.assign(et, props, {
    live,
    addEventListener (type, fn) { live.add(`${type}`); add(type, fn) },
    removeEventListener (type, fn) { live.delete(`${type}`); remove(type, fn) },
    fire (type, fields = {}) { et.dispatchEvent(Object.assign(new Event(type), fields)) }
  })
}

async function setup (t, opts = {}) {
  const server = await fakeServer()
  const window = target()
  const document = target({ visibilityState: 'visible' })
  const client = connect(server.url, { WebSocket, window, document, backoffBase: 10, backoffMax: 50, ...opts })
  t.after(async () => { client.close(); await server.close() })
  await until(() => client.state === 'connected')
  return { server, client, window, document }
}

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length

test('close() removes every global listener and every timer', async (t) => {
  const before = timeouts()
  const { server, client, window, document } = await setup(t, { pingInterval: 1000, backoffBase: 60000, backoffMax: 60000, random: () => 0.5, persist: 'k', storage: { getItem: () => null, setItem () {} } })
  assert.deepEqual([...window.live].sort(), ['offline', 'online', 'pagehide', 'pageshow'])
  assert.deepEqual([...document.live].sort(), ['freeze', 'resume', 'visibilitychange'])
  await client.subscribe('a', () => {}, { group: 'g' }).ready
  const b = client.subscribe('b', () => {}, { group: 'h' })
  await b.ready
  server.conns.find((c) => c.subscribes[0]?.consumer_group === 'h').ws.close(1011) // now waiting 30 s to retry
  await until(() => client.state === 'disconnected')
  server.handle = (req) => req.t === 'health' // a request pending with its timeout
  const pending = client.health()
  await until(() => server.requests().some((r) => r.t === 'health'))
  assert.ok(timeouts() > before)
  client.close()
  await assert.rejects(pending, { code: 'outcome_unknown' })
  assert.equal(window.live.size + document.live.size, 0)
  await until(() => timeouts() <= before, 2000, 'timers cleared')
})

test('pagehide with persisted (bfcache) closes the sockets; pageshow reconnects and resubscribes', async (t) => {
  const { server, client, window } = await setup(t)
  await client.subscribe('orders', () => {}).ready
  window.fire('pagehide', { persisted: true })
  assert.equal(client.state, 'disconnected')
  await until(() => server.conns.every((c) => c.ws.readyState === WebSocket.CLOSED), 2000, 'sockets closed')
  await sleep(60)
  assert.equal(server.conns.length, 2, 'no reconnect while in the bfcache')
  window.fire('pageshow', { persisted: true })
  await until(() => client.state === 'connected' && server.conns.length === 4)
  await until(() => server.conns.filter((c) => c.subscribes.length).length === 2, 2000, 'resubscribed')
})

test('freeze suspends, resume reconnects', async (t) => {
  const { server, client, document } = await setup(t)
  document.fire('freeze')
  assert.equal(client.state, 'disconnected')
  await sleep(60)
  assert.equal(server.conns.length, 1)
  document.fire('resume')
  await until(() => client.state === 'connected' && server.conns.length === 2)
})

test('online reconnects at once instead of waiting out the backoff', async (t) => {
  const { server, client, window } = await setup(t, { backoffBase: 60000, backoffMax: 60000, random: () => 0.5 })
  server.conns[0].ws.close(1011)
  await until(() => client.state === 'disconnected')
  window.fire('online')
  await until(() => client.state === 'connected' && server.conns.length === 2)
})

test('a page made visible checks its sockets with a ping at once', async (t) => {
  const { server, document } = await setup(t, { pingInterval: 60000 })
  document.visibilityState = 'hidden'
  document.fire('visibilitychange')
  document.visibilityState = 'visible'
  document.fire('visibilitychange')
  await until(() => server.requests().some((r) => r.t === 'ping'), 2000, 'a ping')
})

test('without window and document (Node) nothing is listened to', async (t) => {
  const server = await fakeServer()
  const client = connect(server.url, { WebSocket })
  t.after(async () => { client.close(); await server.close() })
  await until(() => client.state === 'connected')
  assert.equal(globalThis.window, undefined)
})

test('offline checks the open sockets with a ping', async (t) => {
  const { server, window } = await setup(t, { pingInterval: 60000 })
  window.fire('offline')
  await until(() => server.requests().some((r) => r.t === 'ping'), 2000, 'a ping')
})

test('the client state is the worst of its sockets', async (t) => {
  const { server, client } = await setup(t, { backoffBase: 60000, backoffMax: 60000, random: () => 0.5 })
  const states = []
  client.on('state', (s) => states.push(`${s.previous}>${s.state}`))
  await client.subscribe('orders', () => {}).ready
  assert.equal(client.state, 'connected')
  server.conns.find((c) => c.subscribes.length).ws.close(1011)
  await until(() => client.state === 'disconnected')
  await client.ping() // the request socket is still up
  assert.deepEqual(states, ['connected>connecting', 'connecting>connected', 'connected>disconnected'])
})

test('positions are saved when the page is hidden or unloads', async (t) => {
  const store = new Map()
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) }
  const { server, client, window, document } = await setup(t, { persist: 'p', storage })
  await client.subscribe('orders', () => {}).ready
  server.deliver(server.conns.find((c) => c.subscribes.length), [{ topic: 'orders', offset: 3 }])
  await until(() => client.positions()[Object.keys(client.positions())[0]]?.orders?.[0] === 4)
  assert.equal(store.get('p'), undefined, 'not yet: saves are spaced')
  document.visibilityState = 'hidden'
  document.fire('visibilitychange')
  assert.deepEqual(Object.values(JSON.parse(store.get('p'))), [{ orders: { 0: 4 } }])
  store.clear()
  window.fire('pagehide', { persisted: false })
  assert.deepEqual(Object.values(JSON.parse(store.get('p'))), [{ orders: { 0: 4 } }])
  assert.equal(client.state, 'connected', 'an unload that is not the bfcache closes nothing itself')
})
