// Types of @wskafka/client (hand-written; checked by test/types.test-d.ts).
//
// How the client behaves, in short:
// - Sockets: one for requests, and one per (mode, group, commit) of the subscriptions (the protocol has one
//   subscription per socket), all opened with the `wskafka` subprotocol. Each reconnects on its own: full-jitter
//   exponential backoff from the first retry; 1001 and 1012 within [0, reconnectSoon); 1013 after tryLater +
//   the backoff; 1009 rejects the requests of the last frame sent (`too_big`), never sent again; 4001 (the
//   credential expired) calls `credentials` once for every socket closed, then reconnects within
//   [0, reconnectSoon). A server answer resets the backoff.
// - Requests: a promise each, matched by refid, timed from when it is sent. Requests of one tick go out as one
//   array frame (at most 1000, and maxFrameBytes). A request sent and unanswered when its socket closes
//   rejects with `outcome_unknown` (never sent again by the library). While the socket opens, requests wait
//   for it; while disconnected they reject with `not_connected`, unless `queue` keeps them.
// - Heartbeat: a `ping` request after pingInterval without a frame; no answer within pingTimeout: `stalled`,
//   then a new socket. Online, a page made visible, resumed or shown from the bfcache checks or reconnects at
//   once; freeze and pagehide into the bfcache close the sockets until then.
// - Subscriptions: every subscribe asks for delivery metadata and assignments. The client tracks, per
//   partition, the next offset expected: records below it are dropped as duplicates. A broadcast resubscribes
//   with `seek` there after every reconnect, and an `assigned` start above the offset asked for is a `gap` event
//   (offset holes inside a stream are not). A group member resubscribes without `seek`: the group's committed
//   offsets are its position (a seek would take back what another member read meanwhile). Partitions an
//   `assigned` frame leaves out are forgotten.
// - Handlers: called in delivery order without waiting for each other; a record counts as handled once every
//   handler of its topic has returned or resolved. With commit 'client' each partition is acknowledged up to
//   its last record handled with nothing unhandled before it. A handler that throws or rejects is reported as
//   an `error` event (`handler_failed`, with retry() and skip()); the record is not acknowledged, nor anything
//   after it in its partition, until one of those; a reconnect or a reload delivers it again (seek).
// - persist: per partition, the first record not yet handled, written at most once a second, on pagehide,
//   on a hidden page and on close(); a reload resumes there (at least once).

/** A client's state: the worst of its sockets' (one for requests, one per subscription feed). */
export type State = 'connecting' | 'connected' | 'stalled' | 'disconnected' | 'closed'

/** Codes of this library's errors; server codes (`unknown_topic`, `forbidden`, …) pass through as sent. */
export type ErrorCode =
  | 'outcome_unknown' // the socket closed after the request was sent and before its reply
  | 'timeout' // no reply within the request's timeout (also of unknown outcome)
  | 'not_connected' // not sent: no socket, and no offline queue
  | 'queue_full' // not sent: the offline queue is full
  | 'too_big' // not sent: above maxFrameBytes, or refused by the server (close code 1009)
  | 'closed' // not sent: the client was closed (or the subscription ended)
  | 'handler_failed' // a subscription handler threw or rejected
  | 'invalid_frame' // the server sent a frame that is not JSON
  | (string & {})

/** Bytes in (any of these) and out (always Uint8Array). */
export type Bytes = Uint8Array | ArrayBuffer | ArrayBufferView

export class WskafkaError extends Error {
  constructor (code: ErrorCode, message: string, details?: object)
  readonly name: 'WskafkaError'
  readonly code: ErrorCode
  /** The server's reply, for errors the server sent (`s: 1`). */
  readonly reply?: { id: number, refid?: unknown, t?: string, a?: string, s: 1, p?: { code: string, message: string } }
  /** The close code, for `outcome_unknown`. */
  readonly closeCode?: number
  /** For `handler_failed`: the record, and what to do with it. */
  readonly record?: KafkaRecord
  /** For `handler_failed`: run the handler(s) again on the record. */
  readonly retry?: () => void
  /** For `handler_failed`: count the record as handled (acknowledge past it). */
  readonly skip?: () => void
}

