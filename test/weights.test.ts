/**
 * Per-entry adapter weights (`options.weights`): the plan carries them in entry order, bad
 * weights are refused before anything is written, and the threaded wasm backend gives the
 * reference's sums. The kernel grid (test/grid.ts, `weighted` cases) covers every backend.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { buildSegments, SORT_BELOW } from '../src/metadata.js'
import { expectDelta, expectLoraError, TOLERANCE } from './compare.js'
import { makeCase, type Case } from './grid.js'
import { Rng } from './random.js'
import { sgmv } from './reference.js'

describe('buildSegments: entry weights', () => {
  /** The weight of each plan entry, found from its definition: entries stably ordered by slot. */
  function naive(ids: Int32Array, w: Float32Array): number[] {
    return [...ids]
      .map((s, i) => ({ s, i }))
      .filter((e) => e.s >= 0)
      .sort((a, b) => a.s - b.s || a.i - b.i)
      .map((e) => w[e.i])
  }

  it('follow the entries through the counting sort and the sort, K = 1 and 3, chunks cut', () => {
    const rng = new Rng(11)
    for (const [T, K, slots] of [
      [40, 1, 4],
      [17, 3, 5],
      [3, 2, 1000],
      [6, 1, 6 * SORT_BELOW + 1],
    ] as const) {
      const ids = new Int32Array(T * K).map(() => (rng.next() < 0.2 ? -1 : rng.int(slots)))
      for (let t = 0; t < T; t++) for (let k = 1; k < K; k++) if (ids.slice(t * K, t * K + k).includes(ids[t * K + k])) ids[t * K + k] = -1
      const w = rng.array(T * K)
      const plan = buildSegments(ids, K, slots, 4, w)
      expect([...plan.weights!], `T=${T} K=${K} slots=${slots}`).toEqual(naive(ids, w))
      expect(buildSegments(ids, K, slots, 4).weights).toBeUndefined()
    }
  })
})

describe.each(['wasm', 'threads'] as const)('per-entry weights on %s', (kind) => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'wasm', threads: kind === 'threads' ? 3 : 1, threadsMinWork: 0 })
  })
  afterAll(() => rt?.dispose())

  const c: Case = {
    name: 'weights',
    inFeatures: 96,
    sliceWidths: [64, 24],
    slots: 4,
    rank: 8,
    tokens: 300,
    pattern: 'uniform',
    dtype: 'f32',
    adaptersPerToken: 2,
    weighted: true,
    seed: 5,
  }

  it('match the float64 reference (a call large enough to be split over threads without weights)', async () => {
    const d = makeCase(c)
    const layer = rt.createLayer(d.options)
    for (const [slot, a] of d.adapters) layer.setAdapter(slot, a)
    const y = new Float32Array(d.y)
    await layer.apply(d.x, y, d.ids, { adaptersPerToken: 2, weights: d.weights })
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids, 2, d.weights), TOLERANCE.f32, kind)
    // weights of 1 give the unweighted bits
    const y1 = new Float32Array(d.y)
    const y2 = new Float32Array(d.y)
    await layer.apply(d.x, y1, d.ids, { adaptersPerToken: 2, weights: new Float32Array(d.ids.length).fill(1) })
    await layer.apply(d.x, y2, d.ids, { adaptersPerToken: 2 })
    expect(y1).toEqual(y2)
    layer.dispose()
  })

  it('bad weights throw naming the argument; y is untouched', async () => {
    const d = makeCase({ ...c, tokens: 5 })
    const layer = rt.createLayer(d.options)
    for (const [slot, a] of d.adapters) layer.setAdapter(slot, a)
    const y = new Float32Array(d.y)
    const n = d.ids.length
    await expectLoraError(() => layer.apply(d.x, y, d.ids, { adaptersPerToken: 2, weights: new Float32Array(n - 1) }), 'SHAPE_MISMATCH', [
      'options.weights',
      `${n - 1}`,
      `${n}`,
    ])
    await expectLoraError(
      () => layer.apply(d.x, y, d.ids, { adaptersPerToken: 2, weights: [1, 2] as unknown as Float32Array }),
      'INVALID_ARGUMENT',
      ['options.weights', 'Float32Array'],
    )
    const nan = new Float32Array(n).fill(1)
    nan[3] = NaN
    await expectLoraError(() => layer.apply(d.x, y, d.ids, { adaptersPerToken: 2, weights: nan }), 'INVALID_ARGUMENT', [
      'options.weights[3]',
      'finite',
    ])
    nan[3] = -Infinity
    await expectLoraError(() => layer.apply(d.x, y, d.ids, { adaptersPerToken: 2, weights: nan }), 'INVALID_ARGUMENT', [
      'options.weights[3]',
    ])
    expect(y).toEqual(d.y)
    layer.dispose()
  })
})
