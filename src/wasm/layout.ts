/**
 * Weight layouts of the wasm kernels (see assembly/simd.ts, shrink.ts, expand.ts), built once in
 * setAdapter so that the kernels read weights sequentially and decode them cheaply.
 */
import type { WeightDtype } from '../types.js'

/** bf16 8-groups are stored as e0 e4 e1 e5 e2 e6 e3 e7 (one 16-byte load -> two f32x4 halves). */
const BF16_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]

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
 * Stacked A [R x inF] row-major (every slice's rows, slice after slice) -> the shrink's quad
 * layout (assembly/shrink.ts): each row's 8-groups in `dtype` order (orderGroups); then rows in
 * blocks of 4, where the first G = inF & ~7 values of the 4 rows are interleaved in 16-byte
 * chunks (4 f32 or 8 16-bit values: chunk c of rows 0..3, then chunk c + 1, ...) and followed by
 * the rows' last inF - G values, row after row; the last R % 4 rows stay plain rows.
 */
export function packShrinkA(A: Float32Array, R: number, inF: number, dtype: WeightDtype): Float32Array {
  const rows = orderGroups(new Float32Array(A), inF, dtype)
  const out = new Float32Array(rows.length)
  const E = dtype === 'f32' ? 4 : 8 // values per chunk
  const G = inF & ~7
  const t = inF - G
  const R4 = R & ~3
  for (let q = 0; q < R4; q += 4) {
    const base = q * inF
    let o = base
    for (let c = 0; c < G; c += E) {
      for (let j = 0; j < 4; j++) {
        const from = base + j * inF + c
        out.set(rows.subarray(from, from + E), o)
        o += E
      }
    }
    for (let j = 0; j < 4; j++) {
      const from = base + j * inF + G
      out.set(rows.subarray(from, from + t), o)
      o += t
    }
  }
  out.set(rows.subarray(R4 * inF), R4 * inF)
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
