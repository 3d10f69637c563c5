/**
 * One table of test cases shared by every backend's suite, modelled on vLLM's LoRA kernel tests:
 * every value of every axis appears in at least one case (the other axes drawn at random from a
 * seeded generator, shrunk where needed to keep the float64 reference fast), plus named edge cases.
 */
import type { AdapterWeights, LayerOptions, LayerSpec, PreparedAdapter, WeightDtype } from '../src/types.js'
import { checkLayerOptions, prepareAdapter } from '../src/validate.js'
import { Rng } from './random.js'
import { roundWeights, type RefAdapter, type RefLayer } from './reference.js'

export type IdPattern = 'distinct' | 'uniform' | 'zipf' | 'identical' | 'skewed' | 'some-none'

export interface Case {
  name: string
  inFeatures: number
  /** Widths of the output slices (1, 2 or 3 unequal). */
  sliceWidths: number[]
  /** Slots of the layer (maxAdapters). */
  slots: number
  /** Largest rank (one used slot has it; the others have random ranks in 1..rank). */
  rank: number
  tokens: number
  pattern: IdPattern
  dtype: WeightDtype
  adaptersPerToken: number
  /** Per-entry adapter weights (`options.weights`): drawn from the seed, 0 and negatives included. */
  weighted?: boolean
  seed: number
}

export const AXES = {
  inFeatures: [1, 3, 64, 2049, 4096],
  rank: [1, 4, 8, 16, 32, 64, 128, 256],
  tokens: [0, 1, 4, 16, 33, 256],
  slots: [1, 8, 32, 128],
  slices: [1, 2, 3],
  pattern: ['distinct', 'uniform', 'zipf', 'identical', 'skewed', 'some-none'] as IdPattern[],
  dtype: ['f32', 'bf16', 'f16'] as WeightDtype[],
  adaptersPerToken: [1, 2, 3],
  weighted: [false, true],
}

/** Output widths for a slice count: a plain layer, an unequal pair, a GQA-like unequal triple. */
export function sliceWidthsFor(out: number, slices: number): number[] {
  if (slices === 1) return [out]
  if (slices === 2) return [out, Math.max(1, (out >> 1) + 1)]
  return [out, Math.max(1, out >> 2), Math.max(1, (out >> 2) + 3)]
}

type Axis = keyof typeof AXES
const MAX_REF_FLOPS = 6e7 // float64 reference cost per case
const MAX_WEIGHTS = 8e6 // floats of weights set per case

/** The sampled grid: each axis value once (twice with another seed when `seeds` = 2). */
export function caseGrid(seeds = 1): Case[] {
  const cases: Case[] = []
  let seed = 1
  for (let rep = 0; rep < seeds; rep++) {
    for (const axis of Object.keys(AXES) as Axis[]) {
      for (const value of AXES[axis] as (number | string | boolean)[]) {
        cases.push(drawCase(axis, value, seed++))
      }
    }
  }
  return [...cases, ...edgeCases()]
}

