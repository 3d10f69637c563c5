/**
 * The SGMV case table shared by the backend suites: a sample of the full grid in which every
 * value of every axis appears at least once, with the other axes drawn from a seeded generator
 * under a cost budget (so a suite runs in a couple of minutes even on a CPU WebGPU driver).
 */
import { roundToDtype } from '../src/dtype.js'
import type { LayerSpec, PreparedAdapter, WeightDtype } from '../src/types.js'
import { Rng } from './random.js'
import type { RefLayer } from './reference.js'

export type IdsPattern = 'distinct' | 'uniform' | 'zipf' | 'identical' | 'skewed' | 'some-1'

export const AXES = {
  inFeatures: [1, 3, 64, 2049, 4096],
  rank: [1, 4, 8, 16, 64, 128, 256],
  tokens: [0, 1, 4, 16, 33, 256],
  slots: [1, 8, 32],
  slices: [1, 2, 3],
  ids: ['distinct', 'uniform', 'zipf', 'identical', 'skewed', 'some-1'] as IdsPattern[],
  dtype: ['f32', 'bf16', 'f16'] as WeightDtype[],
  adaptersPerToken: [1, 2, 3],
} as const

/** Width of the first slice; the others are narrower and unequal. */
const OUT_WIDTHS = [1, 7, 64, 300, 1024, 4096]

export interface SgmvCase {
  name: string
  seed: number
  inFeatures: number
  sliceWidths: number[]
  /** Largest rank; slot 0 has it, the other slots random ranks 1..maxRank. */
  maxRank: number
  tokens: number
  slots: number
  ids: IdsPattern
  dtype: WeightDtype
  adaptersPerToken: number
}

export function sliceWidthsFor(out: number, slices: number): number[] {
  if (slices === 1) return [out]
  const q = Math.max(1, out >> 2)
  return slices === 2 ? [out, q + 1] : [out, q, q + 3]
}

/** Rough cost: multiply-adds of the reference and bytes of resident weights. */
function cost(c: SgmvCase): { flops: number; weightBytes: number } {
  const out = c.sliceWidths.reduce((a, b) => a + b, 0)
  const S = c.sliceWidths.length
  return {
    flops: c.tokens * c.adaptersPerToken * c.maxRank * (S * c.inFeatures + out),
    weightBytes: c.slots * c.maxRank * (S * c.inFeatures + out) * 4,
  }
}

const MAX_FLOPS = 3e7
const MAX_WEIGHT_BYTES = 96 * 2 ** 20

/** Every value of every axis at least once (one case per axis value), plus named edge cases. */
export function sgmvCases(seed = 1234): SgmvCase[] {
  const rng = new Rng(seed)
  const cases: SgmvCase[] = []
  const draw = (fixed: Partial<Record<keyof typeof AXES | 'out', number | string>>): SgmvCase => {
    for (let attempt = 0; ; attempt++) {
      const pick = <T>(key: keyof typeof AXES | 'out', values: readonly T[]): T =>
        (fixed[key] as T | undefined) ?? (attempt > 20 ? values[0] : rng.pick(values))
      const slices = pick('slices', AXES.slices)
      const c: SgmvCase = {
        name: '',
        seed: rng.int(2 ** 31),
        inFeatures: pick('inFeatures', AXES.inFeatures),
        sliceWidths: sliceWidthsFor(pick('out', OUT_WIDTHS), slices),
        maxRank: pick('rank', AXES.rank),
        tokens: pick('tokens', AXES.tokens),
        slots: pick('slots', AXES.slots),
        ids: pick('ids', AXES.ids),
        dtype: pick('dtype', AXES.dtype),
        adaptersPerToken: pick('adaptersPerToken', AXES.adaptersPerToken),
      }
      const { flops, weightBytes } = cost(c)
      if ((flops <= MAX_FLOPS && weightBytes <= MAX_WEIGHT_BYTES) || attempt > 40) return c
    }
  }
  for (const key of Object.keys(AXES) as (keyof typeof AXES)[]) {
    for (const value of AXES[key]) cases.push(draw({ [key]: value }))
  }
  // named edge cases
  cases.push(draw({ inFeatures: 4096, rank: 16, tokens: 1, slots: 8, slices: 1, out: 4096, adaptersPerToken: 1, ids: 'identical' }))
  cases.push(draw({ inFeatures: 2049, rank: 64, tokens: 33, slots: 8, slices: 3, out: 300, adaptersPerToken: 3, ids: 'some-1' }))
  cases.push(draw({ inFeatures: 64, rank: 1, tokens: 256, slots: 32, adaptersPerToken: 2, ids: 'zipf', dtype: 'bf16' }))
  cases.push(draw({ inFeatures: 3, rank: 256, tokens: 16, slots: 1, adaptersPerToken: 3, ids: 'distinct', dtype: 'f16' }))
  for (const c of cases) {
    c.name =
      `in${c.inFeatures} out[${c.sliceWidths}] r${c.maxRank} T${c.tokens} L${c.slots} ${c.ids} ` +
      `${c.dtype} K${c.adaptersPerToken} #${c.seed}`
  }
  return cases
}

