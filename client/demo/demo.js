// The wskafka demo: one client publishes (the form, and numbered records), another subscribes and checks
// what arrives. The page is served from the gateway's origin; ?ws= overrides the socket URL, ?topic=,
// ?group= and ?mode=broadcast the rest.
import { connect } from '../wskafka.js'
import { rateChart } from './chart.js'
import { wire } from './wire.js'

const params = new URLSearchParams(location.search)
const wsUrl = params.get('ws') ?? `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`
const topic = params.get('topic') ?? 'demo'
const group = params.get('group') ?? 'wskafka-demo'
const PARTITIONS = 3 // of the topic, when the page creates it
const SECONDS = 60 // of the chart
const CUT_MS = 3000 // how long "cut the connection" keeps the subscriber offline
// Keys, not partitions: murmur2 puts 3 of them on partition 0, 7 on 1 and 5 on 2.
const KEYS = Array.from({ length: 15 }, (_, i) => `sensor-${i + 1}`)
const PALETTE = ['#60a5fa', '#f59e0b', '#34d399', '#f472b6', '#a78bfa', '#22d3ee', '#fb7185', '#a3e635']
// This tab's name in the numbered records it sends.
const src = 'tab-' + Math.random().toString(36).slice(2, 6)

const $ = (sel) => document.querySelector(sel)
const colour = (p) => PALETTE[p % PALETTE.length]
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props)
  e.append(...children)
  return e
}
const chip = (p) => el('span', { className: 'pchip', style: `--c:${colour(p)}`, textContent: `P${p}` })
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false })
const stamp = (ms) => clock(ms) + '.' + String(ms % 1000).padStart(3, '0')

// What the page knows.
let partitions = [...Array(PARTITIONS).keys()]
let mode = params.get('mode') === 'broadcast' ? 'broadcast' : 'group'
let owned = new Map() // partition → start offset of the last assigned frame
const nextOffset = new Map() // partition → the offset after the last record this tab received
let rebalances = 0
let feedSocket = null // the socket of the last assigned frame: the subscription's
let stats = new Map() // partition → { received, missing, duplicated, wire, handled, gaps }
let seqs = new Map() // src + key → next seq expected
let keyPartition = new Map() // src + key → partition
const totals = { sent: 0, received: 0, reconnects: 0, ownReceived: 0, unknown: 0 } // unknown: publishes without a reply
const rates = new Map() // partition → completed seconds, oldest first
const current = new Map() // partition → records in the second in progress
let sub = null

const st = (p) => {
  let s = stats.get(p)
  if (!s) stats.set(p, (s = { received: 0, missing: 0, duplicated: 0, wire: 0, handled: 0, gaps: 0 }))
  return s
}

// Two clients, as two applications would be: cutting the subscriber leaves the publisher running.
const tap = wire(WebSocket, onFrame)
const producer = connect(wsUrl)
// backoffMax: after "cut the connection", the retries made while offline must not push the next one far away.
const consumer = connect(wsUrl, { WebSocket: tap.WebSocket, backoffMax: 4000 })

// Frames as the server sent them: assignments (the library has no event for them) and notifications before
// the library's duplicate check.
function onFrame (socket, x) {
  if (x.a === 'assigned' && x.s === 0) {
    feedSocket = socket
    assigned(x.p?.[topic] ?? {})
    $('#assigned').textContent = JSON.stringify(x.p)
  } else if (x.t === 'notif' && x.s === undefined && x.topic === topic && socket === feedSocket) {
    st(x.part).wire++
  }
}

