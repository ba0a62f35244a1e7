// The demo page (client/demo/) in headless Chromium against a real Caddy with wskafka and its embedded broker.
//
//   cd client/browser && npm install && npm test
//
// CADDY: the binary (default: the repository root's ./caddy, `go build -o caddy ./cmd/caddy`).
// CHROMIUM: the browser (default /usr/bin/chromium, Debian's `chromium` package).
// SCREENSHOTS=1: save the screenshots in screenshots/ (otherwise in a temporary directory).
/* global cell */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const clientDir = resolve(here, '..')
const caddyPath = resolve(process.env.CADDY ?? join(here, '../../caddy'))
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const skip = !existsSync(caddyPath)
  ? `no Caddy at ${caddyPath} (go build -o caddy ./cmd/caddy, or set CADDY)`
  : !existsSync(executablePath)
      ? `no Chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM)`
      : !existsSync(join(clientDir, 'wskafka.js')) ? 'no client/wskafka.js (the library the page imports)' : false

const DESKTOP = { width: 1280, height: 800 }
const PHONE = { width: 390, height: 844 }
const scratch = mkdtempSync(join(tmpdir(), 'wskafka-demo-'))
let admin // Caddy's admin API, for the reload
let caddyfile // the config served, loaded again with a change for the reload
const shots = process.env.SCREENSHOTS ? join(here, 'screenshots') : join(scratch, 'screenshots')
mkdirSync(shots, { recursive: true })

let caddy, origin, browser
const logs = []

before(async () => {
  if (skip) return
  const port = await freePort()
  origin = `http://127.0.0.1:${port}`
  admin = `http://127.0.0.1:${await freePort()}`
  const config = join(scratch, 'Caddyfile')
  // Spaces, not tabs (standard's no-tabs); Caddy only notes the Caddyfile is not `caddy fmt`ed.
  // The page and the library as users get them: from the binary's embedded file system (caddy.fs.wskafka), on
  // the socket's route, as Caddyfile.example serves them.
  caddyfile = `{
  admin ${admin.replace('http://', '')}
  filesystem wskafka-client wskafka
}
${origin} {
  route {
    wskafka /ws {
      brokers embedded
      close_delay 1s
      write_timeout 10s
      producer {
        mq_interval 0
      }
      consumer {
        mq_interval 0
      }
    }
    file_server {
      fs wskafka-client
      etag_file_extensions .etag
    }
  }
}
`
  writeFileSync(config, caddyfile)
  caddy = spawn(caddyPath, ['run', '--config', config, '--adapter', 'caddyfile'], { stdio: ['ignore', 'pipe', 'pipe'] })
  caddy.stdout.on('data', (b) => logs.push(String(b)))
  caddy.stderr.on('data', (b) => logs.push(String(b)))
  await until(async () => (await fetch(origin + '/demo/').catch(() => null))?.ok, 15000, () => `Caddy serving ${origin}/demo/\n${logs.join('')}`)
  const { chromium } = await import('playwright-core')
  // Off the network (closed on test machines) and off the sandbox (run as root).
  browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
})

after(async () => {
  await browser?.close()
  if (caddy && caddy.exitCode === null) {
    const exited = new Promise((resolve) => caddy.once('exit', resolve))
    caddy.kill('SIGTERM')
    const timer = setTimeout(() => caddy.kill('SIGKILL'), 10000)
    await exited
    clearTimeout(timer)
  }
  rmSync(scratch, { recursive: true, force: true })
})