/** What `credentials` returns: used for every connection from then on. */
export interface Credentials {
  url?: string | URL
  protocols?: string[]
}

export interface Options {
  /** The WebSocket constructor. Default: globalThis.WebSocket (browsers, Node 22+); in Node 20, `ws`'s. */
  WebSocket?: new (url: string, protocols: string[]) => WebSocketLike
  /** Default: ['wskafka'] (the server then reports refusals as close code 1013). */
  protocols?: string[]
  /** Per request, from when it is sent. Default: 10000 ms. */
  requestTimeout?: number
  /** Until the group is joined. Default: 60000 ms. */
  subscribeTimeout?: number
  /** Until the socket opens. Default: 10000 ms. */
  connectTimeout?: number
  /** A ping after this long without a frame from the server; 0 turns the heartbeat off. Default: 20000 ms. */
  pingInterval?: number
  /** No answer to a ping within this long: stalled, and a new socket. Default: 10000 ms. */
  pingTimeout?: number
  /** Full-jitter exponential backoff: a delay uniform in [0, min(backoffMax, backoffBase·2^attempt)). Defaults: 500, 30000 ms. */
  backoffBase?: number
  backoffMax?: number
  /** After 1001 (going away) or 1012 (service restart): a delay uniform in [0, reconnectSoon). Default: 1000 ms. */
  reconnectSoon?: number
  /** After 1013 (try again later): tryLater + the backoff. Default: 5000 ms. */
  tryLater?: number
  /**
   * After close code 4001 (the credential expired, or the socket reached the route's largest age): a new
   * credential before reconnecting. Browsers cannot set headers on a WebSocket, so return the URL with a new
   * token in its query string, or subprotocols carrying it; return nothing after renewing a cookie. Called once
   * for all the sockets one expiry closes; a rejection is an `error` event (code `credentials`) and a backoff.
   * Without it, 4001 backs off like any other close.
   */
  credentials?: () => Credentials | void | Promise<Credentials | void>
  /** Subscription changes within this window go out as one subscribe (one rebalance). Default: 20 ms. */
  subscribeWindow?: number
  /** Requests kept while disconnected (sent on reconnect); 0: they reject at once with `not_connected`. Default: 0. */
  queue?: number
  /** No frame above this many bytes is sent (batches are split; a bigger request is refused). Default: 1048576 (the server's max_frame_bytes). */
  maxFrameBytes?: number
  /** Keep positions across page reloads in `storage` under this key. */
  persist?: string
  /** Default: globalThis.sessionStorage. */
  storage?: { getItem (key: string): string | null, setItem (key: string, value: string): void }
  /** Default: Math.random. */
  random?: () => number
  /** Page-lifecycle event sources. Default: globalThis.window and globalThis.document, when they exist. */
  window?: EventSource
  document?: EventSource & { visibilityState?: string }
}

/** What the library uses of a WebSocket (the browser's, or the ws package's). */
export interface WebSocketLike {
  onopen: any
  onmessage: any
  onclose: any
  onerror: any
  send (data: string): void
  close (code?: number, reason?: string): void
}

/** A window or document: what the library uses of it. */
export interface EventSource {
  addEventListener (type: string, listener: (event: any) => void): void
  removeEventListener (type: string, listener: (event: any) => void): void
}

/** A message's value: a string, any other JSON value (sent as its JSON text), bytes, or null. */
export type Value = string | number | boolean | null | Bytes | { [k: string]: unknown } | unknown[]

export interface PublishOptions {
  key?: string | Bytes
  headers?: Record<string, string | Bytes>
  partition?: number
  timestamp?: number | Date
  /** publish() only. Default: requestTimeout. */
  timeout?: number
}

/** Kafka's acknowledgement of a published record. */
export interface Receipt {
  topic: string
  partition: number
  offset: number
  timestamp: number
}

