import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Layer, type LoraErrorCode, type Runtime } from '../src/index.js'
import { expectLoraError } from './compare.js'
import { Rng } from './random.js'
import { WasmBackend } from '../src/wasm/backend.js'
import { backendsOf } from '../src/runtime.js'

let rt: Runtime
beforeAll(async () => {
  rt = await createRuntime({ backend: 'wasm' })
})
afterAll(() => rt?.dispose())

const IN = 6
const OUT = [5, 3]
const rng = new Rng(11)
const adapter = (rank: number) => ({
  rank,
  scale: 1.5,
  A: [rng.array(rank * IN), rng.array(rank * IN)],
  B: [rng.array(5 * rank), rng.array(3 * rank)],
})

function newLayer(): Layer {
  const layer = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: 4, maxRank: 8 })
  layer.setAdapter(0, adapter(4))
  layer.setAdapter(1, adapter(8))
  return layer
}

describe('apply: bad input throws LoraError and leaves y untouched', () => {
  const T = 3
  const x = rng.array(T * IN)
  const ids = Int32Array.of(0, -1, 1)
  const cases: [string, (l: Layer, y: Float32Array) => Promise<void>, LoraErrorCode, string[]][] = [
    ['x too short', (l, y) => l.apply(x.subarray(1), y, ids), 'SHAPE_MISMATCH', ['x', '18']],
    ['y too long', (l) => l.apply(x, new Float32Array(T * 8 + 1), ids), 'SHAPE_MISMATCH', ['y', '24']],
    ['ids not Int32Array', (l, y) => l.apply(x, y, [0, 1, 1] as unknown as Int32Array), 'INVALID_ARGUMENT', ['ids']],
    ['x not Float32Array', (l, y) => l.apply(Array.from(x) as unknown as Float32Array, y, ids), 'INVALID_ARGUMENT', ['x']],
    ['id out of range', (l, y) => l.apply(x, y, Int32Array.of(0, 4, 1)), 'OUT_OF_RANGE', ['ids[1]', '4']],
    ['id below -1', (l, y) => l.apply(x, y, Int32Array.of(0, -2, 1)), 'OUT_OF_RANGE', ['ids[1]']],
    ['slot never set', (l, y) => l.apply(x, y, Int32Array.of(0, 3, 1)), 'SLOT_EMPTY', ['slot 3']],
    [
      'adaptersPerToken does not divide ids',
      (l, y) => l.apply(x, y, Int32Array.of(0, 1, 1, 0), { adaptersPerToken: 3 }),
      'SHAPE_MISMATCH',
      ['adaptersPerToken'],
    ],
    ['adaptersPerToken fractional', (l, y) => l.apply(x, y, ids, { adaptersPerToken: 1.5 }), 'INVALID_ARGUMENT', ['adaptersPerToken']],
    [
      'same slot twice in a token',
      (l, y) => l.apply(x, y, Int32Array.of(0, 0, 1, -1, -1, -1), { adaptersPerToken: 2 }),
      'DUPLICATE_ADAPTER',
      ['slot 0'],
    ],
    ['unknown backend', (l, y) => l.apply(x, y, ids, { backend: 'cuda' as never }), 'UNKNOWN_BACKEND', ['cuda']],
    ['unavailable backend', (l, y) => l.apply(x, y, ids, { backend: 'webgpu' }), 'BACKEND_UNAVAILABLE', ['webgpu']],
  ]
  it.each(cases)('%s', async (_name, call, code, mentions) => {
    const layer = newLayer()
    const y = rng.array(T * 8)
    const before = new Float32Array(y)
    await expectLoraError(() => call(layer, y), code, mentions)
    expect(y).toEqual(before)
    layer.dispose()
  })
})

