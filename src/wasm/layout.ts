/**
 * Weight layouts of the wasm kernels (see assembly/simd.ts, shrink.ts, expand.ts), built once in
 * setAdapter so that the kernels read weights sequentially and decode them cheaply.
 */
import type { WeightDtype } from '../types.js'

/** bf16 8-groups are stored as e0 e4 e1 e5 e2 e6 e3 e7 (one 16-byte load -> two f32x4 halves). */
const BF16_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]
const NATURAL_ORDER = [0, 1, 2, 3, 4, 5, 6, 7]

/**
 * Reorder, in place, every full group of 8 in each row of `rowLen` values, as the kernels read
 * `dtype` (only bf16 is reordered; tails shorter than 8 stay in natural order).
 */
export function orderGroups(values: Float32Array, rowLen: number, dtype: WeightDtype): Float32Array {
  if (dtype !== 'bf16') return values
  const groups = rowLen >> 3
  const tmp = new Float32Array(8)
  for (let r = 0; r + rowLen <= values.length; r += rowLen) {
    for (let g = 0; g < groups; g++) {
      const o = r + g * 8
      for (let i = 0; i < 8; i++) tmp[i] = values[o + BF16_ORDER[i]]
      values.set(tmp, o)
    }
  }
  return values
}

/**
 * A of every slice ([rank x inF] row-major each), stacked row-wise (R = slices * rank rows) into
 * the shrink's quad layout (assembly/shrink.ts): rows in blocks of 4, where the first
 * G = inF & ~7 values of the 4 rows are interleaved in 16-byte chunks (4 f32 or 8 16-bit values:
 * chunk c of rows 0..3, then chunk c + 1, ...) and followed by the rows' last inF - G values, row
 * after row; the last R % 4 rows stay plain rows. 8-groups are in `dtype` order (orderGroups).
 */
export function packShrinkA(slices: readonly Float32Array[], rank: number, inF: number, dtype: WeightDtype): Float32Array {
  const R = slices.length * rank
  const out = new Float32Array(R * inF)
  const order = dtype === 'bf16' ? BF16_ORDER : NATURAL_ORDER
  const E = dtype === 'f32' ? 4 : 8 // values per chunk
  const G = inF & ~7
  const t = inF - G
  const R4 = R & ~3
  const rowOf = (r: number) => slices[Math.floor(r / rank)]
  const startOf = (r: number) => (r % rank) * inF
  let o = 0
  for (let q = 0; q < R4; q += 4) {
    const rows = [rowOf(q), rowOf(q + 1), rowOf(q + 2), rowOf(q + 3)]
    const starts = [startOf(q), startOf(q + 1), startOf(q + 2), startOf(q + 3)]
    for (let c = 0; c < G; c += 8) {
      // one 8-group of each row: as one 16-bit chunk, or as two f32 chunks 4 chunks apart
      for (let j = 0; j < 4; j++) {
        const row = rows[j]
        const from = starts[j] + c
        const to = o + j * E
        for (let i = 0; i < 8; i++) out[to + (i < E ? i : 4 * E + i - E)] = row[from + order[i]]
      }
      o += 32
    }
    for (let j = 0; j < 4; j++) {
      out.set(rows[j].subarray(starts[j] + G, starts[j] + inF), o)
      o += t
    }
  }
  // the last R % 4 rows: plain rows, in the group order
  for (let r = R4; r < R; r++, o += inF) {
    out.set(rowOf(r).subarray(startOf(r), startOf(r) + inF), o)
    orderGroups(out.subarray(o, o + inF), inF, dtype)
  }
  return out
}

/**
 * B [n x rank] row-major -> 8-column panels: for panel p, [rank x 8] with element (k, c) =
 * B[8p + c, k] (each panel row an 8-group in `dtype` order); then the last n % 8 columns as
 * [rank x (n % 8)] in natural order.
 */
export function packPanels(B: Float32Array, n: number, rank: number, dtype: WeightDtype): Float32Array {
  const out = new Float32Array(n * rank)
  const full = n >> 3
  let o = 0
  for (let p = 0; p < full; p++) {
    for (let k = 0; k < rank; k++) for (let c = 0; c < 8; c++) out[o++] = B[(p * 8 + c) * rank + k]
  }
  orderGroups(out.subarray(0, o), 8, dtype)
  const rem = n & 7
  for (let k = 0; k < rank; k++) for (let c = 0; c < rem; c++) out[o++] = B[(full * 8 + c) * rank + k]
  return out
}
