import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { WasmBackend } from '../src/wasm/backend.js'
import { TOLERANCE } from './compare.js'
import { Rng } from './random.js'
import { expand } from './reference.js'
import { DTYPE_CODE, kernelBackend, packPanels, put, roundToDtype } from './wasm-kernel.js'

let b: WasmBackend
beforeAll(async () => {
  b = await kernelBackend()
})
afterAll(() => b?.dispose())

// (width, rank, n entries, column offset in y): widths not a multiple of 8 or 4, rank 1, one entry.
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 0],
  [7, 3, 2, 1],
  [8, 1, 4, 0],
  [13, 5, 5, 2],
  [300, 16, 9, 3],
  [4096, 8, 4, 0],
  [12, 2, 1, 5],
]

describe.each(['f32', 'bf16', 'f16'] as const)('wasm expand (%s)', (dtype) => {
  it.each(SHAPES)('width %i, rank %i, %i entries, column %i', (width, rank, n, col0) => {
    const rng = new Rng(width * 13 + rank * 3 + n)
    const T = n + 1
    const outF = width + col0 + 2 // other columns of y must stay untouched
    const R = rank + 3 // H has other columns before this slice's (h0 = 2)
    const h0 = 2
    const H = rng.array(n * R)
    const B = roundToDtype(rng.array(width * rank, 0.1), dtype)
    const rows = Int32Array.from({ length: n }, (_, e) => (e * 3 + 1) % T)
    const y = rng.array(T * outF)
    const hp = put(b, H)
    const bp = put(b, packPanels(B, width, rank, dtype), dtype)
    const yp = put(b, y)
    const rp = put(b, rows, 'i32')
    b.exports.expand(DTYPE_CODE[dtype], hp, R, h0, rank, bp, width, yp, outF, col0, rp, n)
    const got = b.memory.f32.slice(yp >> 2, (yp >> 2) + T * outF)
    const want = Float64Array.from(y)
    for (let e = 0; e < n; e++) {
      const d = expand(B, width, rank, Float64Array.from(H.subarray(e * R + h0, e * R + h0 + rank)), 1)
      for (let j = 0; j < width; j++) want[rows[e] * outF + col0 + j] += d[j]
    }
    let worst = 0
    let scale = 0
    for (let i = 0; i < want.length; i++) {
      worst = Math.max(worst, Math.abs(got[i] - want[i]))
      scale = Math.max(scale, Math.abs(want[i] - y[i]))
    }
    expect(worst / scale).toBeLessThanOrEqual(TOLERANCE[dtype])
    // rows no entry names are untouched
    for (let t = 0; t < T; t++) {
      if (rows.includes(t)) continue
      expect(got.subarray(t * outF, (t + 1) * outF)).toEqual(y.subarray(t * outF, (t + 1) * outF))
    }
    for (const p of [hp, bp, yp, rp]) b.memory.release(p)
  })
})
