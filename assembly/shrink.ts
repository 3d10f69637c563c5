// shrink: H[e, :] = A_cat x[rows[e]] for the entries of one segment.
//
// A_cat is the slot's A of every slice stacked: [R x inF] with R = numSlices * rank, stored as W.
// Dot-product form: each output is a dot product along inF, 4 lanes at a time, reduced at the end.
// Register tile: 4 entries x 2 rows of A (8 f32x4 accumulators); every A vector loaded (and
// decoded) serves 4 tokens, every x vector 2 rows. Remainders: 4 x 1, 1 x 4, 1 x 1 tiles and a
// scalar tail for inF % 4.
import { fma, hsum, load1, load4, wsize } from './simd'

/**
 * @param xPtr    f32 [T * inF]: activations
 * @param inF     input width
 * @param rowsPtr i32 [n]: row of x for each entry of the segment
 * @param n       number of entries in the segment
 * @param aPtr    W [R * inF]: stacked A rows of the slot
 * @param R       rows of A (numSlices * rank)
 * @param hPtr    f32 [n * R]: output, H[e * R + k]
 */
export function shrinkSegment<W>(xPtr: usize, inF: i32, rowsPtr: usize, n: i32, aPtr: usize, R: i32, hPtr: usize): void {
  const xStride = <usize>inF << 2
  const aStride = <usize>inF * wsize<W>()
  let e = 0
  for (; e + 4 <= n; e += 4) {
    const x0 = xPtr + <usize>load<i32>(rowsPtr + (<usize>e << 2)) * xStride
    const x1 = xPtr + <usize>load<i32>(rowsPtr + (<usize>(e + 1) << 2)) * xStride
    const x2 = xPtr + <usize>load<i32>(rowsPtr + (<usize>(e + 2) << 2)) * xStride
    const x3 = xPtr + <usize>load<i32>(rowsPtr + (<usize>(e + 3) << 2)) * xStride
    const h = hPtr + (<usize>(e * R) << 2)
    let k = 0
    for (; k + 2 <= R; k += 2) {
      tile4x2<W>(x0, x1, x2, x3, aPtr + <usize>k * aStride, aPtr + <usize>(k + 1) * aStride, inF, h + (<usize>k << 2), <usize>R << 2)
    }
    if (k < R) tile4x1<W>(x0, x1, x2, x3, aPtr + <usize>k * aStride, inF, h + (<usize>k << 2), <usize>R << 2)
  }
  for (; e < n; e++) {
    const x0 = xPtr + <usize>load<i32>(rowsPtr + (<usize>e << 2)) * xStride
    const h = hPtr + (<usize>(e * R) << 2)
    let k = 0
    for (; k + 4 <= R; k += 4) tile1x4<W>(x0, aPtr + <usize>k * aStride, aStride, inF, h + (<usize>k << 2))
    for (; k < R; k++) store<f32>(h + (<usize>k << 2), dot<W>(x0, aPtr + <usize>k * aStride, inF))
  }
}

// 4 tokens x 2 rows; hs = byte stride between the tokens' H rows.
@inline function tile4x2<W>(x0: usize, x1: usize, x2: usize, x3: usize, a0: usize, a1: usize, inF: i32, h: usize, hs: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0)
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0)
  const n4 = <usize>(inF & ~3)
  for (let i: usize = 0; i < n4; i += 4) {
    const w0 = load4<W>(a0 + i * wsize<W>())
    const w1 = load4<W>(a1 + i * wsize<W>())
    const o = i << 2
    let v = v128.load(x0 + o)
    c00 = fma(v, w0, c00); c01 = fma(v, w1, c01)
    v = v128.load(x1 + o)
    c10 = fma(v, w0, c10); c11 = fma(v, w1, c11)
    v = v128.load(x2 + o)
    c20 = fma(v, w0, c20); c21 = fma(v, w1, c21)
    v = v128.load(x3 + o)
    c30 = fma(v, w0, c30); c31 = fma(v, w1, c31)
  }
  let s00 = hsum(c00), s01 = hsum(c01), s10 = hsum(c10), s11 = hsum(c11)
  let s20 = hsum(c20), s21 = hsum(c21), s30 = hsum(c30), s31 = hsum(c31)
  for (let i = n4; i < <usize>inF; i++) {
    const w0 = load1<W>(a0 + i * wsize<W>()), w1 = load1<W>(a1 + i * wsize<W>())
    const o = i << 2
    let v = load<f32>(x0 + o); s00 += v * w0; s01 += v * w1
    v = load<f32>(x1 + o); s10 += v * w0; s11 += v * w1
    v = load<f32>(x2 + o); s20 += v * w0; s21 += v * w1
    v = load<f32>(x3 + o); s30 += v * w0; s31 += v * w1
  }
  store<f32>(h, s00); store<f32>(h, s01, 4)
  store<f32>(h + hs, s10); store<f32>(h + hs, s11, 4)
  store<f32>(h + 2 * hs, s20); store<f32>(h + 2 * hs, s21, 4)
  store<f32>(h + 3 * hs, s30); store<f32>(h + 3 * hs, s31, 4)
}

// 4 tokens x 1 row.
@inline function tile4x1<W>(x0: usize, x1: usize, x2: usize, x3: usize, a0: usize, inF: i32, h: usize, hs: usize): void {
  store<f32>(h, dot<W>(x0, a0, inF))
  store<f32>(h + hs, dot<W>(x1, a0, inF))
  store<f32>(h + 2 * hs, dot<W>(x2, a0, inF))
  store<f32>(h + 3 * hs, dot<W>(x3, a0, inF))
}

// 1 token x 4 consecutive rows of A (as) apart; results to h[0..4].
@inline function tile1x4<W>(x0: usize, a: usize, as: usize, inF: i32, h: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  const n4 = <usize>(inF & ~3)
  const a1 = a + as, a2 = a + 2 * as, a3 = a + 3 * as
  for (let i: usize = 0; i < n4; i += 4) {
    const v = v128.load(x0 + (i << 2))
    const o = i * wsize<W>()
    c0 = fma(v, load4<W>(a + o), c0)
    c1 = fma(v, load4<W>(a1 + o), c1)
    c2 = fma(v, load4<W>(a2 + o), c2)
    c3 = fma(v, load4<W>(a3 + o), c3)
  }
  let s0 = hsum(c0), s1 = hsum(c1), s2 = hsum(c2), s3 = hsum(c3)
  for (let i = n4; i < <usize>inF; i++) {
    const v = load<f32>(x0 + (i << 2))
    const o = i * wsize<W>()
    s0 += v * load1<W>(a + o); s1 += v * load1<W>(a1 + o)
    s2 += v * load1<W>(a2 + o); s3 += v * load1<W>(a3 + o)
  }
  store<f32>(h, s0); store<f32>(h, s1, 4); store<f32>(h, s2, 8); store<f32>(h, s3, 12)
}

// One dot product of length inF.
@inline function dot<W>(x0: usize, a0: usize, inF: i32): f32 {
  let c0 = f32x4.splat(0)
  const n4 = <usize>(inF & ~3)
  for (let i: usize = 0; i < n4; i += 4) c0 = fma(v128.load(x0 + (i << 2)), load4<W>(a0 + i * wsize<W>()), c0)
  let s = hsum(c0)
  for (let i = n4; i < <usize>inF; i++) s += load<f32>(x0 + (i << 2)) * load1<W>(a0 + i * wsize<W>())
  return s
}