describe('setAdapter: bad input throws LoraError and leaves the slot as it was', () => {
  const cases: [string, () => unknown, LoraErrorCode][] = [
    ['slot out of range', () => adapter(4), 'OUT_OF_RANGE'],
    ['rank above maxRank', () => ({ ...adapter(8), rank: 9 }), 'OUT_OF_RANGE'],
    ['rank 0', () => ({ ...adapter(4), rank: 0 }), 'OUT_OF_RANGE'],
    ['rank fractional', () => ({ ...adapter(4), rank: 2.5 }), 'INVALID_ARGUMENT'],
    ['scale NaN', () => ({ ...adapter(4), scale: NaN }), 'INVALID_ARGUMENT'],
    ['scale Infinity', () => ({ ...adapter(4), scale: Infinity }), 'INVALID_ARGUMENT'],
    ['scale beyond the f32 range', () => ({ ...adapter(4), scale: -1e300 }), 'INVALID_ARGUMENT'],
    ['A has one slice instead of two', () => ({ ...adapter(4), A: rng.array(4 * IN) }), 'SHAPE_MISMATCH'],
    [
      'B slice too short',
      () => {
        const a = adapter(4)
        return { ...a, B: [a.B[0], rng.array(3 * 4 - 1)] }
      },
      'SHAPE_MISMATCH',
    ],
    [
      'A contains NaN',
      () => {
        const a = adapter(4)
        a.A[1][3] = NaN
        return a
      },
      'INVALID_ARGUMENT',
    ],
    ['not an object', () => null, 'INVALID_ARGUMENT'],
  ]
  it.each(cases)('%s', async (name, make, code) => {
    const layer = newLayer()
    const x = rng.array(2 * IN)
    const ids = Int32Array.of(1, 0)
    const y0 = new Float32Array(16)
    await layer.apply(x, y0, ids)
    const slot = name === 'slot out of range' ? 4 : 1
    await expectLoraError(() => layer.setAdapter(slot, make() as never), code)
    const y1 = new Float32Array(16)
    await layer.apply(x, y1, ids)
    expect(y1).toEqual(y0)
    layer.dispose()
  })

  it('f16 weights that overflow f16 are rejected', async () => {
    const layer = rt.createLayer({ inFeatures: IN, outFeatures: 5, maxAdapters: 2, maxRank: 2, weightDtype: 'f16' })
    const A = rng.array(2 * IN)
    A[0] = 70000
    await expectLoraError(() => layer.setAdapter(0, { rank: 2, scale: 1, A, B: rng.array(10) }), 'VALUE_OUT_OF_RANGE', ['A[0][0]'])
    expect(layer.hasAdapter(0)).toBe(false)
    layer.dispose()
  })
})

describe('createLayer and lifecycle', () => {
  it.each([
    ['inFeatures 0', { inFeatures: 0, outFeatures: 4, maxAdapters: 1, maxRank: 1 }, 'OUT_OF_RANGE'],
    ['outFeatures empty', { inFeatures: 4, outFeatures: [], maxAdapters: 1, maxRank: 1 }, 'INVALID_ARGUMENT'],
    ['slice width fractional', { inFeatures: 4, outFeatures: [4, 1.5], maxAdapters: 1, maxRank: 1 }, 'INVALID_ARGUMENT'],
    ['maxRank negative', { inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: -1 }, 'OUT_OF_RANGE'],
    ['unknown dtype', { inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1, weightDtype: 'f8' }, 'UNSUPPORTED_DTYPE'],
  ] as [string, object, LoraErrorCode][])('%s', async (_n, options, code) => {
    await expectLoraError(() => rt.createLayer(options as never), code)
  })

  it('clearAdapter empties a slot; apply on it then fails', async () => {
    const layer = newLayer()
    layer.clearAdapter(1)
    expect(layer.hasAdapter(1)).toBe(false)
    await expectLoraError(() => layer.apply(rng.array(IN), new Float32Array(8), Int32Array.of(1)), 'SLOT_EMPTY')
    layer.dispose()
  })

  it('unknown backend in createRuntime', async () => {
    await expectLoraError(() => createRuntime({ backend: 'tpu' as never }), 'UNKNOWN_BACKEND', ['tpu'])
  })

  it('calls on a disposed layer or runtime throw DISPOSED', async () => {
    const rt2 = await createRuntime({ backend: 'wasm' })
    const layer = rt2.createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 })
    layer.dispose()
    await expectLoraError(() => layer.apply(new Float32Array(4), new Float32Array(4), Int32Array.of(-1)), 'DISPOSED')
    rt2.dispose()
    await expectLoraError(() => rt2.createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 }), 'DISPOSED')
  })

  it('rt.backends lists wasm', () => {
    expect(rt.backends).toEqual(['wasm'])
    expect(['simd', 'relaxed-simd']).toContain(rt.wasmVariant)
  })

  it('replacing an adapter frees the old storage (no growth over many replacements)', async () => {
    const layer = rt.createLayer({ inFeatures: 256, outFeatures: 256, maxAdapters: 2, maxRank: 16 })
    const a = { rank: 16, scale: 1, A: rng.array(16 * 256), B: rng.array(256 * 16) }
    const mem = backendsOf(rt).find((b) => b instanceof WasmBackend)!.memory
    layer.setAdapter(0, a)
    const base = mem.allocatedBytes
    for (let i = 0; i < 50; i++) layer.setAdapter(0, a)
    expect(mem.allocatedBytes).toBe(base)
    layer.dispose()
  })
})
