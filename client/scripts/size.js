// npm run size: the gzipped size of what the package ships, against the budget (fails above it).
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'

const budget = 8 * 1024
const file = new URL('../wskafka.js', import.meta.url)
const raw = readFileSync(file)
const gz = gzipSync(raw, { level: 9 }).length
console.log(`wskafka.js: ${raw.length} bytes, ${gz} bytes gzipped (budget ${budget})`)
if (gz > budget) {
  console.error(`over the budget by ${gz - budget} bytes`)
  process.exitCode = 1
}
