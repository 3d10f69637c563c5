/**
 * The plain JavaScript baseline: the same segmented SGMV written as straightforward loops over
 * Float32Arrays (f32 weights), the way one would write it without SIMD. Used only by the bench.
 */
import type { SegmentPlan } from '../src/metadata.js'

export interface JsAdapter {
  rank: number
  scale: number
  A: Float32Array[] // per slice [rank * in]
  B: Float32Array[] // per slice [n_s * rank]
}

export function jsSgmv(x: Float32Array, y: Float32Array, inF: number, widths: number[], adapters: JsAdapter[], plan: SegmentPlan): void {
  const out = widths.reduce((a, b) => a + b, 0)
  const h = new Float32Array(4096)
  for (let g = 0; g < plan.segSlot.length; g++) {
    const ad = adapters[plan.segSlot[g]]
    const r = ad.rank
    for (let e = plan.segStart[g]; e < plan.segStart[g] + plan.segLength[g]; e++) {
      const row = plan.rows[e]
      const xo = row * inF
      let col = 0
      for (let s = 0; s < widths.length; s++) {
        const A = ad.A[s]
        const B = ad.B[s]
        for (let k = 0; k < r; k++) {
          let acc = 0
          const ao = k * inF
          for (let i = 0; i < inF; i++) acc += A[ao + i] * x[xo + i]
          h[k] = acc * ad.scale
        }
        const yo = row * out + col
        for (let j = 0; j < widths[s]; j++) {
          let acc = 0
          const bo = j * r
          for (let k = 0; k < r; k++) acc += B[bo + k] * h[k]
          y[yo + j] += acc
        }
        col += widths[s]
      }
    }
  }
}
