// The library against a real wskafka (Caddy and Kafka), with the protocol extensions (ping, the wskafka
// subprotocol, assigned, broadcast seek). Skipped unless WSKAFKA_URL is set:
//
//   WSKAFKA_URL=ws://127.0.0.1:8080/ws npm run test:live
//
// Topics and groups are named uniquely per run. Every wait is bounded.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { WebSocket } from 'ws'
import { connect } from '../../wskafka.js'

const url = process.env.WSKAFKA_URL
const skip = url ? false : 'WSKAFKA_URL is not set'
const run = `js-${Date.now()}-${randomUUID().slice(0, 8)}`

async function until (pred, ms, what) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function open (t, opts = {}) {
  const client = connect(url, { WebSocket, requestTimeout: 30000, ...opts })
  const errors = []
  client.on('error', (e) => errors.push(e))
  t.after(() => client.close())
  return { client, errors }
}

test('ping, topics, a publish with a receipt, binary values, a group with client acks', { skip, timeout: 60000 }, async (t) => {
  const { client, errors } = open(t)
  assert.equal(typeof await client.ping(), 'number')
  const topic = `${run}-orders`
  await client.createTopics([{ name: topic, partitions: 1 }])
  const receipt = await client.publish(topic, 'hello', { key: 'k', headers: { source: 'js' } })
  assert.equal(receipt.topic, topic)
  assert.equal(receipt.partition, 0)
  assert.equal(receipt.offset, 0)
  assert.equal(typeof receipt.timestamp, 'number')
  await client.publish(topic, new Uint8Array([255, 0, 128]))

  const got = []
  const sub = client.subscribe(topic, async (r) => { got.push(r) }, { group: `${run}-g`, commit: 'client', from: 'earliest' })
  await sub.ready
  await until(() => got.length === 2, 30000, 'two records')
  assert.deepEqual([got[0].value, got[0].key, got[0].headers], ['hello', 'k', { source: 'js' }])
  assert.deepEqual(got[1].value, new Uint8Array([255, 0, 128]))
  await new Promise((resolve) => setTimeout(resolve, 200)) // acks are answered only when they fail
  assert.deepEqual(errors, [])
})

test('a broadcast resumes from persisted positions: no duplicate, no gap', { skip, timeout: 60000 }, async (t) => {
  const topic = `${run}-news`
  const store = new Map()
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) }
  const first = open(t, { persist: 'live', storage })
  await first.client.createTopics([{ name: topic, partitions: 1 }])
  for (const v of ['a', 'b', 'c']) await first.client.publish(topic, v)
  const seen = []
  await first.client.subscribe(topic, (r) => { seen.push(r.value) }, { mode: 'broadcast', from: 'earliest' }).ready
  await until(() => seen.length === 3, 30000, 'a, b, c')
  first.client.close()

  const second = open(t, { persist: 'live', storage })
  const gaps = []
  second.client.on('gap', (g) => gaps.push(g))
  for (const v of ['d', 'e']) await second.client.publish(topic, v)
  const again = []
  await second.client.subscribe(topic, (r) => { again.push(r.value) }, { mode: 'broadcast', from: 'earliest' }).ready
  await until(() => again.length >= 2, 30000, 'd, e')
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.deepEqual(again, ['d', 'e'])
  assert.deepEqual(gaps, [])
  assert.deepEqual(second.errors, [])
})
