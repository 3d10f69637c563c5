import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { WasmBackend } from '../src/wasm/backend.js'
import { TOLERANCE } from './compare.js'
import { Rng } from './random.js'
import { shrink } from './reference.js'
import { DTYPE_CODE, kernelBackend, packShrinkA, put, roundToDtype } from './wasm-kernel.js'

let b: WasmBackend
beforeAll(async () => {
  b = await kernelBackend()
})
afterAll(() => b?.dispose())

// (inF, R rows of A, n entries): sizes not a multiple of 4 or 8, a single entry, one row, R not a
// multiple of 4 (plain rows after the quads).
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 1],
  [9, 2, 4],
  [64, 7, 5],
  [2049, 6, 9],
  [4096, 16, 4],
  [13, 1, 3],
  // quads of A with tails of 4..7 values (the 4-wide tail step), every tile kind
  [13, 8, 3],
  [12, 4, 2],
  [2052, 12, 1],
  [20, 9, 6],
  [7, 4, 7],
  // more entries than one block of x rows (256 KB): blocks of 12 and of 4 entries
  [4100, 7, 29],
  [8200, 9, 13],
]

describe.each(['f32', 'bf16', 'f16'] as const)('wasm shrink (%s)', (dtype) => {
  it.each(SHAPES)('inF %i, R %i, %i entries', (inF, R, n) => {
    const rng = new Rng(inF * 31 + R * 7 + n)
    const T = n + 2
    const x = rng.array(T * inF)
    const A = roundToDtype(rng.array(R * inF, 0.1), dtype)
    const rows = Int32Array.from({ length: n }, (_, e) => (e * 5 + 1) % T) // gathered, out of order
    const xp = put(b, x)
    const ap = put(b, packShrinkA([A], R, inF, dtype), dtype)
    const rp = put(b, rows, 'i32')
    const hp = b.memory.alloc(n * R * 4)
    b.exports.shrink(DTYPE_CODE[dtype], xp, inF, rp, n, ap, R, hp)
    const h = b.memory.f32.slice(hp >> 2, (hp >> 2) + n * R)
    let worst = 0
    let scale = 0
    for (let e = 0; e < n; e++) {
      const ref = shrink(A, R, x, rows[e], inF)
      for (let k = 0; k < R; k++) {
        worst = Math.max(worst, Math.abs(h[e * R + k] - ref[k]))
        scale = Math.max(scale, Math.abs(ref[k]))
      }
    }
    expect(worst / scale).toBeLessThanOrEqual(TOLERANCE[dtype])
    for (const p of [xp, ap, rp, hp]) b.memory.release(p)
  })
})
