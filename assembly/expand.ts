// expand: y[rows[e], col0 : col0 + width] += H[e, h0 : h0 + rank] B^T for the entries of a segment.
//
// B is stored transposed and packed in column panels (done once in setAdapter): for each group
// of 8 output columns p, a contiguous [rank x 8] block; the last width % 8 columns follow as one
// [rank x (width % 8)] block. A panel is read sequentially (a plain [rank x width] transpose
// would read `rank` lines 4*width bytes apart, which all fall in one L1 set and thrash it).
// The update is a sum of rank-1 outer products along output columns: vectorised over columns.
// Register tile: 4 entries x 8 columns (8 f32x4 accumulators); every B vector loaded (and
// decoded) serves 4 tokens. Remainders: 2 x 8, 1 x 8, then a 4-column and single-column strips.
// The slot's scale is already folded into H.
import { fma, load1, load4, load8hi, load8lo, rowAt, wsize } from './simd'

/** Bytes of B per column block (see expandSegment); L1 holds it with the y rows of a group. */
const BLOCK_BYTES: usize = 16384

/**
 * @param hPtr    f32 [n * R]: shrink output of the segment (scaled)
 * @param R       row stride of H (numSlices * rank)
 * @param h0      first column of H used by this slice (slice * rank)
 * @param rank    rank of the slot
 * @param btPtr   W [rank * width]: B of this slice, transposed and packed in 8-column panels
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
  const panel = <usize>rank * 8 * wsize<W>() // bytes per 8-column panel
  const rem = width & 7
  const tail = btPtr + <usize>(width >> 3) * panel // [rank x rem] block
  const yBase = yPtr + (<usize>col0 << 2)
  const hBase = hPtr + (<usize>h0 << 2)
  const w8 = width & ~7
  // Column blocks: with more than one group of 4 entries, the panels of a block (about
  // BLOCK_BYTES) stay in L1 while every group goes over them, instead of all of B (up to MBs,
  // from L3) being read again for each group. Same tiles, same order of additions per y element.
  const jStep = n > 4 ? max(8, <i32>(BLOCK_BYTES / panel) << 3) : w8
  for (let jb = 0; jb < w8; jb += jStep) {
    const je = min(jb + jStep, w8)
    const bBlock = btPtr + <usize>(jb >> 3) * panel
    const yBlock = yBase + (<usize>jb << 2)
    let e = 0
    for (; e + 4 <= n; e += 4) {
      const y0 = rowAt(yBlock, rowsPtr, e, yStride)
      const y1 = rowAt(yBlock, rowsPtr, e + 1, yStride)
      const y2 = rowAt(yBlock, rowsPtr, e + 2, yStride)
      const y3 = rowAt(yBlock, rowsPtr, e + 3, yStride)
      const h = hBase + <usize>e * hStride
      for (let j = 0; j < je - jb; j += 8) tile4x8<W>(h, hStride, rank, bBlock + <usize>(j >> 3) * panel, y0 + (<usize>j << 2), y1 + (<usize>j << 2), y2 + (<usize>j << 2), y3 + (<usize>j << 2))
    }
    if (e + 2 <= n) {
      const y0 = rowAt(yBlock, rowsPtr, e, yStride)
      const y1 = rowAt(yBlock, rowsPtr, e + 1, yStride)
      const h = hBase + <usize>e * hStride
      for (let j = 0; j < je - jb; j += 8) tile2x8<W>(h, hStride, rank, bBlock + <usize>(j >> 3) * panel, y0 + (<usize>j << 2), y1 + (<usize>j << 2))
      e += 2
    }
    for (; e < n; e++) {
      const y0 = rowAt(yBlock, rowsPtr, e, yStride)
      const h = hBase + <usize>e * hStride
      for (let j = 0; j < je - jb; j += 8) tile1x8<W>(h, rank, bBlock + <usize>(j >> 3) * panel, y0 + (<usize>j << 2))
    }
  }
  if (rem == 0) return
  // leftover columns (width % 8) from the tail block, every entry
  const ts = <usize>rem * wsize<W>() // byte stride between rows of the tail block
  for (let e = 0; e < n; e++) {
    const y0 = rowAt(yBase, rowsPtr, e, yStride) + (<usize>w8 << 2)
    const h = hBase + <usize>e * hStride
    let j = 0
    if (rem >= 4) {
      let c = f32x4.splat(0)
      for (let k = 0; k < rank; k++) c = fma(v128.load32_splat(h + (<usize>k << 2)), load4<W>(tail + <usize>k * ts), c)
      v128.store(y0, f32x4.add(v128.load(y0), c))
      j = 4
    }
    for (; j < rem; j++) {
      let s: f32 = 0
      for (let k = 0; k < rank; k++) s += load<f32>(h + (<usize>k << 2)) * load1<W>(tail + <usize>k * ts + <usize>j * wsize<W>())
      const p = y0 + (<usize>j << 2)
      store<f32>(p, load<f32>(p) + s)
    }
  }
}

// 4 tokens x 8 columns: H rows h, h + hs, ...; b: one [rank x 8] panel; y row pointers.
@inline function tile4x8<W>(h: usize, hs: usize, rank: i32, b: usize, y0: usize, y1: usize, y2: usize, y3: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0)
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0)
  const h1 = h + hs, h2 = h + 2 * hs, h3 = h + 3 * hs
  for (let k = 0; k < rank; k++) {
    const bk = b + (<usize>k << 3) * wsize<W>()
    const w0 = load8lo<W>(bk)
    const w1 = load8hi<W>(bk)
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

// 2 tokens x 8 columns; k unrolled by 2 with separate accumulators (8 chains).
@inline function tile2x8<W>(h: usize, hs: usize, rank: i32, b: usize, y0: usize, y1: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  let c4 = f32x4.splat(0), c5 = f32x4.splat(0), c6 = f32x4.splat(0), c7 = f32x4.splat(0)
  const row: usize = 8 * wsize<W>()
  const h1 = h + hs
  let k = 0
  for (; k + 2 <= rank; k += 2) {
    const bk = b + <usize>k * row
    const o = <usize>k << 2
    let w0 = load8lo<W>(bk), w1 = load8hi<W>(bk)
    let v = v128.load32_splat(h + o)
    c0 = fma(v, w0, c0); c1 = fma(v, w1, c1)
    v = v128.load32_splat(h1 + o)
    c2 = fma(v, w0, c2); c3 = fma(v, w1, c3)
    w0 = load8lo<W>(bk + row); w1 = load8hi<W>(bk + row)
    v = v128.load32_splat(h + o, 4)
    c4 = fma(v, w0, c4); c5 = fma(v, w1, c5)
    v = v128.load32_splat(h1 + o, 4)
    c6 = fma(v, w0, c6); c7 = fma(v, w1, c7)
  }
  if (k < rank) {
    const bk = b + <usize>k * row
    const o = <usize>k << 2
    const w0 = load8lo<W>(bk), w1 = load8hi<W>(bk)
    let v = v128.load32_splat(h + o)
    c0 = fma(v, w0, c0); c1 = fma(v, w1, c1)
    v = v128.load32_splat(h1 + o)
    c2 = fma(v, w0, c2); c3 = fma(v, w1, c3)
  }
  v128.store(y0, f32x4.add(v128.load(y0), f32x4.add(c0, c4))); v128.store(y0, f32x4.add(v128.load(y0, 16), f32x4.add(c1, c5)), 16)
  v128.store(y1, f32x4.add(v128.load(y1), f32x4.add(c2, c6))); v128.store(y1, f32x4.add(v128.load(y1, 16), f32x4.add(c3, c7)), 16)
}

// 1 token x 8 columns; k unrolled by 4 with separate accumulators (8 chains) to hide the add
// latency in this weight-bound case.
@inline function tile1x8<W>(h: usize, rank: i32, b: usize, y0: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  let c4 = f32x4.splat(0), c5 = f32x4.splat(0), c6 = f32x4.splat(0), c7 = f32x4.splat(0)
  const row: usize = 8 * wsize<W>()
  let k = 0
  for (; k + 4 <= rank; k += 4) {
    const bk = b + <usize>k * row
    const hk = h + (<usize>k << 2)
    let v = v128.load32_splat(hk)
    c0 = fma(v, load8lo<W>(bk), c0); c1 = fma(v, load8hi<W>(bk), c1)
    v = v128.load32_splat(hk, 4)
    c2 = fma(v, load8lo<W>(bk + row), c2); c3 = fma(v, load8hi<W>(bk + row), c3)
    v = v128.load32_splat(hk, 8)
    c4 = fma(v, load8lo<W>(bk + 2 * row), c4); c5 = fma(v, load8hi<W>(bk + 2 * row), c5)
    v = v128.load32_splat(hk, 12)
    c6 = fma(v, load8lo<W>(bk + 3 * row), c6); c7 = fma(v, load8hi<W>(bk + 3 * row), c7)
  }
  for (; k < rank; k++) {
    const bk = b + <usize>k * row
    const v = v128.load32_splat(h + (<usize>k << 2))
    c0 = fma(v, load8lo<W>(bk), c0); c1 = fma(v, load8hi<W>(bk), c1)
  }
  c0 = f32x4.add(f32x4.add(c0, c2), f32x4.add(c4, c6))
  c1 = f32x4.add(f32x4.add(c1, c3), f32x4.add(c5, c7))
  v128.store(y0, f32x4.add(v128.load(y0), c0)); v128.store(y0, f32x4.add(v128.load(y0, 16), c1), 16)
}
