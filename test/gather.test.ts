/**
 * Embedding layers (the gather kernel: assembly/gather.ts, shaders/gather.wgsl) against the
 * float64 reference on every backend: seeded shapes including awkward ones, dtypes, several
 * adapters per token, -1, per-entry weights; and their argument checks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import type { WeightDtype } from '../src/types.js'
import { expectDelta, expectLoraError, expectUntouchedRows, TOLERANCE } from './compare.js'
import { Rng } from './random.js'
import { gather, roundWeights, type RefAdapter } from './reference.js'
import { has } from './needs.js'

interface GatherCase {
  vocab: number
  dim: number
  rank: number
  T: number
  K: number
  slots: number
  dtype: WeightDtype
  weighted: boolean
  seed: number
}

const CASES: GatherCase[] = [
  { vocab: 1, dim: 1, rank: 1, T: 1, K: 1, slots: 1, dtype: 'f32', weighted: false, seed: 1 },
  { vocab: 7, dim: 5, rank: 3, T: 0, K: 1, slots: 2, dtype: 'f32', weighted: false, seed: 2 },
  { vocab: 128, dim: 64, rank: 16, T: 50, K: 1, slots: 3, dtype: 'f32', weighted: false, seed: 3 },
  { vocab: 128, dim: 64, rank: 16, T: 50, K: 2, slots: 3, dtype: 'f32', weighted: true, seed: 4 },
  { vocab: 1001, dim: 130, rank: 8, T: 70, K: 1, slots: 5, dtype: 'bf16', weighted: true, seed: 5 },
  { vocab: 33, dim: 17, rank: 64, T: 9, K: 3, slots: 4, dtype: 'f16', weighted: false, seed: 6 },
  { vocab: 500, dim: 4096, rank: 4, T: 3, K: 1, slots: 8, dtype: 'bf16', weighted: false, seed: 7 },
]

function makeGather(c: GatherCase) {
  const rng = new Rng(c.seed * 977)
  const adapters: RefAdapter[] = []
  const set: { rank: number; scale: number; A: Float32Array; B: Float32Array }[] = []
  for (let s = 0; s < c.slots; s++) {
    const rank = s === 0 ? c.rank : 1 + rng.int(c.rank)
    const scale = 0.5 + rng.next()
    const A = rng.array(rank * c.vocab)
    const B = rng.array(c.dim * rank, 0.1)
    set.push({ rank, scale, A, B })
    adapters.push({ rank, scale, A: [roundWeights(A, c.dtype)], B: [roundWeights(B, c.dtype)] })
  }
  const tokens = new Int32Array(c.T).map(() => rng.int(c.vocab))
  const ids = new Int32Array(c.T * c.K).fill(-1)
  for (let t = 0; t < c.T; t++) {
    const used = new Set<number>()
    for (let k = 0; k < c.K; k++) {
      if (rng.next() < 0.2) continue
      const s = rng.int(c.slots)
      if (!used.has(s)) used.add(s), (ids[t * c.K + k] = s)
    }
  }
  const weights = c.weighted ? rng.array(c.T * c.K, 2) : undefined
  const y = rng.array(c.T * c.dim)
  return { set, ref: { inFeatures: c.vocab, sliceWidths: [c.dim], adapters }, tokens, ids, weights, y }
}

const gpuHere = await has('webgpu', 'skipped its WebGPU part')
const KINDS = gpuHere ? (['wasm', 'threads', 'webgpu'] as const) : (['wasm', 'threads'] as const)

describe.each(KINDS)('gather (embedding layers) on %s', (kind) => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: kind === 'webgpu' ? 'webgpu' : 'wasm', threads: kind === 'threads' ? 2 : 1, threadsMinWork: 0 })
  })
  afterAll(() => rt?.dispose())
  const backend = kind === 'webgpu' ? 'webgpu' : 'wasm'

  it.each(
    CASES.map(
      (c) => [`vocab ${c.vocab} dim ${c.dim} r ${c.rank} T ${c.T} K ${c.K} ${c.dtype}${c.weighted ? ' weighted' : ''}`, c] as const,
    ),
  )('matches the float64 reference: %s', async (_name, c) => {
    const d = makeGather(c)
    const layer = rt.createLayer({
      inFeatures: c.vocab,
      outFeatures: c.dim,
      maxAdapters: c.slots,
      maxRank: c.rank,
      weightDtype: c.dtype,
      embedding: true,
    })
    d.set.forEach((a, s) => layer.setAdapter(s, a))
    const y = new Float32Array(d.y)
    await layer.apply(d.tokens, y, d.ids, { backend, adaptersPerToken: c.K, weights: d.weights })
    expectDelta(y, d.y, gather(d.ref, d.tokens, d.ids, c.K, d.weights), TOLERANCE[c.dtype], kind)
    expectUntouchedRows(y, d.y, d.ids, c.K, c.dim)
    layer.dispose()
  })

  it('bad token ids and shapes throw naming the argument; y is untouched', async () => {
    const layer = rt.createLayer({ inFeatures: 10, outFeatures: 4, maxAdapters: 2, maxRank: 2, embedding: true })
    layer.setAdapter(0, { rank: 2, scale: 1, A: new Float32Array(20).fill(1), B: new Float32Array(8).fill(1) })
    const y = new Float32Array(8)
    const ids = Int32Array.of(0, 0)
    await expectLoraError(() => layer.apply(Int32Array.of(3, 10), y, ids, { backend }), 'OUT_OF_RANGE', ['x[1] = 10', '0..9'])
    await expectLoraError(() => layer.apply(Int32Array.of(-1, 0), y, ids, { backend }), 'OUT_OF_RANGE', ['x[0] = -1'])
    await expectLoraError(() => layer.apply(Int32Array.of(3), y, ids, { backend }), 'SHAPE_MISMATCH', ['token ids', 'T = 2'])
    await expectLoraError(() => layer.apply(new Float32Array(20), y, ids, { backend }), 'INVALID_ARGUMENT', ['Int32Array of token ids'])
    expect([...y]).toEqual(new Array(8).fill(0))
    layer.dispose()
    expect(() => rt!.createLayer({ inFeatures: 10, outFeatures: [4, 4], maxAdapters: 1, maxRank: 2, embedding: true })).toThrow(
      /one output slice/,
    )
  })
})
