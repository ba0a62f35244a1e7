// The library across a config reload of the real server (Caddy's POST /load): every record published before,
// during and after the reload reaches a client-commit group subscription and a broadcast subscription exactly
// once, and each subscription receives again soon after its 1012. Skipped unless WSKAFKA_URL and WSKAFKA_ADMIN
// (Caddy's admin API, http://host:port) are set; the e2e suite's TestClientLibrary sets both. With
// WSKAFKA_RECEIPTS, the receipts are written there as JSON, for the suite to hold them against Kafka (kcat).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { WebSocket } from 'ws'
import { connect } from '../../wskafka.js'

const url = process.env.WSKAFKA_URL
const admin = process.env.WSKAFKA_ADMIN
const skip = url && admin ? false : 'WSKAFKA_URL and WSKAFKA_ADMIN are not set'
const run = `js-reload-${Date.now()}-${randomUUID().slice(0, 8)}`

async function until (pred, ms, what) {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

// reload loads the running config again with every wskafka handler's write_timeout changed: a new config, so
// every socket of the old one is closed with 1012 (spread over its close_delay).
async function reload () {
  // Node's fetch sends Sec-Fetch-Mode, which makes Caddy's admin API check the Origin.
  const headers = { Origin: admin }
  const config = await (await fetch(`${admin}/config/`, { headers })).json()
  const visit = (v) => {
    if (Array.isArray(v)) v.forEach(visit)
    else if (v && typeof v === 'object') {
      if (v.handler === 'wskafka') v.write_timeout = (v.write_timeout ?? 10e9) + 1e9
      Object.values(v).forEach(visit)
    }
  }
  visit(config)
  const res = await fetch(`${admin}/load`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(config) })
  assert.equal(res.status, 200, await res.text())
}

test('a reload: nothing missed, nothing twice, in a client-commit group and a broadcast', { skip, timeout: 90000 }, async (t) => {
  const topic = `${run}-t`
  const client = connect(url, { WebSocket, requestTimeout: 30000 })
  t.after(() => client.close())
  const errors = []
  client.on('error', (e) => errors.push(e))
  await client.createTopics([{ name: topic, partitions: 2 }])

  const got = { group: [], broadcast: [] }
  const at = { group: [], broadcast: [] } // when each record arrived
  const restarted = []
  client.on('retry', (r) => { if (r.code === 1012) restarted.push({ at: Date.now(), socket: r.socket }) })
  const group = client.subscribe(topic, async (r) => {
    await new Promise((resolve) => setTimeout(resolve, 1)) // acknowledged after an async handler
    got.group.push(r.value); at.group.push(Date.now())
  }, { group: `${run}-g`, commit: 'client', from: 'earliest' })
  const broadcast = client.subscribe(topic, (r) => { got.broadcast.push(r.value); at.broadcast.push(Date.now()) }, { mode: 'broadcast', from: 'earliest' })
  await Promise.all([group.ready, broadcast.ready])

  let sent = 0
  let publishing = true
  const retried = new Set() // values published again after an unknown outcome: they may be in Kafka twice
  const receipts = []
  const publisher = (async () => {
    while (publishing) {
      const value = String(sent)
      try {
        const receipt = await client.publish(topic, value, { key: value })
        receipts.push({ value, partition: receipt.partition, offset: receipt.offset })
        sent++
      } catch (e) {
        if (e.code !== 'outcome_unknown' && e.code !== 'not_connected') throw e
        retried.add(value)
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  await until(() => got.group.length > 20 && got.broadcast.length > 20, 30000, 'records before the reload')
  const reloaded = Date.now()
  await reload()
  await until(() => restarted.length >= 3, 30000, 'the 1012 of every socket')
  const after = (name) => at[name].find((time) => time > restarted.at(-1).at)
  await until(() => after('group') && after('broadcast'), 30000, 'records after the reload')
  await new Promise((resolve) => setTimeout(resolve, 300))
  publishing = false
  await publisher
  await until(() => new Set(got.group).size >= sent && new Set(got.broadcast).size >= sent, 30000, 'every record sent')

  for (const [name, values] of Object.entries(got)) {
    const counts = new Map()
    for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
    for (const [v, n] of counts) assert.ok(n === 1 || retried.has(v), `${name}: record ${v} delivered ${n} times`)
    for (let i = 0; i < sent; i++) assert.ok(counts.has(String(i)), `${name}: record ${i} missed`)
  }
  assert.deepEqual(errors, [])
  if (process.env.WSKAFKA_RECEIPTS) writeFileSync(process.env.WSKAFKA_RECEIPTS, JSON.stringify({ topic, receipts }))
  const since = restarted.at(-1).at
  console.log(`reload: ${sent} records, ${retried.size} published again after an unknown outcome; sockets closed with 1012 ` +
    `${restarted.map((r) => r.at - reloaded).join(', ')} ms after POST /load; first record after the last 1012: ` +
    `group ${after('group') - since} ms, broadcast ${after('broadcast') - since} ms`)
})