function drawCase(fixed: Axis, value: number | string | boolean, seed: number): Case {
  const rng = new Rng(seed * 7919)
  const v = <A extends Axis>(axis: A): (typeof AXES)[A][number] =>
    (axis === fixed ? value : rng.pick((axis === 'tokens' ? AXES.tokens.slice(1) : AXES[axis]) as unknown[])) as (typeof AXES)[A][number]
  const c = {
    inFeatures: v('inFeatures') as number,
    rank: v('rank') as number,
    tokens: v('tokens') as number,
    slots: v('slots') as number,
    slices: v('slices') as number,
    pattern: v('pattern') as IdPattern,
    dtype: v('dtype') as WeightDtype,
    adaptersPerToken: v('adaptersPerToken') as number,
    weighted: v('weighted') as boolean,
  }
  const outBase = () => (c.inFeatures === 1 ? 5 : c.inFeatures === 4096 ? 1024 : c.inFeatures)
  const cost = () => {
    const out = sliceWidthsFor(outBase(), c.slices).reduce((a, b) => a + b, 0)
    const used = Math.min(c.slots, Math.max(1, c.tokens * c.adaptersPerToken))
    return {
      flops: c.tokens * c.adaptersPerToken * c.rank * (c.inFeatures * c.slices + out) * 2,
      weights: used * c.rank * (c.inFeatures * c.slices + out),
    }
  }
  // shrink the free axes (never the fixed one) until the case is cheap enough
  const shrinkable: Axis[] = ['tokens', 'rank', 'inFeatures', 'slots', 'slices']
  for (let guard = 0; guard < 40; guard++) {
    const { flops, weights } = cost()
    if (flops <= MAX_REF_FLOPS && weights <= MAX_WEIGHTS) break
    // tokens shrink down to 1, never to an empty batch (that case is named separately)
    const floor = (a: Axis) => (a === 'tokens' ? 1 : 0)
    const free = shrinkable.filter((a) => a !== fixed && (AXES[a] as number[]).indexOf(c[a as keyof typeof c] as number) > floor(a))
    if (free.length === 0) break
    const a = free[guard % free.length]
    const list = AXES[a] as number[]
    ;(c as Record<string, unknown>)[a] = list[list.indexOf(c[a as keyof typeof c] as number) - 1]
  }
  return {
    name: `${fixed}=${value} in=${c.inFeatures} out=${sliceWidthsFor(outBase(), c.slices).join('/')} r=${c.rank} T=${c.tokens} slots=${c.slots} ${c.pattern} ${c.dtype} K=${c.adaptersPerToken}${c.weighted ? ' weighted' : ''}`,
    inFeatures: c.inFeatures,
    sliceWidths: sliceWidthsFor(outBase(), c.slices),
    slots: c.slots,
    rank: c.rank,
    tokens: c.tokens,
    pattern: c.pattern,
    dtype: c.dtype,
    adaptersPerToken: c.adaptersPerToken,
    weighted: c.weighted,
    seed,
  }
}

/** Named edge cases. */
export function edgeCases(): Case[] {
  const base: Omit<Case, 'name'> = {
    inFeatures: 64,
    sliceWidths: [48],
    slots: 8,
    rank: 8,
    tokens: 16,
    pattern: 'uniform',
    dtype: 'f32',
    adaptersPerToken: 1,
    seed: 99,
  }
  const e = (name: string, over: Partial<Case>): Case => ({ ...base, name, ...over })
  return [
    e('empty batch (T = 0)', { tokens: 0 }),
    e('every token -1', { pattern: 'some-none', seed: -1 }),
    e('one token', { tokens: 1 }),
    e('rank 1, in % 4 != 0', { rank: 1, inFeatures: 2049, sliceWidths: [7] }),
    e('in = 1, out = 1', { inFeatures: 1, sliceWidths: [1] }),
    e('unequal slices, odd widths', { sliceWidths: [13, 5, 6], inFeatures: 35 }),
    e('every token a different slot', { slots: 32, tokens: 32, pattern: 'distinct' }),
    e('one segment longer than a chunk', { tokens: 200, pattern: 'identical', slots: 1 }),
    e('QKV 4096/1024/1024 r16', { inFeatures: 4096, sliceWidths: [4096, 1024, 1024], rank: 16, tokens: 4, slots: 2 }),
    e('three adapters per token with padding', { adaptersPerToken: 3, slots: 4, tokens: 9, pattern: 'some-none' }),
    e('weights, two adapters per token', { adaptersPerToken: 2, slots: 4, tokens: 33, weighted: true }),
    e('weights, one long segment, bf16', { tokens: 70, pattern: 'identical', slots: 1, dtype: 'bf16', weighted: true }),
  ]
}

export interface CaseData {
  options: LayerOptions
  /** Adapters to set, by slot (only the slots the batch uses, plus one unused slot). */
  adapters: Map<number, AdapterWeights>
  x: Float32Array
  /** y before the call (random: the delta must be accumulated into it). */
  y: Float32Array
  ids: Int32Array
  /** [T * K] per-entry weights (weighted cases only). */
  weights?: Float32Array
  /** The reference layer (weights rounded to the case dtype). */
  ref: RefLayer
}

