// expand: y[rows[e], col0 : col0 + width] += H[e, h0 : h0 + rank] Bt for the entries of a segment.
//
// Bt is the slice's B transposed to [rank x width] (done once in setAdapter), so the update is a
// sum of rank-1 outer products along contiguous output columns: vectorised over columns.
// Register tile: 4 entries x 8 columns (8 f32x4 accumulators); every Bt vector loaded (and
// decoded) serves 4 tokens. Remainders: 1 x 8, then 4-column and single-column strips.
// The slot's scale is already folded into H.
import { fma, load1, load4, wsize } from './simd'

/**
 * @param hPtr    f32 [n * R]: shrink output of the segment (scaled)
 * @param R       row stride of H (numSlices * rank)
 * @param h0      first column of H used by this slice (slice * rank)
 * @param rank    rank of the slot
 * @param btPtr   W [rank * width]: B of this slice, transposed
 * @param width   width of the slice (n_s)
 * @param yPtr    f32 [T * outF]: output, accumulated into
 * @param outF    row stride of y
 * @param col0    first column of the slice in y
 * @param rowsPtr i32 [n]: row of y for each entry
 * @param n       entries in the segment
 */
export function expandSegment<W>(
  hPtr: usize, R: i32, h0: i32, rank: i32, btPtr: usize, width: i32,
  yPtr: usize, outF: i32, col0: i32, rowsPtr: usize, n: i32,
): void {
  const yStride = <usize>outF << 2
  const hStride = <usize>R << 2
  const bs = <usize>width * wsize<W>() // byte stride between rows of Bt
  const yBase = yPtr + (<usize>col0 << 2)
  const hBase = hPtr + (<usize>h0 << 2)
  const w8 = width & ~7
  let e = 0
  for (; e + 4 <= n; e += 4) {
    const y0 = yBase + <usize>load<i32>(rowsPtr + (<usize>e << 2)) * yStride
    const y1 = yBase + <usize>load<i32>(rowsPtr + (<usize>(e + 1) << 2)) * yStride
    const y2 = yBase + <usize>load<i32>(rowsPtr + (<usize>(e + 2) << 2)) * yStride
    const y3 = yBase + <usize>load<i32>(rowsPtr + (<usize>(e + 3) << 2)) * yStride
    const h = hBase + <usize>e * hStride
    for (let j = 0; j < w8; j += 8) tile4x8<W>(h, hStride, rank, btPtr + <usize>j * wsize<W>(), bs, y0 + (<usize>j << 2), y1 + (<usize>j << 2), y2 + (<usize>j << 2), y3 + (<usize>j << 2))
  }
  for (; e < n; e++) {
    const y0 = yBase + <usize>load<i32>(rowsPtr + (<usize>e << 2)) * yStride
    const h = hBase + <usize>e * hStride
    for (let j = 0; j < w8; j += 8) tile1x8<W>(h, rank, btPtr + <usize>j * wsize<W>(), bs, y0 + (<usize>j << 2))
  }
  if (w8 == width) return
  // leftover columns (width % 8), every entry
  for (e = 0; e < n; e++) {
    const y0 = yBase + <usize>load<i32>(rowsPtr + (<usize>e << 2)) * yStride
    const h = hBase + <usize>e * hStride
    let j = w8
    if (j + 4 <= width) {
      let c = f32x4.splat(0)
      for (let k = 0; k < rank; k++) c = fma(f32x4.splat(load<f32>(h + (<usize>k << 2))), load4<W>(btPtr + (<usize>k * bs) + <usize>j * wsize<W>()), c)
      const p = y0 + (<usize>j << 2)
      v128.store(p, f32x4.add(v128.load(p), c))
      j += 4
    }
    for (; j < width; j++) {
      let s: f32 = 0
      for (let k = 0; k < rank; k++) s += load<f32>(h + (<usize>k << 2)) * load1<W>(btPtr + (<usize>k * bs) + <usize>j * wsize<W>())
      const p = y0 + (<usize>j << 2)
      store<f32>(p, load<f32>(p) + s)
    }
  }
}

// 4 tokens x 8 columns: H rows h, h + hs, ...; Bt column block b (row stride bs); y row pointers.
@inline function tile4x8<W>(h: usize, hs: usize, rank: i32, b: usize, bs: usize, y0: usize, y1: usize, y2: usize, y3: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0)
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0)
  const h1 = h + hs, h2 = h + 2 * hs, h3 = h + 3 * hs
  for (let k = 0; k < rank; k++) {
    const bk = b + <usize>k * bs
    const w0 = load4<W>(bk)
    const w1 = load4<W>(bk + 4 * wsize<W>())
    const o = <usize>k << 2
    let v = v128.load32_splat(h + o)
    c00 = fma(v, w0, c00); c01 = fma(v, w1, c01)
    v = v128.load32_splat(h1 + o)
    c10 = fma(v, w0, c10); c11 = fma(v, w1, c11)
    v = v128.load32_splat(h2 + o)
    c20 = fma(v, w0, c20); c21 = fma(v, w1, c21)
    v = v128.load32_splat(h3 + o)
    c30 = fma(v, w0, c30); c31 = fma(v, w1, c31)
  }
  v128.store(y0, f32x4.add(v128.load(y0), c00)); v128.store(y0, f32x4.add(v128.load(y0, 16), c01), 16)
  v128.store(y1, f32x4.add(v128.load(y1), c10)); v128.store(y1, f32x4.add(v128.load(y1, 16), c11), 16)
  v128.store(y2, f32x4.add(v128.load(y2), c20)); v128.store(y2, f32x4.add(v128.load(y2, 16), c21), 16)
  v128.store(y3, f32x4.add(v128.load(y3), c30)); v128.store(y3, f32x4.add(v128.load(y3, 16), c31), 16)
}

// 1 token x 8 columns.
@inline function tile1x8<W>(h: usize, rank: i32, b: usize, bs: usize, y0: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0)
  for (let k = 0; k < rank; k++) {
    const bk = b + <usize>k * bs
    const v = v128.load32_splat(h + (<usize>k << 2))
    c0 = fma(v, load4<W>(bk), c0)
    c1 = fma(v, load4<W>(bk + 4 * wsize<W>()), c1)
  }
  v128.store(y0, f32x4.add(v128.load(y0), c0)); v128.store(y0, f32x4.add(v128.load(y0, 16), c1), 16)
}
