/**
 * The threaded wasm backend on the whole test grid: against the float64 reference (the shared
 * suite, 2 threads on every call), and bit for bit against the single-threaded backend (3 threads
 * on 2 cores: more parts, so more cut points; the split keeps the kernel's entry groups and
 * accumulation order, so results must be identical, not just close).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { ThreadedWasmBackend } from '../src/wasm/threads/backend.js'
import { caseGrid, makeCase } from './grid.js'
import { gridSuite } from './suite.js'
import { backendsOf } from '../src/runtime.js'

let two: Runtime
let three: Runtime
let single: Runtime
beforeAll(async () => {
  two = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
  three = await createRuntime({ backend: 'wasm', threads: 3, threadsMinWork: 0 })
  single = await createRuntime({ backend: 'wasm' })
})
afterAll(() => {
  two?.dispose()
  three?.dispose()
  single?.dispose()
})

describe('threaded runtimes', () => {
  it('really run worker threads here (Node has SharedArrayBuffer and worker_threads)', () => {
    for (const [rt, n] of [
      [two, 2],
      [three, 3],
    ] as const) {
      const b = backendsOf(rt)[0]
      if (!(b instanceof ThreadedWasmBackend)) throw new Error(`a threaded runtime's wasm backend is ${b.constructor.name}`)
      expect(b.threadsUnavailableReason).toBeNull()
      expect(b.threads).toBe(n)
      expect(b.partsFor(1)).toBe(n) // a fixed count splits every call
    }
  })
})

gridSuite('wasm', () => two)

describe.each(caseGrid(2).map((c) => [c.name, c] as const))('3 threads = 1 thread, bit for bit: %s', (_name, c) => {
  it('gives the single-threaded result exactly', async () => {
    const data = makeCase(c)
    const layers = [single.createLayer(data.options), three.createLayer(data.options)]
    try {
      const ys = layers.map(() => new Float32Array(data.y))
      for (let i = 0; i < layers.length; i++) {
        for (const [slot, ad] of data.adapters) layers[i].setAdapter(slot, ad)
        await layers[i].apply(data.x, ys[i], data.ids, { backend: 'wasm', adaptersPerToken: c.adaptersPerToken })
      }
      const mismatch = ys[0].findIndex((v, i) => !Object.is(v, ys[1][i]))
      expect(mismatch, mismatch < 0 ? '' : `y[${mismatch}]: 1 thread ${ys[0][mismatch]}, 3 threads ${ys[1][mismatch]}`).toBe(-1)
      expect(ys[1].length).toBe(data.y.length)
    } finally {
      for (const l of layers) l.dispose()
    }
  })
})