/** Draw the slot ids of a batch. seed -1 in a case means: every id is -1. */
export function drawIds(rng: Rng, c: Case): Int32Array {
  const { tokens: T, adaptersPerToken: K, slots: L } = c
  const ids = new Int32Array(T * K).fill(-1)
  if (c.seed === -1) return ids
  const fixed = rng.int(L)
  const first = (t: number): number => {
    switch (c.pattern) {
      case 'distinct':
        return t % L
      case 'uniform':
        return rng.int(L)
      case 'zipf': {
        // P(k) proportional to 1 / (k + 1)
        let total = 0
        for (let k = 0; k < L; k++) total += 1 / (k + 1)
        let u = rng.next() * total
        for (let k = 0; k < L; k++) if ((u -= 1 / (k + 1)) <= 0) return k
        return L - 1
      }
      case 'identical':
        return fixed
      case 'skewed':
        return rng.next() < 0.9 ? fixed : rng.int(L)
      case 'some-none':
        return rng.next() < 0.3 ? -1 : rng.int(L)
    }
  }
  for (let t = 0; t < T; t++) {
    const chosen = new Set<number>()
    const a = first(t)
    if (a >= 0) chosen.add(a)
    for (let k = 1; k < K && chosen.size < L; k++) {
      if (rng.next() < 0.25) continue // -1 padding
      let b = rng.int(L)
      while (chosen.has(b)) b = (b + 1) % L
      chosen.add(b)
    }
    let k = 0
    for (const s of chosen) ids[t * K + k++] = s
  }
  return ids
}

/** Materialise a case's data from its seed. */
export function makeCase(c: Case): CaseData {
  const rng = new Rng(Math.abs(c.seed) * 104729 + 17)
  const ids = drawIds(rng, c)
  const used = new Set<number>()
  for (const id of ids) if (id >= 0) used.add(id)
  if (used.size < c.slots) used.add([...Array(c.slots).keys()].find((s) => !used.has(s))!) // one slot set but unused
  const adapters = new Map<number, AdapterWeights>()
  const refAdapters: (RefAdapter | undefined)[] = new Array(c.slots).fill(undefined)
  let first = true
  for (const slot of [...used].sort((a, b) => a - b)) {
    const rank = first ? c.rank : 1 + rng.int(c.rank)
    first = false
    const scale = 0.5 + rng.next() * 1.5
    // magnitudes like trained LoRA weights: A ~ 1/sqrt(in), B small
    const A = c.sliceWidths.map(() => rng.array(rank * c.inFeatures, 1 / Math.sqrt(c.inFeatures)))
    const B = c.sliceWidths.map((n) => rng.array(n * rank, 0.1))
    adapters.set(slot, { rank, scale, A: c.sliceWidths.length === 1 ? A[0] : A, B: c.sliceWidths.length === 1 ? B[0] : B })
    refAdapters[slot] = { rank, scale, A: A.map((a) => roundWeights(a, c.dtype)), B: B.map((b) => roundWeights(b, c.dtype)) }
  }
  const out = c.sliceWidths.reduce((a, b) => a + b, 0)
  return {
    options: {
      inFeatures: c.inFeatures,
      outFeatures: c.sliceWidths.length === 1 ? c.sliceWidths[0] : c.sliceWidths,
      maxAdapters: c.slots,
      maxRank: c.rank,
      weightDtype: c.dtype,
    },
    adapters,
    x: rng.array(c.tokens * c.inFeatures),
    y: rng.array(c.tokens * out),
    ids,
    weights: c.weighted ? drawWeights(new Rng(Math.abs(c.seed) * 7 + 3), ids.length) : undefined,
    ref: { inFeatures: c.inFeatures, sliceWidths: c.sliceWidths, adapters: refAdapters },
  }
}

/** Per-entry weights: mostly in [-1.5, 2.5), with exact 0, 1 and -1 among them. */
function drawWeights(rng: Rng, n: number): Float32Array {
  const w = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const u = rng.next()
    w[i] = u < 0.1 ? 0 : u < 0.2 ? 1 : u < 0.25 ? -1 : 0.5 + rng.float(2)
  }
  return w
}

/** A case's data at the backend level: the validated spec and the prepared (rounded) adapters, indexed by slot. */
export function materialise(c: Case): Omit<CaseData, 'options' | 'adapters'> & { spec: LayerSpec; adapters: PreparedAdapter[] } {
  const d = makeCase(c)
  const spec = checkLayerOptions(d.options)
  const adapters: PreparedAdapter[] = [] // sparse: only the slots the case sets
  for (const [slot, a] of d.adapters) adapters[slot] = prepareAdapter(spec, slot, a)
  return { spec, adapters, ref: d.ref, x: d.x, y: d.y, ids: d.ids, weights: d.weights }
}