/** The slot ids of a case: [T * K], K distinct slots per token (fewer when there are fewer slots), -1 pads. */
export function makeIds(rng: Rng, c: SgmvCase): Int32Array {
  const K = c.adaptersPerToken
  const ids = new Int32Array(c.tokens * K).fill(-1)
  const hot = rng.int(c.slots)
  const first = (t: number): number => {
    switch (c.ids) {
      case 'distinct': return t % c.slots
      case 'identical': return hot
      case 'skewed': return rng.next() < 0.9 ? hot : rng.int(c.slots)
      case 'zipf': {
        // P(slot i) ~ 1 / (i + 1)
        let total = 0
        for (let i = 0; i < c.slots; i++) total += 1 / (i + 1)
        let u = rng.next() * total
        for (let i = 0; i < c.slots; i++) if ((u -= 1 / (i + 1)) <= 0) return i
        return c.slots - 1
      }
      default: return rng.int(c.slots)
    }
  }
  for (let t = 0; t < c.tokens; t++) {
    const used = new Set<number>()
    const n = Math.min(K, c.slots)
    for (let k = 0; k < n; k++) {
      let s = k === 0 ? first(t) : rng.int(c.slots)
      while (used.has(s)) s = (s + 1) % c.slots
      used.add(s)
      ids[t * K + k] = s
    }
    if (c.ids === 'some-1') for (let k = 0; k < K; k++) if (rng.next() < 0.35) ids[t * K + k] = -1
  }
  return ids
}

export interface MaterialisedCase {
  spec: LayerSpec
  /** Adapter of each slot, weights already rounded to the dtype. */
  adapters: PreparedAdapter[]
  /** The same adapters for test/reference.ts. */
  ref: RefLayer
  x: Float32Array
  /** y before the call. */
  y: Float32Array
  ids: Int32Array
}

/** The data of one case, from its seed. */
export function materialise(c: SgmvCase): MaterialisedCase {
  const rng = new Rng(c.seed)
  const out = c.sliceWidths.reduce((a, b) => a + b, 0)
  const offsets = c.sliceWidths.map((_, s) => c.sliceWidths.slice(0, s).reduce((a, b) => a + b, 0))
  const spec: LayerSpec = {
    inFeatures: c.inFeatures,
    sliceWidths: c.sliceWidths,
    sliceOffsets: offsets,
    outFeatures: out,
    maxAdapters: c.slots,
    maxRank: c.maxRank,
    weightDtype: c.dtype,
  }
  const adapters: PreparedAdapter[] = []
  for (let a = 0; a < c.slots; a++) {
    const rank = a === 0 ? c.maxRank : 1 + rng.int(c.maxRank)
    const aScale = 1 / Math.sqrt(c.inFeatures)
    adapters.push({
      rank,
      scale: 0.5 + rng.next() * 1.5,
      A: c.sliceWidths.map(() => roundToDtype(rng.array(rank * c.inFeatures, aScale), c.dtype)),
      B: c.sliceWidths.map((n) => roundToDtype(rng.array(n * rank), c.dtype)),
    })
  }
  return {
    spec,
    adapters,
    ref: { inFeatures: c.inFeatures, sliceWidths: [...c.sliceWidths], adapters },
    x: rng.array(c.tokens * c.inFeatures),
    y: rng.array(c.tokens * out),
    ids: makeIds(rng, c),
  }
}
