// @wskafka/client, for browsers and Node.js. Protocol: the README; types and docs: wskafka.d.ts.

const te = new TextEncoder()
const td = new TextDecoder()
const utf8 = new TextDecoder('utf-8', { fatal: true })
const noop = () => {}
// client.state is the worst of its sockets'.
const RANK = { connected: 0, connecting: 1, stalled: 2, disconnected: 3 }

export class WskafkaError extends Error {
  constructor (code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'WskafkaError'
    this.code = code
    Object.assign(this, details)
  }
}
const err = (code, message, details) => new WskafkaError(code, message, details)

// Full jitter from the first retry: sockets closed together (a reload) do not come back together.
export function backoff (attempt, base, max, random = Math.random) {
  return Math.floor(random() * Math.min(max, base * 2 ** attempt))
}

const isBinary = (v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v)
const bytes = (v) => typeof v === 'string'
  ? te.encode(v)
  : v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength)

export function toBase64 (v) {
  const b = bytes(v)
  let s = ''
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000))
  return btoa(s)
}

export function fromBase64 (s) {
  const bin = atob(s)
  const b = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i)
  return b
}

function emitter () {
  const map = new Map()
  return {
    on (type, fn) {
      let set = map.get(type)
      if (!set) map.set(type, (set = new Set()))
      set.add(fn)
      return () => { set.delete(fn) }
    },
    emit (type, ev) {
      // As EventTarget does: a throwing listener is reported, and the others still run.
      for (const fn of map.get(type) ?? []) try { fn(ev) } catch (e) { queueMicrotask(() => { throw e }) }
    }
  }
}