function assigned (parts) {
  const next = new Map(Object.entries(parts).map(([p, o]) => [+p, o]))
  const gained = [...next.keys()].filter((p) => !owned.has(p))
  const lost = [...owned.keys()].filter((p) => !next.has(p))
  // A partition this tab did not read, or that another tab read on from while this one was away (it starts past
  // what this tab received): its sequences start again where it joins.
  const movedOn = [...next].filter(([p, o]) => gained.includes(p) || (nextOffset.has(p) && o > nextOffset.get(p))).map(([p]) => p)
  for (const [id, p] of keyPartition) if (movedOn.includes(p)) seqs.delete(id)
  if (owned.size && (gained.length || lost.length)) rebalances++
  owned = next
  const list = [...next].sort((a, b) => a[0] - b[0]).map(([p, o]) => `P${p}@${o}`).join(' ') || 'none'
  log('assigned', `reads ${list}`)
  render()
}

function onRecord (r) {
  const p = r.partition
  nextOffset.set(p, r.offset + 1)
  const s = st(p)
  s.received++
  s.handled++
  totals.received++
  current.set(p, (current.get(p) ?? 0) + 1)
  let v
  try { v = JSON.parse(r.value) } catch {}
  if (!v || typeof v.seq !== 'number' || typeof v.src !== 'string') return
  const id = v.src + '\n' + r.key
  keyPartition.set(id, p)
  const want = seqs.get(id)
  if (want !== undefined && v.seq > want) {
    s.missing += v.seq - want
    log('bad', `${r.key}: ${v.seq - want} missing before #${v.seq} (P${p})`)
  } else if (want !== undefined && v.seq < want) {
    s.duplicated++
    log('bad', `${r.key}: #${v.seq} twice (P${p} offset ${r.offset})`)
  }
  seqs.set(id, Math.max(want ?? 0, v.seq + 1))
  if (v.src === src) totals.ownReceived++
  if (mode === 'group') across.saw(id + '\n' + v.seq)
}

// Across the tabs of this browser in the group (BroadcastChannel): numbered records that reached two of them.
// A partition handed over in a rebalance is read again from the group's committed offset, or from the seek of
// a tab that comes back: at least once, not exactly once, across members.
const across = (() => {
  const seen = new Map() // src + key + seq → the tab that received it
  let batch = []
  let count = 0
  const ch = typeof BroadcastChannel === 'function' ? new BroadcastChannel('wskafka-demo') : null
  const note = (rec, tab) => {
    const first = seen.get(rec)
    if (first === undefined) {
      seen.set(rec, tab)
      if (seen.size > 100000) for (const k of [...seen.keys()].slice(0, 10000)) seen.delete(k)
    } else if (first !== tab && (first === src || tab === src)) {
      count++
    }
  }
  ch?.addEventListener('message', ({ data: m }) => {
    if (m?.topic !== topic || m.group !== group || mode !== 'group') return
    for (const rec of m.recs) note(rec, m.tab)
  })
  setInterval(() => {
    if (!batch.length) return
    ch?.postMessage({ topic, group, tab: src, recs: batch })
    batch = []
  }, 200)
  return {
    saw (rec) {
      note(rec, src)
      batch.push(rec)
    },
    reset () {
      seen.clear()
      batch = []
      count = 0
    },
    get count () { return count }
  }
})()

function subscribe () {
  const old = sub
  sub = null
  old?.unsubscribe()
  owned = new Map()
  feedSocket = null
  stats = new Map()
  seqs = new Map()
  keyPartition = new Map()
  rebalances = 0
  across.reset()
  // In a group, commit: 'client': an offset is committed once onRecord has run for the record, so a record
  // written to a socket just as it was cut (and dropped by the closing browser) is read again by whichever tab
  // takes the partition. With the default (commit: 'auto', committed once written to the socket) a cut may
  // lose that record (README, "Lifecycle").
  const s = consumer.subscribe(topic, onRecord, mode === 'broadcast' ? { mode: 'broadcast' } : { group, commit: 'client' })
  sub = s
  s.ready.then(() => log('ok', mode === 'group' ? `joined group ${group}` : 'subscribed, broadcast'), (e) => {
    if (e.code !== 'closed') log('bad', `subscribe refused: ${e.code}: ${e.message}`)
  })
  renderMode()
  render()
}

