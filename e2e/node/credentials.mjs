// The client library's credentials option against the real binary, as a browser would use it: the token in the
// query string expires, the server closes with 4001, the application hands a new token, the client reconnects with
// it and goes on in the same namespace. Prints one JSON line for the Go test (TestClientCredentials).
//
//   node credentials.mjs <ws url> <token url>
import { WebSocket } from 'ws'
import { connect } from '../../client/wskafka.js'

const [base, tokenURL] = process.argv.slice(2)
const token = async () => (await fetch(tokenURL)).text()
let renewals = 0
const kafka = connect(`${base}?token=${await token()}`, {
  WebSocket,
  reconnectSoon: 100,
  credentials: async () => {
    renewals++
    return { url: `${base}?token=${await token()}` }
  }
})
const retries = []
kafka.on('retry', (r) => retries.push(r.code))
const until = async (what, ok) => {
  for (const end = Date.now() + 30000; !ok(); await new Promise((resolve) => setTimeout(resolve, 20))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
  }
}

await kafka.createTopics([{ name: 'renewed', partitions: 1 }])
const before = await kafka.publish('renewed', 'before')
await until('close code 4001', () => retries.includes(4001))
await until('the reconnect', () => kafka.state === 'connected')
const after = await kafka.publish('renewed', 'after')
console.log(JSON.stringify({ retries, renewals, before, after }))
kafka.close()