// A socket that reconnects: requests, batches, heartbeat, close codes. `hooks`: a feed's (subscriptions).
function line (name, c, hooks = {}) {
  const o = c.o
  let ws = null
  let state = 'disconnected'
  let attempt = 0
  let suspended = false
  let retryTimer, connectTimer, pingTimer, probeTimer
  const pending = new Map() // id → request sent, not yet answered
  let outbox = []
  let held = [] // waiting for an open socket (the offline queue)
  let lastFrame = []
  let lastBytes = 0
  let flushing = false

  const refuse = (why) => o.queue ? err('queue_full', `the offline queue is full (${o.queue})`) : err('not_connected', `not connected (${why})`)
  const set = (s) => { if (state !== s) { state = s; c.update() } }

  function settle (e, error) {
    if (e.done) return
    e.done = true
    clearTimeout(e.timer)
    if (e.reject) e.reject(error)
    else c.emit('error', error)
  }

  function open () {
    if (state === 'closed') return
    clearTimeout(retryTimer)
    suspended = false
    set('connecting')
    let s
    try {
      s = new o.WebSocket(c.url, o.protocols)
    } catch (e) {
      return down(1006, String(e?.message ?? e))
    }
    ws = s
    connectTimer = setTimeout(() => { abandon(); down(1006, 'no open within connectTimeout') }, o.connectTimeout)
    s.onopen = () => {
      clearTimeout(connectTimer)
      set('connected')
      alive()
      hooks.open?.()
      outbox.push(...held)
      held = []
      schedule()
    }
    s.onmessage = (ev) => receive(ev.data)
    s.onclose = (ev) => { if (ws === s) down(ev.code, ev.reason) }
    s.onerror = noop // a close event follows
  }

  // Leave the socket without waiting for its close event (a stalled one may never send it).
  function abandon (code = 4000, reason = 'stalled') {
    const s = ws
    if (!s) return
    s.onopen = s.onmessage = s.onclose = s.onerror = noop
    try { s.close(code, reason) } catch {}
  }

  function down (code, reason) {
    ws = null
    clearTimeout(connectTimer)
    clearTimeout(pingTimer)
    clearTimeout(probeTimer)
    probeTimer = undefined
    // RFC 6455 §7.4.1: 1009, a frame too big: the last one sent. Never sent again.
    if (code === 1009) {
      for (const e of lastFrame) {
        if (e.post) continue
        pending.delete(e.msg.id)
        settle(e, err('too_big', `the server refused a frame of ${lastBytes} bytes as too big (close code 1009)`))
      }
    }
    lastFrame = []
    for (const e of pending.values()) {
      settle(e, err('outcome_unknown', `the connection closed (code ${code}) before the reply: the request may or may not have been carried out`, { closeCode: code }))
    }
    pending.clear()
    held = outbox.filter((e) => !e.post).concat(held)
    outbox = []
    while (held.length > (state === 'closed' ? 0 : o.queue)) {
      settle(held.pop(), state === 'closed' ? err('closed', 'closed before it was sent') : refuse(`close code ${code}`))
    }
    if (state === 'closed') return
    if (suspended) return set('disconnected')
    let delay
    const renew = code === 4001 && o.credentials // credential expired: a new one, then reconnect soon
    if (code === 1001 || code === 1012 || renew) {
      delay = Math.floor(o.random() * o.reconnectSoon) // going away, restart: soon, still jittered
    } else {
      delay = backoff(attempt++, o.backoffBase, o.backoffMax, o.random)
      if (code === 1013) delay += o.tryLater // try again later (feeds resume with seek)
    }
    set('disconnected')
    c.emit('retry', { socket: name, code, reason, delay, attempt })
    retryTimer = setTimeout(renew ? () => c.renew().then(open, (e) => { c.emit('error', err('credentials', String(e?.message ?? e))); down(1006, 'no credentials') }) : open, delay)
  }

  function receive (data) {
    alive()
    let m
    try {
      m = JSON.parse(typeof data === 'string' ? data : td.decode(data))
    } catch {
      return c.emit('error', err('invalid_frame', 'the server sent a frame that is not JSON'))
    }
    const notifs = []
    for (const x of Array.isArray(m) ? m : [m]) {
      const e = x?.refid !== undefined && pending.get(x.refid)
      if (e) {
        pending.delete(x.refid)
        if (x.s === 0) {
          attempt = 0 // the server accepted us: the backoff starts again
          e.done = true
          clearTimeout(e.timer)
          e.resolve(x.p)
        } else {
          settle(e, err(x.p?.code ?? 'error', x.p?.message ?? 'request failed', { reply: x }))
        }
      } else if (x?.t === 'notif' && x.s === undefined) {
        attempt = 0
        notifs.push(x)
      } else if (x?.a === 'assigned' && x.s === 0) {
        hooks.assigned?.(x.p)
      } else if (x?.s === 1) {
        // Failures of send(), acks, unreadable frames.
        c.emit('error', err(x.p?.code ?? 'error', x.p?.message ?? 'request failed', { reply: x }))
      }
    }
    if (notifs.length) hooks.notifs?.(notifs)
  }

  // Browsers hide WebSocket pings from pages, and a socket can look open after a laptop sleeps: a "ping"
  // request after pingInterval without a frame; no answer within pingTimeout is a stall.
  function alive () {
    clearTimeout(pingTimer)
    clearTimeout(probeTimer)
    probeTimer = undefined
    if (state === 'connected' && o.pingInterval > 0) pingTimer = setTimeout(probe, o.pingInterval)
  }

  function probe () {
    if (state !== 'connected' || probeTimer) return
    clearTimeout(pingTimer)
    outbox.push({ msg: { id: c.id(), t: 'ping' }, post: true })
    schedule()
    probeTimer = setTimeout(() => {
      set('stalled')
      abandon()
      down(4000, `no answer to ping within ${o.pingTimeout} ms`)
    }, o.pingTimeout)
  }

  function schedule () {
    if (!flushing) {
      flushing = true
      queueMicrotask(flush)
    }
  }

  // One tick's requests go out as one frame (a batch: at most 1000, and maxFrameBytes).
  function flush () {
    flushing = false
    // CLOSING: a send would be dropped unseen; down() holds or refuses them as not sent.
    if (state !== 'connected' || ws.readyState !== 1) return
    const items = outbox
    outbox = []
    let frame = []
    let size = 2
    const out = () => {
      if (!frame.length) return
      ws.send(frame.length === 1 ? frame[0].text : '[' + frame.map((e) => e.text).join(',') + ']')
      lastFrame = frame
      lastBytes = size
      for (const e of frame) {
        delete e.text
        if (e.resolve) {
          pending.set(e.msg.id, e)
          e.timer = setTimeout(() => {
            pending.delete(e.msg.id)
            settle(e, err('timeout', `no reply within ${e.timeout} ms: the request may or may not have been carried out`))
          }, e.timeout)
        }
      }
      frame = []
      size = 2
    }
    for (const e of items) {
      if (e.done) continue
      const text = JSON.stringify(e.msg)
      const n = te.encode(text).length
      if (n + 2 > o.maxFrameBytes) {
        settle(e, err('too_big', `a request of ${n} bytes exceeds maxFrameBytes (${o.maxFrameBytes}); not sent`))
        continue
      }
      if (frame.length === 1000 || size + n + 1 > o.maxFrameBytes) out()
      e.text = text
      frame.push(e)
      size += n + 1
    }
    out()
  }

  function submit (e) {
    if (state === 'closed') return settle(e, err('closed', 'the client is closed'))
    if (state === 'connected') {
      outbox.push(e)
      return schedule()
    }
    // While opening, requests wait for it (and fail with the attempt, unless queued).
    if (held.length < (o.queue || (state === 'connecting' ? 1000 : 0))) return held.push(e)
    settle(e, refuse(state))
  }

  return {
    name,
    get state () { return state },
    open,
    request: (msg, timeout) => new Promise((resolve, reject) => submit({ msg, timeout, resolve, reject })),
    send: (msg) => submit({ msg }),
    post (msg) {
      if (state !== 'connected') return
      outbox.push({ msg, post: true })
      schedule()
    },
    probe,
    wake () {
      if (state === 'connected') probe()
      else if (state === 'disconnected') open()
    },
    // Frozen, or in the bfcache: close until wake().
    suspend () {
      if (state === 'closed') return
      suspended = true
      clearTimeout(retryTimer)
      abandon(1000, 'suspended')
      down(1000, 'suspended')
    },
    restart (reason) {
      abandon(4001, reason)
      down(4001, reason)
    },
    close () {
      if (state === 'closed') return
      state = 'closed'
      clearTimeout(retryTimer)
      abandon(1000, 'closed by the client')
      down(1000, 'closed by the client')
    }
  }
}

