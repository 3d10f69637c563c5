/**
 * The benchmark grid and the data of each group of points: Llama-7B's fused QKV
 * (4096 -> 4096/1024/1024) over ranks, distinct adapters per batch, T from 1 to 4096, f32 and
 * bf16; in the full run also every typical LoRA-wrapped projection (QKV at rank 8 and 32, o,
 * gate_up and down at rank 16, o at rank 64) at T = 1, 16, 256, 1024.
 * Weights are cold: each layer holds its adapters in copies over >= 128 MiB and successive calls
 * of one contender rotate over the copies (as in serving, where the other layers run between two
 * calls of this one).
 */
import { roundToDtype } from '../../src/dtype.js'
import { buildSegments, type SegmentPlan } from '../../src/metadata.js'
import type { WeightDtype } from '../../src/types.js'
import { Rng } from '../../test/random.js'
import type { CaseAdapter, CaseLayer } from '../peers/types.js'

export interface Shape {
  name: string
  inF: number
  widths: number[]
}
export interface Group {
  shape: Shape
  rank: number
  distinct: number
  tokens: number[]
}

export const DTYPES: WeightDtype[] = ['f32', 'bf16']
export const COLD_BYTES = 128 << 20
const QKV: Shape = { name: 'qkv 4096->4096/1024/1024', inF: 4096, widths: [4096, 1024, 1024] }
const O: Shape = { name: 'o 4096->4096', inF: 4096, widths: [4096] }
const GATE_UP: Shape = { name: 'gate_up 4096->2x11008', inF: 4096, widths: [11008, 11008] }
const DOWN: Shape = { name: 'down 11008->4096', inF: 11008, widths: [4096] }
/** The typical projections: [shape, rank]. */
const PROJECTIONS: [Shape, number][] = [
  [QKV, 8],
  [QKV, 32],
  [O, 16],
  [GATE_UP, 16],
  [DOWN, 16],
  [O, 64],
]

export function gridOf(quick: boolean): Group[] {
  const tokens = quick ? [1, 16, 64, 256, 1024] : [1, 4, 16, 64, 256, 1024, 4096]
  const ranks = quick ? [16] : [16, 64]
  const distinct = quick ? [1, 8] : [1, 8, 32]
  const groups: Group[] = []
  // a batch of T tokens has at most T distinct adapters: points with T < D are left out
  for (const rank of ranks) for (const D of distinct) groups.push({ shape: QKV, rank, distinct: D, tokens: tokens.filter((T) => T >= D) })
  if (!quick) {
    // T = 1 reads one adapter per call; the rotation over cold copies makes it weight-bound as
    // with many adapters in turn. Larger batches mix 8 adapters.
    for (const [shape, rank] of PROJECTIONS) {
      if (!(shape === QKV && rank === 16)) groups.push({ shape, rank, distinct: 1, tokens: [1] })
      groups.push({ shape, rank, distinct: 8, tokens: [16, 256, 1024] })
    }
  }
  return groups
}

export function adapterBytes(shape: Shape, rank: number, dtype: WeightDtype): number {
  const out = shape.widths.reduce((a, b) => a + b, 0)
  return rank * (shape.inF * shape.widths.length + out) * (dtype === 'f32' ? 4 : 2)
}

export function copiesOf(g: Group, dtype: WeightDtype): number {
  return Math.max(1, Math.ceil(COLD_BYTES / (g.distinct * adapterBytes(g.shape, g.rank, dtype))))
}

/** The distinct adapters of a group (f32), and the layer the peers hold: f32 copies in their own memory. */
export function groupData(g: Group): { distinct: CaseAdapter[]; peerLayer: CaseLayer } {
  const rng = new Rng(g.rank * 131 + g.distinct)
  const { inF, widths } = g.shape
  const distinct = Array.from({ length: g.distinct }, () => ({
    rank: g.rank,
    scale: 2,
    A: widths.map(() => rng.array(g.rank * inF, 0.02)),
    B: widths.map((n) => rng.array(n * g.rank, 0.02)),
  }))
  const slots: CaseAdapter[] = []
  for (let c = 0; c < copiesOf(g, 'f32'); c++) {
    for (const a of distinct) slots.push({ ...a, A: a.A.map((m) => new Float32Array(m)), B: a.B.map((m) => new Float32Array(m)) })
  }
  return { distinct, peerLayer: { inF, widths, out: widths.reduce((a, b) => a + b, 0), slots } }
}

/** The same adapters rounded to `dtype` (the reference of the kernels that store that dtype). */
export function rounded(layer: CaseLayer, distinct: CaseAdapter[], dtype: WeightDtype): CaseLayer {
  const slots = distinct.map((a) => ({ ...a, A: a.A.map((m) => roundToDtype(m, dtype)), B: a.B.map((m) => roundToDtype(m, dtype)) }))
  return { ...layer, slots }
}

/** Token t of copy c uses slot c * D + t % D (tokens round-robin over the adapters). */
export class Rotation {
  readonly ids: Int32Array[]
  private readonly plans: (SegmentPlan | undefined)[]
  private next: number
  /**
   * @param lane this contender's index: contenders start on different copies, so that one never
   *   runs right after another on the same (then cached) weights
   * @param start the first copy (instead of the lane's)
   */
  constructor(
    readonly T: number,
    readonly D: number,
    readonly copies: number,
    private readonly slots: number,
    lane = 0,
    start?: number,
  ) {
    this.next = start ?? lane * Math.max(1, Math.floor(copies / 12))
    this.ids = Array.from({ length: copies }, (_, c) => Int32Array.from({ length: T }, (_, t) => c * D + (t % D)))
    this.plans = new Array(copies)
  }
  /** The ids of the next call (and its copy index). */
  nextIds(): Int32Array {
    return this.ids[this.next++ % this.copies]
  }
  /** The segment plan of the next call: peers get one segment per adapter (their GEMMs like long ones). */
  nextPlan(chunk = 1 << 30): SegmentPlan {
    const c = this.next++ % this.copies
    return (this.plans[c] ??= buildSegments(this.ids[c], 1, this.slots, chunk))
  }
}