test('the page creates its topic, connects, publishes with receipts and shows the records arriving', { skip, timeout: 90000 }, async (t) => {
  const { page } = await open(t, names('live'))
  await ownedBy(page, [0, 1, 2])
  assert.equal(await page.textContent('#state'), 'connected')
  assert.equal(await page.textContent('#topic-name'), page.names.topic)

  // One record with a key, then ten with the same key: one partition, consecutive offsets.
  await page.fill('#key', 'alice')
  await page.click('#publish')
  await page.waitForSelector('#receipts tr[data-offset]', { timeout: 10000 })
  const [first] = await receipts(page)
  assert.equal(first.offset, 0, 'the first record of a new topic')
  assert.ok([0, 1, 2].includes(first.partition), `got partition ${first.partition}, want one of 0, 1, 2`)
  assert.match(first.timestamp, /^\d\d:\d\d:\d\d\.\d{3}$/)
  await page.click('#publish-10')
  await page.waitForFunction(() => document.querySelectorAll('#receipts tr[data-offset]').length === 6, null, { timeout: 10000 })
  const shown = await receipts(page)
  assert.deepEqual(shown.map((r) => r.partition), Array(6).fill(first.partition), 'equal keys share a partition')
  assert.deepEqual(shown.map((r) => r.offset), [10, 9, 8, 7, 6, 5])

  // The subscriber reads them back: the counters of that partition, and the chart's legend.
  await page.waitForFunction((p) => cell(p, 1) === '11', first.partition, { timeout: 10000 })
  await page.waitForFunction((p) => /^(?!0\/s)[\d.]+\/s$/.test(document.querySelectorAll('#legend li b')[p].textContent), first.partition, { timeout: 5000 })

  // Numbered records move every partition's line.
  await page.click('#generate')
  await page.waitForFunction(() => [...document.querySelectorAll('#legend b')].every((b) => b.textContent !== '0/s'), null, { timeout: 10000 })
  // (Screenshots: enough of a minute for the chart to show something.)
  const n = process.env.SCREENSHOTS ? 150 : 20
  await page.waitForFunction((n) => window.demo.totals.sent >= n, n, { timeout: 30000 })
  assert.ok(await chartHasInk(page), 'the chart draws lines')
  await page.evaluate(() => scrollTo(0, 0))
  await page.screenshot({ path: join(shots, 'desktop.png') })
  await page.screenshot({ path: join(shots, 'desktop-full.png'), fullPage: true })
  await page.click('#generate')
  await page.waitForFunction(() => window.demo.totals.ownReceived === window.demo.totals.sent, null, { timeout: 10000 })
  assert.deepEqual(await totals(page), { missing: 0, duplicated: 0 })

  // The same topic at a phone's width, in a group of its own (so it reads every partition).
  const phone = (await open(t, { ...page.names, group: page.names.group + '-phone' }, PHONE)).page
  await ownedBy(phone, [0, 1, 2])
  await phone.fill('#key', 'dave')
  await phone.click('#publish')
  await phone.waitForSelector('#receipts tr[data-offset]', { timeout: 10000 })
  await phone.click('#generate')
  await phone.waitForFunction(() => window.demo.totals.ownReceived >= 30, null, { timeout: 15000 })
  await phone.waitForFunction(() => document.querySelectorAll('#lag tr').length === 3, null, { timeout: 10000 })
  await phone.evaluate(() => scrollTo(0, 0))
  await phone.screenshot({ path: join(shots, 'phone.png') })
  await phone.click('#generate')
  assert.deepEqual(page.errors.concat(phone.errors), [])
})

test('two tabs in one consumer group read disjoint partitions that cover the topic', { skip, timeout: 90000 }, async (t) => {
  const n = names('group')
  const a = (await open(t, n)).page
  await ownedBy(a, [0, 1, 2])
  const b = (await open(t, n)).page
  // The second member's join rebalances the group: each tab shows its share, from its assigned frames.
  await until(async () => {
    const [pa, pb] = [await owned(a), await owned(b)]
    return pa.length && pb.length && pa.every((p) => !pb.includes(p)) && [...pa, ...pb].sort().join() === '0,1,2'
  }, 40000, async () => `tabs own ${JSON.stringify(await owned(a))} and ${JSON.stringify(await owned(b))}`)
  const [pa, pb] = [await owned(a), await owned(b)]
  await a.waitForFunction(() => /^[1-9]\d* rebalance/.test(document.querySelector('#rebalances').textContent), null, { timeout: 5000 })

  // Each record reaches one of them, on the partitions it reads.
  for (const [page, key] of [[a, 'alice'], [b, 'carol']]) {
    await page.fill('#key', key)
    await page.click('#publish')
    await page.waitForSelector('#receipts tr[data-offset]', { timeout: 10000 })
  }
  await a.click('#generate')
  const count = process.env.SCREENSHOTS ? 120 : 30
  await a.waitForFunction((n) => window.demo.totals.sent >= n, count, { timeout: 30000 })
  await a.click('#generate')
  await until(async () => {
    const sent = await a.evaluate(() => window.demo.totals.sent) + 2
    const got = await a.evaluate(() => window.demo.totals.received) + await b.evaluate(() => window.demo.totals.received)
    return got === sent
  }, 15000, 'the two tabs together received every record sent')
  for (const [page, mine] of [[a, pa], [b, pb]]) {
    const per = await page.evaluate(() => Object.fromEntries(Object.entries(window.demo.stats).map(([p, s]) => [p, s.received])))
    for (const [p, received] of Object.entries(per)) {
      if (!mine.includes(+p)) assert.equal(received, 0, `partition ${p} is the other tab's`)
    }
    assert.deepEqual(await totals(page), { missing: 0, duplicated: 0 })
  }
  for (const page of [a, b]) await page.evaluate(() => scrollTo(0, 0))
  await a.screenshot({ path: join(shots, 'desktop-group-tab1.png') })
  await b.screenshot({ path: join(shots, 'desktop-group-tab2.png') })
  assert.deepEqual(a.errors.concat(b.errors), [])
})