// The numbered records: one key after another, a sequence number per key. A key's next record goes once
// Kafka has acknowledged its last (so each key's records are in order, and one that failed can be sent again
// with its number); the keys go in parallel, so a route batching publishes (producer.mq_interval) keeps up.
// One loop at a time: a stopped loop ends at its next turn, and a new one starts after it.
const generator = { run: null, loop: Promise.resolve() }
const nextSeq = new Map()
const inflight = new Set() // keys with a publish out
function publishNumbered (key) {
  const seq = nextSeq.get(key) ?? 0
  inflight.add(key)
  producer.publish(topic, JSON.stringify({ src, seq }), { key }).then(() => {
    nextSeq.set(key, seq + 1)
    totals.sent++
  }, (e) => {
    // Not sent, or refused: the same number next time. Sent but unanswered: Kafka may or may not have it;
    // it is not sent again (were it lost, the counters would show it missing).
    const unknown = e.code === 'outcome_unknown' || e.code === 'timeout'
    if (unknown) {
      nextSeq.set(key, seq + 1)
      totals.unknown++
    }
    log('bad', `publish ${key} #${seq}: ${e.code}${unknown ? ' (may be in Kafka: not sent again)' : ', to be sent again'}`)
  }).finally(() => inflight.delete(key))
}
async function generate (run) {
  let n = 0
  while (generator.run === run) {
    // The next key without a publish out, if any.
    for (let tries = 0; tries < KEYS.length; tries++) {
      const key = KEYS[n++ % KEYS.length]
      if (!inflight.has(key)) {
        publishNumbered(key)
        break
      }
    }
    await sleep(1000 / +$('#rate').value)
  }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function publishForm (count) {
  const key = $('#key').value.trim()
  const value = $('#value').value
  const sends = Array.from({ length: count }, () => producer.publish(topic, value, key ? { key } : {}))
  for (const sent of sends) {
    try {
      const r = await sent
      addReceipt(key, r)
    } catch (e) {
      log('bad', `publish: ${e.code}: ${e.message}`)
    }
  }
}

function addReceipt (key, r) {
  const body = $('#receipts')
  body.querySelector('.empty')?.remove()
  const row = el('tr', { className: 'fresh' },
    el('td', {}, key ? el('code', { textContent: key }) : el('span', { className: 'muted', textContent: 'none' })),
    el('td', {}, chip(r.partition)),
    el('td', { className: 'num', textContent: String(r.offset) }),
    el('td', { className: 'num', textContent: stamp(r.timestamp) }))
  row.dataset.partition = r.partition
  row.dataset.offset = r.offset
  body.prepend(row)
  while (body.rows.length > 6) body.lastElementChild.remove()
}

// Lag: end offsets, and the group's committed offsets.
async function refreshLag () {
  try {
    const [d] = await producer.describeTopics(topic, mode === 'group' ? group : undefined)
    if (!d) return
    partitions = d.partitions.map((p) => p.partition)
    const maxLag = Math.max(1, ...d.partitions.map((p) => p.lag ?? 0))
    $('#lag').replaceChildren(...d.partitions.map((p) => {
      const known = mode === 'group' && p.committed !== undefined && p.committed >= 0
      const lag = known ? p.lag : undefined
      return el('tr', {},
        el('td', {}, chip(p.partition)),
        el('td', { className: 'num', textContent: String(p.high) }),
        el('td', { className: 'num', textContent: known ? String(p.committed) : '—' }),
        el('td', {}, el('div', { className: 'lagcell' },
          el('span', { className: 'bar', style: `--w:${lag ? Math.max(4, (lag / maxLag) * 100) : 0}%;--c:${colour(p.partition)}` }),
          el('span', { className: 'num', textContent: lag === undefined ? '—' : String(lag) }))))
    }))
    $('#lag-note').textContent = mode === 'group'
      ? 'Committed: the group\'s next offset to read; this page commits a record once it has handled it (commit: \'client\').'
      : 'A broadcast commits nothing: each tab resumes from its own offsets.'
  } catch (e) {
    $('#lag-note').textContent = `describe failed: ${e.code}`
  }
}

// Rendering.
function renderMode () {
  for (const b of document.querySelectorAll('.segmented button')) b.setAttribute('aria-checked', String(b.dataset.mode === mode))
  $('#lag-hint').replaceChildren(...(mode === 'group'
    ? ['group ', el('code', { textContent: group }), ', every 3 s']
    : ['end offsets, every 3 s']))
  $('#mode-help').textContent = mode === 'group'
    ? `Consumer group "${group}": the tabs in it split the partitions, and each record reaches one of them.`
    : 'Broadcast: every tab gets every record. Caddy reads the topic once, whatever the number of tabs.'
}

function render () {
  $('#owned').replaceChildren(...partitions.map((p) => {
    const mine = owned.has(p)
    const li = el('li', { className: mine ? 'owned' : 'other', style: `--c:${colour(p)}` },
      el('strong', { textContent: `P${p}` }),
      el('span', { textContent: mine ? `from offset ${owned.get(p)}` : mode === 'group' ? 'another member' : 'not read' }))
    li.dataset.partition = p
    li.dataset.owned = mine
    return li
  }))
  $('#rebalances').textContent = mode === 'group' ? `${rebalances} rebalance${rebalances === 1 ? '' : 's'}` : ''

  let missing = 0
  let duplicated = 0
  const rows = []
  for (const p of partitions) {
    const s = st(p)
    missing += s.missing
    duplicated += s.duplicated
    const tr = el('tr', {},
      el('td', {}, chip(p)),
      el('td', { className: 'num', textContent: String(s.received) }),
      el('td', { className: `num ${s.missing ? 'alert' : ''}`, textContent: String(s.missing) }),
      el('td', { className: `num ${s.duplicated ? 'alert' : ''}`, textContent: String(s.duplicated) }),
      el('td', { className: 'num', textContent: String(Math.max(0, s.wire - s.handled)) }),
      el('td', { className: `num ${s.gaps ? 'alert' : ''}`, textContent: String(s.gaps) }))
    tr.dataset.partition = p
    rows.push(tr)
  }
  $('#checks').replaceChildren(...rows)
  const n = across.count
  $('#across').hidden = mode !== 'group'
  $('#across').replaceChildren(...(n
    ? [el('strong', { textContent: `${n} record${n === 1 ? '' : 's'}` }), ' reached two of this browser\'s tabs in the group: a rebalance hands a partition over at least once, not exactly once.']
    : ['Across this browser\'s tabs in the group: no record reached two of them.']))
  $('#across').classList.toggle('warn', n > 0)
  const t = { sent: totals.sent, received: totals.received, missing, duplicated, reconnects: totals.reconnects }
  for (const [k, v] of Object.entries(t)) {
    const e = $(`#totals [data-k="${k}"]`)
    e.textContent = String(v)
    if (k === 'missing' || k === 'duplicated') e.parentElement.className = v ? 'bad' : 'good'
  }

  const now = smoothed()
  $('#legend').replaceChildren(...partitions.map((p) => {
    const series = now.get(p) ?? []
    const li = el('li', { style: `--c:${colour(p)}` },
      el('span', { className: 'name' }, el('i'), `P${p}`),
      el('b', { textContent: `${perSecond(series.at(-1) ?? 0)}/s` }),
      el('small', { textContent: `${st(p).received} received` }))
    li.classList.toggle('dim', mode === 'group' && !owned.has(p))
    return li
  }))
}

const chart = rateChart($('#rate-chart'), { seconds: SECONDS, colour })
function tick () {
  for (const p of partitions) {
    const series = rates.get(p) ?? []
    series.push(current.get(p) ?? 0)
    if (series.length > SECONDS) series.shift()
    rates.set(p, series)
  }
  current.clear()
  chart.draw(smoothed())
}

// Keys come round in turn, so one-second counts jump: the chart and the tiles show a 3 s moving average.
function smoothed () {
  const out = new Map()
  for (const [p, series] of rates) {
    out.set(p, series.map((_, i) => {
      const w = series.slice(Math.max(0, i - 2), i + 1)
      return w.reduce((a, b) => a + b, 0) / w.length
    }))
  }
  return out
}
const perSecond = (v) => (v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1))