function toRecord (n) {
  // With enc, the value is bytes; a key or header value is text again when its bytes are UTF-8.
  const b64 = n.enc === 'base64'
  const dec = (v) => (b64 && typeof v === 'string' ? fromBase64(v) : v)
  const text = (v) => {
    const b = dec(v)
    try { return b instanceof Uint8Array ? utf8.decode(b) : b } catch { return b }
  }
  const headers = {}
  for (const [k, v] of Object.entries(n.h ?? {})) headers[k] = text(v)
  return { topic: n.topic, partition: n.part, offset: n.offset, key: text(n.k ?? null), headers, timestamp: n.ts, value: dec(n.p), id: n.id }
}

function publishPayload (topic, value, opts = {}) {
  const h = opts.headers ?? {}
  const bin = isBinary(value) || isBinary(opts.key) || Object.values(h).some(isBinary)
  const enc = (v) => (v == null || !bin ? v : toBase64(typeof v === 'string' || isBinary(v) ? v : JSON.stringify(v)))
  const p = {
    t: topic,
    m: value === undefined ? null : enc(value),
    k: enc(opts.key),
    part: opts.partition,
    ts: opts.timestamp instanceof Date ? opts.timestamp.getTime() : opts.timestamp,
    enc: bin ? 'base64' : undefined
  }
  if (opts.headers) {
    p.h = {}
    for (const [k, v] of Object.entries(h)) p.h[k] = enc(v)
  }
  return p
}

const pkey = (topic, part) => topic + '\n' + part
const split = (pk) => {
  const i = pk.lastIndexOf('\n')
  return [pk.slice(0, i), +pk.slice(i + 1)]
}