test('two tabs of one browser in a group, each cut in turn: every record reaches a tab, and the page counts those that reached both', { skip, timeout: 120000 }, async (t) => {
  const n = names('tabs')
  const context = await browser.newContext({ viewport: DESKTOP })
  t.after(() => context.close())
  const [a, b] = [await tab(context, n), await tab(context, n)]
  const wires = [watchFrames(a, n.topic), watchFrames(b, n.topic)]
  await until(async () => (await owned(a)).length && (await owned(b)).length, 40000, 'the group split between the tabs')
  await a.click('#generate')
  await a.waitForFunction(() => window.demo.totals.sent >= 20, null, { timeout: 15000 })
  // Each cut hands the tab's partitions to the other and back (to whichever tab the next assignment says).
  for (const page of [a, b]) {
    await page.click('#cut')
    await page.waitForFunction(() => window.demo.state === 'connected' && window.demo.totals.reconnects >= 1, null, { timeout: 30000 })
    await a.waitForFunction((n) => window.demo.totals.sent >= n, await a.evaluate(() => window.demo.totals.sent + 20), { timeout: 15000 })
  }
  await a.click('#generate')
  // A rebalance hands partitions over at least once: what both tabs received, less what reached both
  // (the BroadcastChannel count, the same in both tabs), is what was sent.
  const sums = async () => {
    const counts = () => ({ totals: window.demo.totals, across: window.demo.across })
    const [x, y] = [await a.evaluate(counts), await b.evaluate(counts)]
    return { sent: x.totals.sent, unique: x.totals.received + y.totals.received - x.across, across: [x.across, y.across] }
  }
  // As in the cut tests below, the wait covers a rejoin that waits for the other member (up to rebalance_timeout,
  // 30 s). The page's group commits what onRecord handled (commit: 'client'): a record written to a tab's socket
  // as it was cut, and dropped by the closing browser, is read again by the tab that takes the partition.
  await until(async () => {
    const v = await sums()
    return v.sent === v.unique && v.across[0] === v.across[1]
  }, 40000, () => {}).catch(() => {})
  const v = await sums()
  t.diagnostic(`records that reached both tabs: ${v.across[0]}; sent ${v.sent}, reached a tab ${v.unique}`)
  assert.ok(v.unique === v.sent && v.across[0] === v.across[1],
    `every record counted once: ${JSON.stringify({ ...v, tabs: [await totals(a), await totals(b)] })}\n${whereRecordsWent(wires)}`)
  for (const page of [a, b]) assert.deepEqual(await totals(page), { missing: 0, duplicated: 0 })
  assert.deepEqual(a.errors.concat(b.errors), [])
})

