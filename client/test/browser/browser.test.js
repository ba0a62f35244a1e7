// The library in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), loaded as
// <script type="module"> from the fake server: the browser's own WebSocket, the bfcache events, a reload
// that resumes from sessionStorage. Skipped when Chromium is not installed (apt-get install chromium).
//
//   npm run test:browser
/* global PageTransitionEvent */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { fakeServer, until } from '../fake-server.js'

const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const skip = existsSync(executablePath) ? false : `no Chromium at ${executablePath}`

const page = `<!doctype html>
<script type="module">
  import { connect } from '/wskafka.js'
  const got = []
  const client = connect(location.origin.replace('http', 'ws') + '/ws', { persist: 'positions', backoffBase: 10, reconnectSoon: 10 })
  client.subscribe('orders', (r) => { got.push([r.offset, r.value instanceof Uint8Array ? [...r.value] : r.value]) }, { mode: 'broadcast' })
  window.wsk = { client, got }
</script>`

test('in Chromium: the global WebSocket, bfcache events, a reload resuming from sessionStorage', { skip, timeout: 30000 }, async (t) => {
  const { chromium } = await import('playwright-core')
  const server = await fakeServer()
  server.files['/wskafka.js'] = ['text/javascript', readFileSync(new URL('../../wskafka.js', import.meta.url))]
  server.files['/'] = ['text/html', page]
  // The flags keep Chromium off the network (closed on test machines) and off the sandbox (run as root).
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.after(async () => {
    await browser.close()
    await server.close()
  })
  const tab = await browser.newPage()
  await tab.goto(server.http + '/')
  const subscribed = () => server.conns.filter((c) => c.subscribes.length)
  await until(() => subscribed().length === 1, 5000, 'subscribed')
  assert.equal(subscribed()[0].protocol, 'wskafka')

  const receipt = await tab.evaluate(() => window.wsk.client.publish('orders', new Uint8Array([255, 0, 128]), { key: 'k' }))
  assert.deepEqual(receipt, { topic: 'orders', partition: 0, offset: 0, timestamp: 1700000000123 })
  assert.deepEqual(server.requests().find((r) => r.t === 'notif').p, { t: 'orders', m: '/wCA', k: 'aw==', enc: 'base64' })

  server.deliver(subscribed()[0], [{ topic: 'orders', offset: 5, p: 'hello' }, { topic: 'orders', offset: 6, p: '/wCA', enc: 'base64' }])
  assert.deepEqual(await pollPage(tab, (n) => window.wsk.got.length === n, 2), [[5, 'hello'], [6, [255, 0, 128]]])

  // Into the bfcache and back: the sockets close, then come back and resubscribe from offset 7.
  await tab.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true })))
  assert.equal(await tab.evaluate(() => window.wsk.client.state), 'disconnected')
  await until(() => server.conns.every((c) => c.ws.readyState === 3), 5000, 'sockets closed')
  await tab.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })))
  await until(() => subscribed().length === 2, 5000, 'resubscribed')
  assert.deepEqual(subscribed()[1].subscribes[0].seek, { orders: { 0: 7 } })

  // A reload: the new page's client resumes from what sessionStorage kept.
  await tab.reload()
  await until(() => subscribed().length === 3, 5000, 'subscribed after the reload')
  assert.deepEqual(subscribed()[2].subscribes[0].seek, { orders: { 0: 7 } })
})

// Wait (bounded) until fn(arg) holds in the page, then return the records it got.
async function pollPage (tab, fn, arg) {
  await tab.waitForFunction(fn, arg, { timeout: 5000 })
  return tab.evaluate(() => window.wsk.got)
}
