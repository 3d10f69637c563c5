/**
 * Every way the threaded backend can run a call (src/wasm/threads/backend.ts TUNING: fused granules
 * or two phases, x copied per granule (the first one's own rows first or not) or before the job,
 * y copied in by granule spans or rows, guided or equal granules, early wake-up or not, short
 * segments whole or cut) gives the single-threaded result bit for bit, on the grid cases with one
 * adapter per token (the only ones the fused mode takes).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { TUNING } from '../src/wasm/threads/backend.js'
import { caseGrid, makeCase } from './grid.js'

let two: Runtime
let single: Runtime
beforeAll(async () => {
  two = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
  single = await createRuntime({ backend: 'wasm' })
})
afterAll(() => {
  two?.dispose()
  single?.dispose()
  Object.assign(TUNING, MODES[0])
})

const MODES = [
  { fused: true, guided: true, wakeEarly: true, wholeEntries: 16, xByGranule: true, ySpan: true, xOwnFirst: true },
  { fused: false, guided: true, wakeEarly: true, wholeEntries: 16, xByGranule: true, ySpan: true, xOwnFirst: true },
  { fused: true, guided: false, wakeEarly: false, wholeEntries: 0, xByGranule: false, ySpan: true, xOwnFirst: true },
  { fused: true, guided: true, wakeEarly: true, wholeEntries: 16, xByGranule: false, ySpan: false, xOwnFirst: true },
  { fused: true, guided: false, wakeEarly: true, wholeEntries: 16, xByGranule: true, ySpan: false, xOwnFirst: false },
  { fused: false, guided: false, wakeEarly: false, wholeEntries: 0, xByGranule: false, ySpan: false, xOwnFirst: true },
]
const cases = caseGrid(1).filter((c) => c.adaptersPerToken === 1 && c.tokens >= 16)

describe.each(MODES.map((m) => [JSON.stringify(m), m] as const))('2 threads = 1 thread, bit for bit, %s', (_name, mode) => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    Object.assign(TUNING, mode)
    const data = makeCase(c)
    const layers = [single.createLayer(data.options), two.createLayer(data.options)]
    try {
      const ys = layers.map(() => new Float32Array(data.y))
      for (let i = 0; i < layers.length; i++) {
        for (const [slot, ad] of data.adapters) layers[i].setAdapter(slot, ad)
        await layers[i].apply(data.x, ys[i], data.ids, { backend: 'wasm' })
      }
      const mismatch = ys[0].findIndex((v, i) => !Object.is(v, ys[1][i]))
      expect(mismatch, mismatch < 0 ? '' : `y[${mismatch}]: 1 thread ${ys[0][mismatch]}, 2 threads ${ys[1][mismatch]}`).toBe(-1)
    } finally {
      for (const l of layers) l.dispose()
    }
  })
})