/**
 * A record as delivered. When the server marks a record base64 (a value, key or header value that is not
 * UTF-8), its value is a Uint8Array, and its key and header values are strings when their bytes are UTF-8,
 * Uint8Array otherwise.
 */
export interface KafkaRecord {
  topic: string
  partition: number
  offset: number
  key: string | Uint8Array | null
  headers: Record<string, string | Uint8Array>
  timestamp: number
  value: string | Uint8Array | null
  /** The notification's id on its socket. */
  id: number
}

/** May return a promise: the record counts as handled once it resolves. */
export type Handler = (record: KafkaRecord) => void | Promise<unknown>

interface SubscribeCommon {
  /** Where a group with no committed offset, or a broadcast, starts: 'earliest', 'latest' or a time in ms. */
  from?: 'earliest' | 'latest' | number
  mqLimit?: number
  mqInterval?: number
}

export interface GroupSubscribeOptions extends SubscribeCommon {
  mode?: 'group'
  group?: string
  /** 'client': acknowledge each partition's offsets once the handlers have finished with them, in order. */
  commit?: 'auto' | 'client'
}

export interface BroadcastSubscribeOptions extends SubscribeCommon {
  mode: 'broadcast'
  group?: never
  commit?: 'auto'
}

export type SubscribeOptions = GroupSubscribeOptions | BroadcastSubscribeOptions

export interface Subscription {
  readonly topics: string[]
  /** Resolves once the server confirms the subscribe (the group is joined); rejects if it is refused. */
  readonly ready: Promise<void>
  /** Resolves once the server has the new subscription (or the feed's socket is closed). */
  unsubscribe (): Promise<void>
}

/** Lost records: Kafka no longer has offsets [from, to) of this partition (below its low watermark). */
export interface Gap {
  topic: string
  partition: number
  from: number
  to: number
}

export interface Events {
  state: { state: State, previous: State }
  error: WskafkaError
  gap: Gap
  retry: { socket: string, code: number, reason: string, delay: number, attempt: number }
}

/** Positions per feed: topic → partition → the first offset not yet handled. */
export type Positions = Record<string, Record<string, Record<string, number>>>

export interface RequestOptions {
  timeout?: number
}

export interface Client {
  readonly state: State
  /** Returns a function that removes the listener. */
  on<K extends keyof Events> (type: K, listener: (event: Events[K]) => void): () => void
  /** Any request of the protocol: resolves with the reply's `p`. */
  request (t: string, a?: string, p?: unknown, options?: RequestOptions): Promise<any>
  /** Publish with a receipt (`"ack": true`). */
  publish (topic: string, value: Value, options?: PublishOptions): Promise<Receipt>
  /** Publish without a receipt: a failure is an `error` event. */
  send (topic: string, value: Value, options?: Omit<PublishOptions, 'timeout'>): void
  subscribe (topics: string | string[], handler: Handler, options?: SubscribeOptions): Subscription
  createTopics (topics: Array<string | { name: string, partitions?: number, replication?: number, configs?: Record<string, string> }>, options?: RequestOptions): Promise<unknown>
  listTopics (options?: RequestOptions): Promise<Array<{ topic: string, partition: number }>>
  describeTopics (topics: string | string[], group?: string, options?: RequestOptions): Promise<Array<{ topic: string, partitions: Array<{ partition: number, leader: number, low: number, high: number, committed?: number, lag?: number }> }>>
  deleteTopics (topics: string[], options?: RequestOptions): Promise<string[]>
  health (p?: unknown, options?: RequestOptions): Promise<{ consumers: Array<{ ws: number, topics: string[] }> }>
  /** A round trip to the server, in ms. */
  ping (options?: RequestOptions): Promise<number>
  positions (): Positions
  /** Closes every socket, rejects what is pending, removes every listener and timer. */
  close (): void
}

export function connect (url: string | URL, options?: Options): Client
export function backoff (attempt: number, base: number, max: number, random?: () => number): number
export function toBase64 (value: string | Bytes): string
export function fromBase64 (base64: string): Uint8Array