const events = $('#events')
function log (kind, text) {
  events.prepend(el('li', { className: kind }, el('time', { textContent: clock(Date.now()) }), el('span', { textContent: text })))
  while (events.children.length > 40) events.lastElementChild.remove()
}

function setState (state) {
  const b = $('#state')
  b.dataset.state = state
  b.textContent = state
}

// Wiring.
$('#endpoint').textContent = wsUrl
$('#topic-name').textContent = topic
setState(consumer.state)
let down = false
consumer.on('state', ({ state, previous }) => {
  setState(state)
  if (state === 'disconnected' || state === 'stalled') down = true
  if (state === 'connected' && down) {
    down = false
    totals.reconnects++
  }
  log(state === 'connected' ? 'ok' : 'state', `subscriber ${previous} → ${state}`)
})
consumer.on('retry', (e) => {
  log('state', `${e.socket === 'requests' ? 'request' : 'subscription'} socket closed (${e.code}${e.reason ? ': ' + e.reason : ''}); retry ${e.attempt} in ${e.delay} ms`)
})
consumer.on('gap', (g) => {
  st(g.partition).gaps++
  log('bad', `gap on P${g.partition}: offsets ${g.from}–${g.to - 1} are gone from Kafka`)
})
consumer.on('error', (e) => log('bad', `subscriber: ${e.code}: ${e.message}`))
producer.on('error', (e) => log('bad', `publisher: ${e.code}: ${e.message}`))

