/**
 * The contract of a peer in the benchmark: the same mixed batch (x, y, ids over cold copies of the
 * adapters) computed by another library. Peers are devDependencies of the bench only.
 */
import type { SegmentPlan } from '../../src/metadata.js'

/** One adapter's f32 weights (already rounded to the case's dtype), per slice. */
export interface CaseAdapter {
  rank: number
  scale: number
  /** per slice [rank * in], row-major */
  A: Float32Array[]
  /** per slice [n_s * rank], row-major */
  B: Float32Array[]
}

/** The layer every contender of a grid point holds: `slots` adapters (copies of the distinct ones). */
export interface CaseLayer {
  inF: number
  widths: number[]
  out: number
  /** slot s holds copy floor(s / distinct) of adapter s % distinct; each copy has its own memory */
  slots: CaseAdapter[]
}

/** A peer set up on one layer: adds the batch's LoRA delta to y for a segment plan over its slots. */
export interface PeerRunner {
  run(x: Float32Array, y: Float32Array, plan: SegmentPlan): void | Promise<void>
  dispose(): void
}

export interface Peer {
  name: string
  /** Load the library (throws when it is not installed) and hold the layer's weights in its own form. */
  setup(layer: CaseLayer): Promise<PeerRunner>
}

/** Rows of a segment gathered into one [m, width] matrix (peers compute per segment). */
export function gatherRows(
  src: Float32Array,
  width: number,
  plan: SegmentPlan,
  g: number,
  col0 = 0,
  n = width,
  stride = width,
): Float32Array {
  const m = plan.segLength[g]
  const out = new Float32Array(m * n)
  for (let i = 0; i < m; i++) {
    const o = plan.rows[plan.segStart[g] + i] * stride + col0
    out.set(src.subarray(o, o + n), i * n)
  }
  return out
}

/** y[rows of segment g, col0 : col0 + n] = d [m, n] (the peer computed y + delta). */
export function scatterRows(y: Float32Array, stride: number, plan: SegmentPlan, g: number, col0: number, n: number, d: Float32Array): void {
  for (let i = 0; i < plan.segLength[g]; i++) {
    y.set(d.subarray(i * n, (i + 1) * n), plan.rows[plan.segStart[g] + i] * stride + col0)
  }
}