/** Open a client: one socket for requests, and one per (mode, group, commit) of the subscriptions made. */
export function connect (url, options = {}) {
  const o = {
    WebSocket: globalThis.WebSocket,
    protocols: ['wskafka'],
    requestTimeout: 10000,
    subscribeTimeout: 60000,
    connectTimeout: 10000,
    pingInterval: 20000,
    pingTimeout: 10000,
    backoffBase: 500,
    backoffMax: 30000,
    reconnectSoon: 1000,
    tryLater: 5000,
    subscribeWindow: 20,
    queue: 0,
    maxFrameBytes: 1048576,
    random: Math.random,
    ...options
  }
  if (typeof o.WebSocket !== 'function') {
    throw new TypeError('no WebSocket constructor: pass options.WebSocket (in Node 20, the ws package\'s WebSocket)')
  }
  const { on, emit } = emitter()
  let id = 0
  let state = 'connecting'
  let closed = false
  const feeds = new Map()
  const c = { url: String(url), o, id: () => ++id, emit, update }
  let renewing // one call for all the sockets one expiry closed; see credentials in wskafka.d.ts
  c.renew = () => (renewing ??= Promise.resolve().then(o.credentials).then((n) => {
    c.url = String(n?.url ?? c.url)
    o.protocols = n?.protocols ?? o.protocols
  }).finally(() => { renewing = undefined }))
  const main = line('requests', c)
  const all = () => [main, ...[...feeds.values()].map((f) => f.line)]

  const store = o.persist ? (o.storage ?? globalThis.sessionStorage) : undefined
  let saved = {}
  try { saved = JSON.parse(store?.getItem(o.persist) || '{}') } catch {}
  let saveTimer
  function save () {
    clearTimeout(saveTimer)
    saveTimer = undefined
    if (!store) return
    for (const f of feeds.values()) saved[f.key] = f.positions()
    try { store.setItem(o.persist, JSON.stringify(saved)) } catch {}
  }
  const dirty = () => { if (store && !saveTimer && !closed) saveTimer = setTimeout(save, 1000) }

  function update () {
    let s = 'connected'
    if (closed) s = 'closed'
    else for (const l of all()) if (RANK[l?.state] > RANK[s]) s = l.state
    if (s !== state) {
      const previous = state
      state = s
      emit('state', { state, previous })
    }
  }

  const request = (t, a, p, opts = {}) => main.request({ id: c.id(), t, a, p }, opts.timeout ?? o.requestTimeout)

  // A feed: the socket of every topic of one mode, group and commit (a subscribe replaces the socket's last).
  function feed (key, cfg) {
    const subs = new Set()
    const pos = new Map() // partition → next offset expected (duplicates are below)
    const inflight = new Map() // partition → records not yet handled, in offset order
    const acks = new Map()
    const waiters = []
    let timer

    for (const [t, parts] of Object.entries(saved[key] ?? {})) {
      for (const [part, next] of Object.entries(parts)) pos.set(pkey(t, part), next)
    }
    const topics = () => [...new Set([...subs].flatMap((s) => s.topics))]
    const resumeAt = (pk) => inflight.get(pk)?.find((e) => e.st === 2)?.offset ?? pos.get(pk)

    function subscribeNow () {
      clearTimeout(timer)
      timer = undefined
      const ts = topics()
      if (!ts.length) return
      const w = waiters.splice(0)
      const seek = {}
      let seeking = false
      const broadcast = cfg.mode === 'broadcast'
      // A group resumes from its commits: a seek would undo what other members read.
      for (const pk of broadcast ? pos.keys() : []) {
        const [t, part] = split(pk)
        if (ts.includes(t)) {
          (seek[t] ??= {})[part] = resumeAt(pk)
          seeking = true
        }
      }
      const p = {
        t: ts,
        consumer_group: cfg.group,
        mode: broadcast ? 'broadcast' : undefined,
        commit: cfg.commit === 'client' ? 'client' : undefined,
        meta: true,
        assignments: true,
        from: cfg.from,
        seek: seeking ? seek : undefined,
        mq_limit: cfg.mqLimit,
        mq_interval: cfg.mqInterval
      }
      f.line.request({ id: c.id(), t: 'topic', a: 'subscribe', p }, o.subscribeTimeout).then(() => {
        for (const s of subs) if (s.topics.every((t) => ts.includes(t))) s.ok()
      }, (e) => {
        // A reconnect subscribes again; a refusal ends new subscriptions; else a new socket after a backoff.
        if (['cancelled', 'outcome_unknown', 'not_connected', 'closed', 'shutting_down'].includes(e.code)) return
        const refused = !['timeout', 'kafka_unavailable', 'kafka_timeout'].includes(e.code)
        let dropped = false
        for (const s of subs) {
          if (refused && !s.confirmed && s.topics.some((t) => ts.includes(t))) {
            subs.delete(s)
            s.fail(e)
            dropped = true
          }
        }
        emit('error', e)
        if (!subs.size) stop()
        else if (dropped) schedule()
        else f.line.restart(`subscribe failed: ${e.code}`)
      }).finally(() => w.forEach((r) => r()))
    }

    // Each subscribe rebalances the group: one per subscribeWindow.
    function schedule () {
      if (f.line.state === 'connected' && !timer) timer = setTimeout(subscribeNow, o.subscribeWindow)
      return new Promise((resolve) => waiters.push(resolve))
    }

    function assigned (p = {}) {
      const listed = new Set()
      for (const [t, parts] of Object.entries(p)) {
        for (const [part, start] of Object.entries(parts)) {
          const pk = pkey(t, part)
          listed.add(pk)
          const want = resumeAt(pk)
          // A broadcast starting above its seek lost records to retention; a group, to other members.
          if (cfg.mode === 'broadcast' && want !== undefined && start > want) emit('gap', { topic: t, partition: +part, from: want, to: start })
          if (want === undefined || start > (pos.get(pk) ?? -1)) pos.set(pk, start)
        }
      }
      // Not listed: another member's now.
      for (const pk of pos.keys()) {
        if (!listed.has(pk)) {
          pos.delete(pk)
          inflight.delete(pk)
        }
      }
      dirty()
    }

    function notifs (list) {
      for (const n of list) {
        const rec = toRecord(n)
        if (n.offset === undefined) {
          run(undefined, {}, rec)
          continue
        }
        const pk = pkey(n.topic, n.part)
        const next = pos.get(pk)
        if (next !== undefined && n.offset < next) {
          // A duplicate, unless a failed record again.
          const e = inflight.get(pk)?.find((e) => e.offset === n.offset && e.st === 2)
          if (e) run(pk, e, rec)
          continue
        }
        pos.set(pk, n.offset + 1) // holes (compaction, transaction markers) are no gap
        const e = { offset: n.offset, st: 0 }
        const q = inflight.get(pk)
        if (q) q.push(e)
        else inflight.set(pk, [e])
        run(pk, e, rec)
      }
    }

    function run (pk, e, rec) {
      e.st = 0
      e.rec = rec
      // A handler that throws neither stops the others nor is acknowledged before them.
      const hs = [...subs].filter((s) => s.topics.includes(rec.topic))
      Promise.allSettled(hs.map((s) => new Promise((resolve) => resolve(s.handler(rec))))).then((rs) => {
        const bad = rs.find((r) => r.status === 'rejected')
        if (!bad) return handled(pk, e)
        const x = bad.reason
        // At least once: this and what follows stay unacknowledged until retry() or skip().
        e.st = 2
        emit('error', err('handler_failed', `handler failed on ${rec.topic}/${rec.partition} offset ${rec.offset}: ${x?.message ?? x}`, {
          cause: x,
          record: rec,
          retry: () => { if (e.st === 2) run(pk, e, e.rec) },
          skip: () => { if (e.st === 2) handled(pk, e) }
        }))
      })
    }

    function handled (pk, e) {
      e.st = 1
      const q = inflight.get(pk)
      if (!q?.includes(e)) return
      let last
      while (q.length && q[0].st === 1) last = q.shift().offset
      if (!q.length) inflight.delete(pk)
      if (last === undefined) return
      dirty()
      if (cfg.commit !== 'client') return
      if (!acks.size) {
        queueMicrotask(() => {
          for (const [pk, offset] of acks) {
            const [t, part] = split(pk)
            f.line.post({ t: 'notif', a: 'ack', p: { t, part, offset } })
          }
          acks.clear()
        })
      }
      acks.set(pk, last)
    }

    function stop () {
      clearTimeout(timer)
      waiters.splice(0).forEach((r) => r())
      f.line.close()
      if (feeds.get(key) === f) feeds.delete(key)
      if (!feeds.has(key)) delete saved[key]
      update()
    }

    const f = {
      key,
      line: undefined,
      positions () {
        const out = {}
        for (const pk of pos.keys()) {
          const [t, part] = split(pk);
          (out[t] ??= {})[part] = inflight.get(pk)?.[0]?.offset ?? pos.get(pk)
        }
        return out
      },
      add (ts, handler) {
        let ok, fail
        const ready = new Promise((resolve, reject) => { ok = resolve; fail = reject })
        ready.catch(noop) // also an error event: unawaited is no crash
        const s = {
          topics: ts,
          handler,
          confirmed: false,
          ok () { s.confirmed = true; ok() },
          fail
        }
        subs.add(s)
        schedule()
        return {
          topics: ts,
          ready,
          unsubscribe () {
            if (!subs.delete(s)) return Promise.resolve()
            s.fail(err('closed', 'unsubscribed'))
            if (subs.size) return schedule()
            if (feeds.get(key) === f) feeds.delete(key) // later subscribes open a new feed
            const l = f.line
            const bye = l.state === 'connected'
              ? l.request({ id: c.id(), t: 'topic', a: 'unsubscribe' }, o.requestTimeout).catch(noop)
              : Promise.resolve()
            return bye.then(stop)
          }
        }
      },
      stop
    }
    f.line = line(key, c, { open: subscribeNow, notifs, assigned })
    return f
  }

  function subscribe (topics, handler, so = {}) {
    if (closed) throw err('closed', 'the client is closed')
    if (typeof handler !== 'function') throw new TypeError('subscribe(topics, handler): handler must be a function')
    const ts = [].concat(topics)
    const broadcast = so.mode === 'broadcast'
    if (broadcast && (so.group !== undefined || so.commit === 'client')) {
      throw new TypeError('a broadcast subscription has no group and no client commit')
    }
    const cfg = { mode: broadcast ? 'broadcast' : 'group', group: so.group, commit: so.commit ?? 'auto', from: so.from, mqLimit: so.mqLimit, mqInterval: so.mqInterval }
    const key = JSON.stringify([cfg.mode, cfg.group ?? null, cfg.commit])
    let f = feeds.get(key)
    if (!f) {
      feeds.set(key, (f = feed(key, cfg)))
      f.line.open()
    }
    return f.add(ts, handler)
  }

  // Page lifecycle, where those globals exist; close() removes the listeners.
  const win = o.window ?? globalThis.window
  const doc = o.document ?? globalThis.document
  const unlisten = []
  const listen = (target, type, fn) => {
    if (typeof target?.addEventListener !== 'function') return
    target.addEventListener(type, fn)
    unlisten.push(() => target.removeEventListener(type, fn))
  }
  const lines = (m) => { for (const l of all()) l[m]() }
  listen(win, 'online', () => lines('wake'))
  listen(win, 'offline', () => lines('probe'))
  listen(doc, 'visibilitychange', () => (doc.visibilityState === 'hidden' ? save() : lines('wake')))
  listen(doc, 'freeze', () => { save(); lines('suspend') })
  listen(doc, 'resume', () => lines('wake'))
  listen(win, 'pagehide', (e) => { save(); if (e.persisted) lines('suspend') })
  listen(win, 'pageshow', (e) => { if (e.persisted) lines('wake') })

  main.open()

  return {
    get state () { return state },
    on,
    request,
    publish: (topic, value, opts = {}) =>
      main.request({ id: c.id(), t: 'notif', a: 'create', ack: true, p: publishPayload(topic, value, opts) }, opts.timeout ?? o.requestTimeout)
        .then((r) => ({ topic: r.t, partition: r.part, offset: r.offset, timestamp: r.ts })),
    send (topic, value, opts) {
      main.send({ id: c.id(), t: 'notif', a: 'create', p: publishPayload(topic, value, opts) })
    },
    subscribe,
    createTopics: (topics, opts) => request('topic', 'create', topics, opts),
    listTopics: (opts) => request('topic', 'list', undefined, opts),
    describeTopics: (topics, group, opts) => request('topic', 'describe', { t: [].concat(topics), consumer_group: group }, opts),
    deleteTopics: (topics, opts) => request('topic', 'delete', topics, opts),
    health: (p, opts) => request('health', undefined, p, opts),
    async ping (opts) {
      const t0 = Date.now()
      await request('ping', undefined, undefined, opts)
      return Date.now() - t0
    },
    positions () {
      const out = {}
      for (const f of feeds.values()) out[f.key] = f.positions()
      return out
    },
    close () {
      if (closed) return
      save()
      closed = true
      for (const f of [...feeds.values()]) f.stop()
      main.close()
      unlisten.splice(0).forEach((fn) => fn())
      update()
    }
  }
}
