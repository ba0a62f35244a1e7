// A fake wskafka server in the test's process: the ws package's WebSocketServer on 127.0.0.1:0, speaking the
// README's protocol (and the ping / assigned / subprotocol extensions) closely enough to drive the client.
import { WebSocketServer, WebSocket } from 'ws'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { test as nodeTest } from 'node:test'

export { WebSocket }

// node:test's test, with a deadline: however it is run (node --test test/), no test waits forever.
export const test = (name, fn) => nodeTest(name, { timeout: 5000 }, fn)

// Every wait of the tests is bounded: poll `pred` until it holds, or fail after `ms`.
export async function until (pred, ms = 2000, what = 'condition') {
  const end = Date.now() + ms
  for (;;) {
    const v = pred()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export async function fakeServer (opts = {}) {
  // Plain HTTP serves `files` (path → [content type, body]), for pages of the browser test.
  const http = createServer((req, res) => {
    const f = server.files[new URL(req.url, 'http://x').pathname]
    res.writeHead(f ? 200 : 404, { 'content-type': f?.[0] ?? 'text/plain' }).end(f?.[1] ?? 'not found')
  })
  const wss = new WebSocketServer({
    server: http,
    handleProtocols: (set) => (set.has('wskafka') ? 'wskafka' : false),
    verifyClient: (info, accept) => {
      server.verify?.(info.req)
      const ok = !server.refuse
      accept(ok, server.refuse)
    }
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  let replyId = 0
  let offset = 0
  const server = {
    url: `ws://127.0.0.1:${http.address().port}/ws`,
    http: `http://127.0.0.1:${http.address().port}`,
    files: {},
    conns: [],
    refuse: 0, // an HTTP status: refuse upgrades (the client sees 1006)
    silent: false, // read, never answer (a socket that looks open after a laptop sleeps)
    partitions: opts.partitions ?? 1,
    // The start offset of a partition in `assigned`: by default the seek asked for, else 0.
    start: opts.start ?? ((topic, part, want) => want ?? 0),
    handle: opts.handle, // (req, conn) => true when the test answered the request itself
    reply (conn, req, p, s = 0) {
      conn.send({ id: ++replyId, refid: req.id, t: req.t, a: req.a, s, p })
    },
    // Notifications with delivery metadata, one array frame.
    deliver (conn, records) {
      conn.send(records.map((r) => ({ id: ++replyId, t: 'notif', p: r.p ?? `v${r.offset}`, topic: r.topic, part: r.part ?? 0, offset: r.offset, k: r.k ?? null, h: r.h ?? {}, ts: r.ts ?? 1700000000000, ...(r.enc ? { enc: r.enc } : {}) })))
    },
    assigned (conn, p) {
      conn.send({ id: ++replyId, t: 'topic', a: 'assigned', s: 0, p })
    },
    next: (n = server.conns.length + 1) => until(() => server.conns[n - 1], 3000, `connection ${n}`),
    requests: () => server.conns.flatMap((c) => c.requests),
    close: () => new Promise((resolve) => {
      for (const c of server.conns) c.ws.terminate()
      wss.close()
      http.close(resolve)
    })
  }

  wss.on('connection', (ws, req) => {
    const conn = {
      ws,
      url: req.url,
      protocol: ws.protocol,
      frames: [], // every frame as received (an object or an array)
      requests: [], // the requests, batches flattened
      acks: [],
      subscribes: [],
      send: (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)) }
    }
    server.conns.push(conn)
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString())
      conn.frames.push(m)
      for (const req of Array.isArray(m) ? m : [m]) {
        conn.requests.push(req)
        if (server.silent) continue
        if (server.handle?.(req, conn)) continue
        answer(conn, req)
      }
    })
  })

  function answer (conn, req) {
    const key = `${req.t}/${req.a ?? ''}`
    if (key === 'ping/') return server.reply(conn, req)
    if (key === 'notif/ack') return conn.acks.push(req.p)
    if (key === 'notif/create') {
      if (req.ack) server.reply(conn, req, { t: req.p.t, part: req.p.part ?? 0, offset: offset++, ts: 1700000000123 })
      return
    }
    if (key === 'topic/subscribe') {
      conn.subscribes.push(req.p)
      server.reply(conn, req, req.p.t)
      if (req.p.assignments) {
        const p = {}
        for (const t of req.p.t) {
          p[t] = {}
          for (let part = 0; part < server.partitions; part++) {
            p[t][part] = server.start(t, part, req.p.seek?.[t]?.[part])
          }
        }
        server.assigned(conn, p)
      }
      return
    }
    if (key === 'topic/unsubscribe') return server.reply(conn, req)
    server.reply(conn, req, { echo: req.p ?? null })
  }

  return server
}