$('#publish-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  publishForm(1)
})
$('#publish-10').addEventListener('click', () => publishForm(10))
for (const b of document.querySelectorAll('[data-key]')) {
  b.addEventListener('click', () => { $('#key').value = b.dataset.key })
}
for (const b of document.querySelectorAll('.segmented button')) {
  b.addEventListener('click', () => {
    if (b.dataset.mode === mode) return
    mode = b.dataset.mode
    log('state', `mode: ${mode}`)
    subscribe()
    refreshLag()
  })
}
$('#generate').addEventListener('click', (ev) => {
  const run = generator.run ? null : {}
  generator.run = run
  ev.currentTarget.setAttribute('aria-pressed', String(!!run))
  ev.currentTarget.textContent = run ? 'Stop numbered records' : 'Send numbered records'
  if (run) generator.loop = generator.loop.then(() => generate(run))
})
$('#rate').addEventListener('input', (ev) => { $('#rate-out').textContent = `${ev.currentTarget.value}/s` })
$('#cut').addEventListener('click', () => {
  const n = tap.cut(CUT_MS)
  log('bad', `cut ${n} socket${n === 1 ? '' : 's'} of the subscriber, and its network for ${CUT_MS / 1000} s`)
})

renderMode()
render()
setInterval(tick, 1000)
setInterval(render, 250)
setInterval(refreshLag, 3000)
addEventListener('resize', () => chart.draw(smoothed()))

// The page makes its topic when it is missing (an existing topic is no error), then subscribes.
producer.createTopics([{ name: topic, partitions: PARTITIONS }])
  .then(() => log('ok', `topic ${topic} ready`), (e) => log('bad', `topic/create: ${e.code}: ${e.message}`))
  .then(refreshLag)
  .then(subscribe)

// For the browser tests (client/browser/).
window.demo = {
  src,
  totals,
  get state () { return consumer.state },
  get owned () { return [...owned.keys()].sort() },
  get across () { return across.count },
  get stats () { return Object.fromEntries(stats) },
  consumer,
  producer
}