for (const mode of ['group', 'broadcast']) {
  test(`${mode}: cut the connection while records flow; after the reconnect 0 missing, 0 duplicated`, { skip, timeout: 90000 }, async (t) => {
    const { page } = await open(t, names('cut-' + mode))
    await ownedBy(page, [0, 1, 2])
    if (mode === 'broadcast') {
      // The toggle: the group subscription ends, a broadcast one starts (its own assigned frame).
      await page.click('#mode-broadcast')
      assert.equal(await page.getAttribute('#mode-broadcast', 'aria-checked'), 'true')
      await page.waitForFunction(() => /subscribed, broadcast/.test(document.querySelector('#events').textContent), null, { timeout: 10000 })
      await ownedBy(page, [0, 1, 2])
      // One socket reads the topic: the group one is gone.
      await page.waitForFunction(async (topic) => {
        const { consumers } = await window.demo.producer.health()
        return consumers.filter((c) => c.topics.includes(topic)).length === 1
      }, page.names.topic, { timeout: 10000, polling: 250 })
      assert.match(await page.textContent('#lag-hint'), /end offsets/)
    }
    await page.$eval('#rate', (r) => { r.value = '20'; r.dispatchEvent(new Event('input')) })
    await page.click('#generate')
    await page.waitForFunction(() => window.demo.totals.ownReceived >= 20, null, { timeout: 15000 })

    // Offline for 3 s while the publisher (another client, not cut) goes on.
    await page.click('#cut')
    await page.waitForFunction(() => document.querySelector('#state').dataset.state === 'disconnected', null, { timeout: 2000 })
    const sentWhileDown = await page.evaluate(async () => {
      const before = window.demo.totals.sent
      await new Promise((resolve) => setTimeout(resolve, 2000))
      return window.demo.totals.sent - before
    })
    assert.ok(sentWhileDown >= 10, `got ${sentWhileDown} records sent while disconnected, want at least 10`)
    await page.waitForFunction(() => window.demo.state === 'connected' && window.demo.totals.reconnects >= 1, null, { timeout: 30000 })
    await page.waitForFunction(() => document.querySelector('#state').textContent === 'connected', null, { timeout: 5000 })
    const resumed = await page.evaluate(() => window.demo.totals.ownReceived)
    await page.waitForFunction((n) => window.demo.totals.ownReceived >= n + 20, resumed, { timeout: 15000 })
    await page.click('#generate')
    // Everything sent arrives (or the wait ends, and the counters say what went wrong). The wait covers a group
    // rejoin that waits out the old member's session (session_timeout), as after a cut the server sees late.
    await page.waitForFunction(() => window.demo.totals.ownReceived === window.demo.totals.sent, null, { timeout: 40000 }).catch(() => {})
    const sent = await page.evaluate(() => window.demo.totals.sent)
    assert.deepEqual({ ...await totals(page), received: await page.evaluate(() => window.demo.totals.ownReceived) }, { missing: 0, duplicated: 0, received: sent })
    for (const p of [0, 1, 2]) {
      // The resume is exact: the server sent nothing twice (so the library dropped nothing), and nothing is gone.
      assert.equal(await page.evaluate((p) => cell(p, 4), p), '0', `records of partition ${p} the server delivered again`)
      assert.equal(await page.evaluate((p) => cell(p, 5), p), '0', `gaps of partition ${p}`)
    }
    assert.equal(await owned(page).then((o) => o.join()), '0,1,2', 'the same partitions after the reconnect')
    if (mode === 'group') {
      // The resumed member commits: the lag panel comes back to 0 on every partition.
      await page.waitForFunction(() => [...document.querySelectorAll('#lag tr')].map((tr) => tr.cells[3].textContent).join() === '0,0,0', null, { timeout: 10000 })
    }
    if (mode === 'group') {
      await page.evaluate(() => document.querySelector('.subscription').scrollIntoView())
      await page.screenshot({ path: join(shots, 'desktop-after-cut.png') })
    } else {
      await page.setViewportSize(PHONE)
      await page.evaluate(() => document.querySelector('.resume').scrollIntoView())
      await page.screenshot({ path: join(shots, 'phone-after-cut.png') })
    }
    assert.deepEqual(page.errors, [])
  })
}

// A page of the demo with its own topic and group, in a context of its own; closed after the test.
async function open (t, n, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: viewport === PHONE ? 2 : 1, isMobile: viewport === PHONE, hasTouch: viewport === PHONE })
  t.after(() => context.close())
  return { context, page: await tab(context, n) }
}

test('a config reload while records flow: every socket closed with 1012 comes back, 0 missing, 0 duplicated', { skip, timeout: 90000 }, async (t) => {
  const { page } = await open(t, names('reload'))
  await ownedBy(page, [0, 1, 2])
  await page.$eval('#rate', (r) => { r.value = '20'; r.dispatchEvent(new Event('input')) })
  await page.click('#generate')
  await page.waitForFunction(() => window.demo.totals.ownReceived >= 20, null, { timeout: 15000 })
  // A new config (write_timeout changed): the old one's sockets close with 1012 within its close_delay.
  caddyfile = caddyfile.replace(/write_timeout \d+s/, `write_timeout ${10 + Math.floor(Math.random() * 50)}s`)
  const res = await fetch(`${admin}/load`, { method: 'POST', headers: { Origin: admin, 'Content-Type': 'text/caddyfile' }, body: caddyfile })
  assert.equal(res.status, 200, await res.text())
  await page.waitForFunction(() => window.demo.totals.reconnects >= 1 && window.demo.state === 'connected', null, { timeout: 30000 })
  const resumed = await page.evaluate(() => window.demo.totals.ownReceived)
  await page.waitForFunction((n) => window.demo.totals.ownReceived >= n + 20, resumed, { timeout: 15000 })
  await page.click('#generate')
  // A publish in flight when the close frame came has no reply (outcome unknown) but was read, so it is in
  // Kafka: received counts it, sent does not. Nothing is missing either way.
  await page.waitForFunction(() => window.demo.totals.ownReceived >= window.demo.totals.sent, null, { timeout: 15000 }).catch(() => {})
  const { sent, unknown, ownReceived } = await page.evaluate(() => window.demo.totals)
  assert.deepEqual(await totals(page), { missing: 0, duplicated: 0 })
  assert.ok(ownReceived >= sent && ownReceived <= sent + unknown, `received ${ownReceived}, sent ${sent} with a reply and ${unknown} without`)
  t.diagnostic(`reload: ${sent} records, ${unknown} without a reply, ${await page.evaluate(() => window.demo.totals.reconnects)} reconnects`)
  assert.deepEqual(page.errors, [])
})

