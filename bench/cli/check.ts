/**
 * Every contender's output is checked against a float64 reference before it is timed: on a sample
 * of rows (the full reference of a 4096-token batch would cost more than the benchmark).
 */
import { expand, shrink } from '../../test/reference.js'
import type { CaseLayer } from '../peers/types.js'

/** Relative tolerance against the largest |delta| of the row (all contenders compute in f32). */
export const CHECK_TOLERANCE = 1e-4

/** Delta of token row t through slot a, float64 (the tests' reference kernels, row by row). */
function refRow(layer: CaseLayer, x: Float32Array, t: number, a: number): Float64Array {
  const { inF, widths, out } = layer
  const ad = layer.slots[a]
  const d = new Float64Array(out)
  let col = 0
  widths.forEach((n, s) => {
    d.set(expand(ad.B[s], n, ad.rank, shrink(ad.A[s], ad.rank, x, t, inF), ad.scale), col)
    col += n
  })
  return d
}

/**
 * Worst relative error of y (computed from zeros) over up to `samples` rows spread over the batch.
 * @param ids [T] slot of each token (one adapter per token; -1 = none)
 */
export function worstError(layer: CaseLayer, x: Float32Array, ids: Int32Array, y: Float32Array, samples = 6): number {
  const T = ids.length
  let worst = 0
  for (let q = 0; q < Math.min(samples, T); q++) {
    const t = Math.floor((q * T) / Math.min(samples, T))
    const want = ids[t] < 0 ? new Float64Array(layer.out) : refRow(layer, x, t, ids[t])
    let scale = 1e-12
    for (const v of want) scale = Math.max(scale, Math.abs(v))
    for (let j = 0; j < layer.out; j++) worst = Math.max(worst, Math.abs(y[t * layer.out + j] - want[j]) / scale)
  }
  return worst
}
