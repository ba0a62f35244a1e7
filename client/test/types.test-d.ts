// The type test (npm run typecheck): the API as an application uses it, and what the types must refuse.
import { WebSocket as NodeWebSocket } from 'ws'
import { connect, backoff, fromBase64, toBase64, WskafkaError } from '@wskafka/client'
import type { Client, KafkaRecord, Receipt, State, Subscription, Gap, Positions } from '@wskafka/client'

// Browsers: the global WebSocket; Node 20: the ws package's.
const browser: Client = connect('wss://example.com/ws')
const client = connect(new URL('ws://127.0.0.1:8080/ws'), {
  WebSocket: NodeWebSocket,
  requestTimeout: 5000,
  queue: 100,
  persist: 'positions',
  storage: { getItem: (k) => null, setItem: (k, v) => {} },
  random: Math.random
})
connect('wss://example.com/ws', { WebSocket: globalThis.WebSocket })
// A token in the query string, renewed after close code 4001; or nothing, after renewing a cookie.
connect('wss://example.com/ws?token=t1', { credentials: async () => ({ url: 'wss://example.com/ws?token=t2' }) })
connect('wss://example.com/ws', { credentials: async () => { await fetch('/renew') } })
// @ts-expect-error a URL is a string or a URL
connect('wss://example.com/ws', { credentials: () => ({ url: 42 }) })

const state: State = client.state
const off: () => void = client.on('state', ({ state, previous }) => { const s: State = state; void previous })
off()
client.on('error', (e) => {
  const code: string = e.code
  if (e.code === 'handler_failed') { e.record?.offset; e.retry?.(); e.skip?.() }
})
client.on('gap', (g: Gap) => { const n: number = g.to - g.from })
client.on('retry', (r) => { const d: number = r.delay; const c: number = r.code })
// @ts-expect-error: no such event
client.on('message', () => {})
// @ts-expect-error: a gap has no `offset`
client.on('gap', (g) => g.offset)

async function use () {
  const receipt: Receipt = await client.publish('orders', { total: 12.5 }, { key: 'customer-42', headers: { source: 'web' } })
  const n: number = receipt.offset + receipt.partition + receipt.timestamp
  await client.publish('bin', new Uint8Array([255, 0, 128]), { partition: 1, timestamp: new Date() })
  await client.publish('tombstones', null, { key: 'customer-42' })
  client.send('orders', 'fire and forget')
  // @ts-expect-error: send() returns nothing to await on
  const r: Receipt = client.send('orders', 'x')
  // @ts-expect-error: a header value is a string or bytes
  await client.publish('orders', 'x', { headers: { n: 1 } })
  // @ts-expect-error: the topic is a string
  await client.publish(42, 'x')

  const sub: Subscription = client.subscribe(['orders'], async (rec: KafkaRecord) => {
    const v: string | Uint8Array | null = rec.value
    const k: string | Uint8Array | null = rec.key
    const o: number = rec.offset
  }, { group: 'billing', commit: 'client', from: 'earliest' })
  await sub.ready
  await sub.unsubscribe()
  client.subscribe('news', (rec) => { rec.topic }, { mode: 'broadcast', from: Date.now() })
  // @ts-expect-error: a broadcast has no group
  client.subscribe('news', () => {}, { mode: 'broadcast', group: 'g' })
  // @ts-expect-error: nor client commits
  client.subscribe('news', () => {}, { mode: 'broadcast', commit: 'client' })
  // @ts-expect-error: commit is 'auto' or 'client'
  client.subscribe('news', () => {}, { commit: 'manual' })
  // @ts-expect-error: a handler is required
  client.subscribe('news')

  const ms: number = await client.ping()
  const list = await client.listTopics()
  const first: string = list[0].topic
  const described = await client.describeTopics(['orders'], 'billing')
  const lag: number | undefined = described[0].partitions[0].lag
  await client.createTopics(['a', { name: 'b', partitions: 2, configs: { 'cleanup.policy': 'compact' } }])
  await client.deleteTopics(['a'])
  const h = await client.health()
  const raw: unknown = await client.request('topic', 'list')
  const pos: Positions = client.positions()

  try { await client.publish('x', 'y') } catch (e) {
    if (e instanceof WskafkaError && e.code === 'outcome_unknown') { const c: number | undefined = e.closeCode }
  }
  const d: number = backoff(3, 500, 30000)
  const b64: string = toBase64(new Uint8Array([1]))
  const bytes: Uint8Array = fromBase64(b64)
  // @ts-expect-error: state is read-only
  client.state = 'closed'
  client.close()
  browser.close()
}
void use