// The library's own reload scenario (client/test/live/reload.test.js) in the browser: the page's module imports
// /wskafka.js from the demo origin and uses the browser's WebSocket, a client-commit group and a broadcast read
// the same topic while the page publishes, and a config reload closes every socket with 1012.
test('the library in the page across a reload: a client-commit group and a broadcast, nothing missed, nothing twice', { skip, timeout: 90000 }, async (t) => {
  const context = await browser.newContext({ viewport: DESKTOP })
  t.after(() => context.close())
  const page = await context.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(`${origin}/wskafka.d.ts`) // any page of the origin; the module is imported below
  const n = names('lib-reload')
  await page.evaluate(async (n) => {
    const { connect } = await import('/wskafka.js')
    const client = connect(location.origin.replace(/^http/, 'ws') + '/ws', { reconnectSoon: 200 })
    const s = { sent: 0, retried: [], group: [], broadcast: [], restarts: 0, errors: [], publishing: true }
    window.lib = s
    client.on('retry', (r) => { if (r.code === 1012) s.restarts++ })
    client.on('error', (e) => s.errors.push(e.code))
    await client.createTopics([{ name: n.topic, partitions: 3 }])
    await Promise.all([
      client.subscribe(n.topic, async (r) => { await new Promise((resolve) => setTimeout(resolve, 1)); s.group.push(r.value) }, { group: n.group, commit: 'client', from: 'earliest' }).ready,
      client.subscribe(n.topic, (r) => { s.broadcast.push(r.value) }, { mode: 'broadcast', from: 'earliest' }).ready
    ])
    ;(async () => {
      while (s.publishing) {
        const value = String(s.sent)
        try {
          await client.publish(n.topic, value, { key: value })
          s.sent++
        } catch (e) {
          s.retried.push(value) // unknown outcome: published again, perhaps twice in Kafka
        }
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
  }, n)
  await page.waitForFunction(() => window.lib.group.length > 20 && window.lib.broadcast.length > 20, null, { timeout: 30000 })
  caddyfile = caddyfile.replace(/write_timeout \d+s/, `write_timeout ${10 + Math.floor(Math.random() * 50)}s`)
  const res = await fetch(`${admin}/load`, { method: 'POST', headers: { Origin: admin, 'Content-Type': 'text/caddyfile' }, body: caddyfile })
  assert.equal(res.status, 200, await res.text())
  await page.waitForFunction(() => window.lib.restarts >= 3, null, { timeout: 30000 })
  const after = await page.evaluate(() => window.lib.sent)
  await page.waitForFunction((n) => window.lib.sent >= n + 20, after, { timeout: 30000 })
  await page.evaluate(() => { window.lib.publishing = false })
  await page.waitForFunction(() => {
    const s = window.lib
    return new Set(s.group).size >= s.sent && new Set(s.broadcast).size >= s.sent
  }, null, { timeout: 30000 }).catch(() => {})
  const s = await page.evaluate(() => window.lib)
  for (const name of ['group', 'broadcast']) {
    const counts = new Map()
    for (const v of s[name]) counts.set(v, (counts.get(v) ?? 0) + 1)
    for (const [v, c] of counts) assert.ok(c === 1 || s.retried.includes(v), `${name}: record ${v} delivered ${c} times`)
    for (let i = 0; i < s.sent; i++) assert.ok(counts.has(String(i)), `${name}: record ${i} missed`)
  }
  assert.deepEqual(s.errors.filter((c) => c !== 'outcome_unknown'), [])
  assert.deepEqual(errors, [])
  t.diagnostic(`library in Chromium across a reload: ${s.sent} records, ${s.restarts} sockets closed with 1012, ${s.retried.length} published again`)
})

// The notifications of `topic` that reached the browser's network stack on each of the page's sockets (what the
// page's script may not have seen, if they came after it closed the socket), and when each socket closed.
function watchFrames (page, topic) {
  const sockets = []
  page.on('websocket', (ws) => {
    const w = { url: ws.url(), opened: Date.now(), closed: undefined, records: [] }
    sockets.push(w)
    ws.on('framereceived', ({ payload }) => {
      let frame
      try { frame = JSON.parse(payload) } catch { return }
      for (const x of Array.isArray(frame) ? frame : []) {
        if (x.t === 'notif' && x.topic === topic) w.records.push({ part: x.part, offset: x.offset, at: Date.now() })
      }
    })
    ws.on('close', () => { w.closed = Date.now() })
  })
  return sockets
}

// For a failure message: per partition, the offsets no socket of either tab received, and the records that
// reached a socket in its last second.
function whereRecordsWent (wires) {
  const got = new Map() // partition → offsets received by some socket
  const late = []
  wires.forEach((sockets, tab) => sockets.forEach((w, i) => {
    for (const r of w.records) {
      if (!got.has(r.part)) got.set(r.part, new Set())
      got.get(r.part).add(r.offset)
      if (w.closed !== undefined && w.closed - r.at < 1000) late.push(`tab ${tab} socket ${i}: P${r.part}@${r.offset} ${w.closed - r.at} ms before its close`)
    }
  }))
  const parts = [...got].sort((x, y) => x[0] - y[0]).map(([p, offsets]) => {
    const max = Math.max(...offsets)
    const gaps = []
    for (let o = 0; o <= max; o++) if (!offsets.has(o)) gaps.push(o)
    return `P${p}: offsets to ${max}, none received: [${gaps.join(', ')}]`
  })
  return [...parts, ...late].join('\n')
}

// A tab of the demo in `context`.
async function tab (context, n) {
  const page = await context.newPage()
  page.errors = []
  page.names = n
  page.on('pageerror', (e) => page.errors.push(e.message))
  const q = new URLSearchParams({ topic: n.topic, group: n.group, ...(n.mode ? { mode: n.mode } : {}) })
  await page.goto(`${origin}/demo/?${q}`)
  // The cell of a partition's row in the checks table: 1 received, 2 missing, 3 duplicated, 4 dropped, 5 gaps.
  await page.evaluate(() => {
    window.cell = (p, i) => document.querySelector(`#checks tr[data-partition="${p}"]`)?.cells[i].textContent
  })
  return page
}

function names (what) {
  const id = what + '-' + Math.random().toString(36).slice(2, 8)
  return { topic: 'demo-' + id, group: 'demo-' + id }
}

const owned = (page) => page.evaluate(() => [...document.querySelectorAll('#owned li[data-owned="true"]')].map((li) => +li.dataset.partition))

// Wait until the page shows it reads `want` (all three partitions; [] only needs the panel drawn).
async function ownedBy (page, want, why = 'the partitions this tab reads') {
  await page.waitForFunction((want) => {
    const lis = [...document.querySelectorAll('#owned li')]
    const mine = lis.filter((li) => li.dataset.owned === 'true').map((li) => +li.dataset.partition)
    return lis.length === 3 && (want.length ? mine.join() === want.join() : true)
  }, want, { timeout: 20000 }).catch(async (e) => {
    throw new Error(`${why}: got ${JSON.stringify(await owned(page))}, want ${JSON.stringify(want)}: ${e.message}`)
  })
}

const receipts = (page) => page.$$eval('#receipts tr[data-offset]', (rows) => rows.map((r) => ({
  partition: +r.dataset.partition,
  offset: +r.dataset.offset,
  timestamp: r.cells[3].textContent
})))

const totals = (page) => page.evaluate(() => ({
  missing: +document.querySelector('#totals [data-k="missing"]').textContent,
  duplicated: +document.querySelector('#totals [data-k="duplicated"]').textContent
}))

// Some pixels of the chart's plot are not transparent.
const chartHasInk = (page) => page.evaluate(() => {
  const c = document.querySelector('#rate-chart')
  const d = c.getContext('2d').getImageData(Math.floor(c.width * 0.6), 0, Math.floor(c.width * 0.4), c.height).data
  let ink = 0
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++
  return ink > 500
})

function freePort () {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

// Poll fn until it holds, at most `ms`; the message says what was awaited.
async function until (fn, ms, what) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? await what() : what}`)
}
