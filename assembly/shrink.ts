// shrink: H[e, :] = A_cat x[rows[e]] for the entries of one segment.
//
// A_cat is the slot's A of every slice stacked: [R x inF] with R = numSlices * rank, stored as W
// in the quad layout (built by src/wasm/layout.ts packShrinkA):
//   - rows in blocks of 4 ("quads"). In a quad, the first G = inF & ~7 values of each row are
//     interleaved in 16-byte chunks (4 f32 or 8 16-bit values): chunk c of rows 0, 1, 2, 3, then
//     chunk c + 1 of rows 0..3, ...; then the last inF - G values of each row, row after row.
//     A quad is as many bytes as 4 rows, so rows k.. of a range starting at a multiple of 4 begin
//     at aPtr + k * rowBytes either way;
//   - the last R % 4 rows are plain rows.
// One token reads the 4 rows of a quad as one sequential stream: with cold weights (the decode
// case) that streams ~1.2x faster than 4 rows 16 KB apart (A/B, one core), and it changes nothing
// for tiles of 2 or 4 tokens.
//
// Dot-product form: each output is a dot product along inF, reduced horizontally at the end.
// Register tiles:
//   groups of 4 entries: f32 as two 2 entries x 4 rows tiles per quad (each pass reads whole
//   64-byte lines of the quad, the second from L2: with cold weights 1.2-1.4x faster than two
//   half-line passes of 4 x 2, A/B one core); 16-bit weights in segments of fewer than 8 entries
//   as 4 entries x 1 row (4 accumulators: the 4 x 2 tile spills in V8's code, 1.13-1.17x
//   faster warm), longer ones as 4 entries x 2 rows (8 accumulators), every A vector loaded
//   (and decoded) serving 4 tokens (f32 steps 4 weights at a time, 16-bit types 8);
//   2 entries x 4 rows (a segment's last two: small segments of a mixed batch);
//   1 entry x 4 rows, halves accumulated apart (8 accumulators, enough independent chains to
//   hide the add latency in the weight-bound single-token case).
// Groups of 4 entries go over A quad by quad in blocks of entries whose x rows fit in L2, so A
// is read once per block, not once per group (A/B: 1.05-1.11x at rank 64, T = 16..1024).
// Before the tiles of 2 or 4 entries go over a quad, one value of each of its lines is read
// (touchLines): a loop of few instructions per line has many lines in flight, where the tiles'
// first pass, busy with arithmetic, has few; with cold weights the shrink of 2-4 entries per
// segment then takes 0.82-0.94x the time (A/B, one core, T = 2..64). A single entry has arithmetic
// enough only to keep up with its stream: the touch made it 1.0-1.28x slower, so it has none.
// Remainder rows: 4 x 1, 2 x 1 and 1 x 1 dot products. Each tile adds in the same order along
// inF whatever the layout, so a row gives the same bits in a quad or as a plain row of the same
// tile.
import { fma, hsum, load1, load4, load8hi, load8lo, rowAt, touchLines, wsize } from './simd'

/** Bytes of one row's chunk in a quad. */
const CHUNK: usize = 16
/** Bytes from one chunk of a row to its next one: in a quad, and in a plain row. */
const QUAD_STEP: usize = 4 * CHUNK
const ROW_STEP: usize = CHUNK
/** Bytes of x rows per block of entries (shrinkSegment): L2 holds them with a quad of A. */
const X_BLOCK: usize = 262144

/** Weights 4..7 of the 8-group whose weights 0..3 are at p, chunks `step` bytes apart. */
@inline function hiOf<W>(p: usize, step: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p + step) // f32: the group's second chunk
  return load8hi<W>(p) // 16-bit: one chunk holds the whole group
}

/**
 * @param xPtr    f32 [T * inF]: activations
 * @param inF     input width
 * @param rowsPtr i32 [n]: row of x for each entry of the segment
 * @param n       number of entries in the segment
 * @param aPtr    W [R * inF]: stacked A rows of the slot, quad layout
 * @param R       rows of A (numSlices * rank)
 * @param hPtr    f32 [n * R]: output, H[e * R + k]
 */
export function shrinkSegment<W>(xPtr: usize, inF: i32, rowsPtr: usize, n: i32, aPtr: usize, R: i32, hPtr: usize): void {
  const xStride = <usize>inF << 2
  const aStride = <usize>inF * wsize<W>()
  const hs = <usize>R << 2
  const G = inF & ~7
  const t = <usize>(inF - G)
  const R4 = R & ~3
  const qTail = <usize>G * wsize<W>() * 4 // offset of a quad's tails
  const tq = t * wsize<W>() // bytes between the tails of a quad's rows
  const pTail = <usize>G * wsize<W>() // offset of a plain row's tail
  // Groups of 4 entries, in blocks of up to `eb` entries whose x rows fit in L2 (about X_BLOCK
  // bytes): every quad of A read serves the whole block before the next quad, so A is read once
  // per block instead of once per group. Same tiles, same order of additions per H element.
  const n4 = n & ~3
  const eb = max(4, <i32>(X_BLOCK / xStride) & ~3)
  for (let e0 = 0; e0 < n4; e0 += eb) {
    const e1 = min(e0 + eb, n4)
    let k = 0
    for (; k < R4; k += 4) {
      const q = aPtr + <usize>k * aStride
      touchLines(q, 4 * aStride)
      for (let e = e0; e < e1; e += 4) {
        const x0 = rowAt(xPtr, rowsPtr, e, xStride)
        const x1 = rowAt(xPtr, rowsPtr, e + 1, xStride)
        const x2 = rowAt(xPtr, rowsPtr, e + 2, xStride)
        const x3 = rowAt(xPtr, rowsPtr, e + 3, xStride)
        const hk = hPtr + <usize>e * hs + (<usize>k << 2)
        if (sizeof<W>() == 4) {
          tile2x4<W>(x0, x1, q, CHUNK, QUAD_STEP, q + qTail, tq, G, inF, hk, hs)
          tile2x4<W>(x2, x3, q, CHUNK, QUAD_STEP, q + qTail, tq, G, inF, hk + 2 * hs, hs)
        } else if (n < 8) {
          for (let j = 0; j < 4; j++) tile4x1<W>(x0, x1, x2, x3, q + <usize>j * CHUNK, QUAD_STEP, q + qTail + <usize>j * tq, G, inF, hk + (<usize>j << 2), hs)
        } else {
          tile4x2<W>(x0, x1, x2, x3, q, q + CHUNK, QUAD_STEP, q + qTail, q + qTail + tq, G, inF, hk, hs)
          tile4x2<W>(x0, x1, x2, x3, q + 2 * CHUNK, q + 3 * CHUNK, QUAD_STEP, q + qTail + 2 * tq, q + qTail + 3 * tq, G, inF, hk + 8, hs)
        }
      }
    }
    // plain rows after the quads: pairs, then a last row
    for (let e = e0; e < e1; e += 4) {
      const x0 = rowAt(xPtr, rowsPtr, e, xStride)
      const x1 = rowAt(xPtr, rowsPtr, e + 1, xStride)
      const x2 = rowAt(xPtr, rowsPtr, e + 2, xStride)
      const x3 = rowAt(xPtr, rowsPtr, e + 3, xStride)
      const h = hPtr + <usize>e * hs
      let j = k
      for (; j + 2 <= R; j += 2) {
        const a0 = aPtr + <usize>j * aStride, a1 = a0 + aStride
        tile4x2<W>(x0, x1, x2, x3, a0, a1, ROW_STEP, a0 + pTail, a1 + pTail, G, inF, h + (<usize>j << 2), hs)
      }
      if (j < R) {
        const a = aPtr + <usize>j * aStride
        const hk = h + (<usize>j << 2)
        store<f32>(hk, dot<W>(x0, a, G, inF)); store<f32>(hk + hs, dot<W>(x1, a, G, inF))
        store<f32>(hk + 2 * hs, dot<W>(x2, a, G, inF)); store<f32>(hk + 3 * hs, dot<W>(x3, a, G, inF))
      }
    }
  }
  let e = n4
  if (e + 2 <= n) {
    // two entries left (a segment of 2, 3, 6, 7, ...): each A row loaded serves both
    const x0 = rowAt(xPtr, rowsPtr, e, xStride)
    const x1 = rowAt(xPtr, rowsPtr, e + 1, xStride)
    const h = hPtr + <usize>e * hs
    let k = 0
    for (; k < R4; k += 4) {
      const q = aPtr + <usize>k * aStride
      if (n4 == 0) touchLines(q, 4 * aStride)
      tile2x4<W>(x0, x1, q, CHUNK, QUAD_STEP, q + qTail, tq, G, inF, h + (<usize>k << 2), hs)
    }
    for (; k < R; k++) {
      const a = aPtr + <usize>k * aStride
      store<f32>(h + (<usize>k << 2), dot<W>(x0, a, G, inF))
      store<f32>(h + hs + (<usize>k << 2), dot<W>(x1, a, G, inF))
    }
    e += 2
  }
  for (; e < n; e++) {
    const x0 = rowAt(xPtr, rowsPtr, e, xStride)
    const h = hPtr + <usize>e * hs
    let k = 0
    for (; k < R4; k += 4) {
      const q = aPtr + <usize>k * aStride
      tile1x4<W>(x0, q, CHUNK, QUAD_STEP, q + qTail, tq, G, inF, h + (<usize>k << 2))
    }
    for (; k < R; k++) store<f32>(h + (<usize>k << 2), dot<W>(x0, aPtr + <usize>k * aStride, G, inF))
  }
}

// In the tiles: a row's chunks are `step` bytes apart (QUAD_STEP in a quad, ROW_STEP in a plain
// row); its last inF - G values are at its tail pointer, in natural order.

// 4 tokens x 2 rows (chunks at a0, a1; tails at t0, t1); hs = byte stride between the tokens' H rows.
@inline function tile4x2<W>(x0: usize, x1: usize, x2: usize, x3: usize, a0: usize, a1: usize, step: usize, t0: usize, t1: usize, G: i32, inF: i32, h: usize, hs: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0)
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0)
  if (sizeof<W>() == 4) {
    // f32: 4 weights (one chunk) per step (measured ~15% faster than 8 here: fewer live values)
    for (let i: usize = 0; i < <usize>G; i += 4) {
      const w0 = v128.load(a0), w1 = v128.load(a1)
      const o = i << 2
      let v = v128.load(x0 + o)
      c00 = fma(v, w0, c00); c01 = fma(v, w1, c01)
      v = v128.load(x1 + o)
      c10 = fma(v, w0, c10); c11 = fma(v, w1, c11)
      v = v128.load(x2 + o)
      c20 = fma(v, w0, c20); c21 = fma(v, w1, c21)
      v = v128.load(x3 + o)
      c30 = fma(v, w0, c30); c31 = fma(v, w1, c31)
      a0 += step; a1 += step
    }
  } else {
    // 16-bit weights: 8 per step, as one 16-byte load of each row decodes into two halves
    for (let i: usize = 0; i < <usize>G; i += 8) {
      const o = i << 2
      let w0 = load8lo<W>(a0), w1 = load8lo<W>(a1)
      let v = v128.load(x0 + o)
      c00 = fma(v, w0, c00); c01 = fma(v, w1, c01)
      v = v128.load(x1 + o)
      c10 = fma(v, w0, c10); c11 = fma(v, w1, c11)
      v = v128.load(x2 + o)
      c20 = fma(v, w0, c20); c21 = fma(v, w1, c21)
      v = v128.load(x3 + o)
      c30 = fma(v, w0, c30); c31 = fma(v, w1, c31)
      w0 = load8hi<W>(a0); w1 = load8hi<W>(a1)
      v = v128.load(x0 + o, 16)
      c00 = fma(v, w0, c00); c01 = fma(v, w1, c01)
      v = v128.load(x1 + o, 16)
      c10 = fma(v, w0, c10); c11 = fma(v, w1, c11)
      v = v128.load(x2 + o, 16)
      c20 = fma(v, w0, c20); c21 = fma(v, w1, c21)
      v = v128.load(x3 + o, 16)
      c30 = fma(v, w0, c30); c31 = fma(v, w1, c31)
      a0 += step; a1 += step
    }
  }
  if (G + 4 <= inF) {
    const w0 = load4<W>(t0), w1 = load4<W>(t1)
    const o = <usize>G << 2
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
  for (let i = <usize>(inF & ~3); i < <usize>inF; i++) {
    const j = (i - <usize>G) * wsize<W>()
    const w0 = load1<W>(t0 + j), w1 = load1<W>(t1 + j)
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

// 4 tokens x 1 row of 16-bit weights (chunks at a, `step` apart; tail at t): one 16-byte load
// of the row decodes into two halves that serve all 4 tokens; few live values (no spills).
@inline function tile4x1<W>(x0: usize, x1: usize, x2: usize, x3: usize, a: usize, step: usize, t: usize, G: i32, inF: i32, h: usize, hs: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  for (let i: usize = 0; i < <usize>G; i += 8) {
    const o = i << 2
    let w = load8lo<W>(a)
    c0 = fma(v128.load(x0 + o), w, c0); c1 = fma(v128.load(x1 + o), w, c1)
    c2 = fma(v128.load(x2 + o), w, c2); c3 = fma(v128.load(x3 + o), w, c3)
    w = load8hi<W>(a)
    c0 = fma(v128.load(x0 + o, 16), w, c0); c1 = fma(v128.load(x1 + o, 16), w, c1)
    c2 = fma(v128.load(x2 + o, 16), w, c2); c3 = fma(v128.load(x3 + o, 16), w, c3)
    a += step
  }
  if (G + 4 <= inF) {
    const w = load4<W>(t)
    const o = <usize>G << 2
    c0 = fma(v128.load(x0 + o), w, c0); c1 = fma(v128.load(x1 + o), w, c1)
    c2 = fma(v128.load(x2 + o), w, c2); c3 = fma(v128.load(x3 + o), w, c3)
  }
  let s0 = hsum(c0), s1 = hsum(c1), s2 = hsum(c2), s3 = hsum(c3)
  for (let i = <usize>(inF & ~3); i < <usize>inF; i++) {
    const w = load1<W>(t + (i - <usize>G) * wsize<W>())
    const o = i << 2
    s0 += load<f32>(x0 + o) * w; s1 += load<f32>(x1 + o) * w
    s2 += load<f32>(x2 + o) * w; s3 += load<f32>(x3 + o) * w
  }
  store<f32>(h, s0); store<f32>(h + hs, s1); store<f32>(h + 2 * hs, s2); store<f32>(h + 3 * hs, s3)
}

// 2 tokens x the 4 rows of a quad: row j's chunks at a + j * rs, its tail at t + j * ts;
// results to h[0..4] and (h + hs)[0..4].
@inline function tile2x4<W>(x0: usize, x1: usize, a: usize, rs: usize, step: usize, t: usize, ts: usize, G: i32, inF: i32, h: usize, hs: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  let d0 = f32x4.splat(0), d1 = f32x4.splat(0), d2 = f32x4.splat(0), d3 = f32x4.splat(0)
  if (sizeof<W>() == 4) {
    for (let i: usize = 0; i < <usize>G; i += 4) {
      const u = v128.load(x0 + (i << 2)), v = v128.load(x1 + (i << 2))
      let w = v128.load(a); c0 = fma(u, w, c0); d0 = fma(v, w, d0)
      w = v128.load(a + rs); c1 = fma(u, w, c1); d1 = fma(v, w, d1)
      w = v128.load(a + 2 * rs); c2 = fma(u, w, c2); d2 = fma(v, w, d2)
      w = v128.load(a + 3 * rs); c3 = fma(u, w, c3); d3 = fma(v, w, d3)
      a += step
    }
  } else {
    for (let i: usize = 0; i < <usize>G; i += 8) {
      const ox = i << 2
      let u = v128.load(x0 + ox), v = v128.load(x1 + ox)
      let w = load8lo<W>(a); c0 = fma(u, w, c0); d0 = fma(v, w, d0)
      w = load8lo<W>(a + rs); c1 = fma(u, w, c1); d1 = fma(v, w, d1)
      w = load8lo<W>(a + 2 * rs); c2 = fma(u, w, c2); d2 = fma(v, w, d2)
      w = load8lo<W>(a + 3 * rs); c3 = fma(u, w, c3); d3 = fma(v, w, d3)
      u = v128.load(x0 + ox, 16); v = v128.load(x1 + ox, 16)
      w = load8hi<W>(a); c0 = fma(u, w, c0); d0 = fma(v, w, d0)
      w = load8hi<W>(a + rs); c1 = fma(u, w, c1); d1 = fma(v, w, d1)
      w = load8hi<W>(a + 2 * rs); c2 = fma(u, w, c2); d2 = fma(v, w, d2)
      w = load8hi<W>(a + 3 * rs); c3 = fma(u, w, c3); d3 = fma(v, w, d3)
      a += step
    }
  }
  if (G + 4 <= inF) {
    const u = v128.load(x0 + (<usize>G << 2)), v = v128.load(x1 + (<usize>G << 2))
    let w = load4<W>(t); c0 = fma(u, w, c0); d0 = fma(v, w, d0)
    w = load4<W>(t + ts); c1 = fma(u, w, c1); d1 = fma(v, w, d1)
    w = load4<W>(t + 2 * ts); c2 = fma(u, w, c2); d2 = fma(v, w, d2)
    w = load4<W>(t + 3 * ts); c3 = fma(u, w, c3); d3 = fma(v, w, d3)
  }
  let s0 = hsum(c0), s1 = hsum(c1), s2 = hsum(c2), s3 = hsum(c3)
  let t0 = hsum(d0), t1 = hsum(d1), t2 = hsum(d2), t3 = hsum(d3)
  for (let i = <usize>(inF & ~3); i < <usize>inF; i++) {
    const u = load<f32>(x0 + (i << 2)), v = load<f32>(x1 + (i << 2))
    const o = t + (i - <usize>G) * wsize<W>()
    let w = load1<W>(o); s0 += u * w; t0 += v * w
    w = load1<W>(o + ts); s1 += u * w; t1 += v * w
    w = load1<W>(o + 2 * ts); s2 += u * w; t2 += v * w
    w = load1<W>(o + 3 * ts); s3 += u * w; t3 += v * w
  }
  store<f32>(h, s0); store<f32>(h, s1, 4); store<f32>(h, s2, 8); store<f32>(h, s3, 12)
  store<f32>(h + hs, t0); store<f32>(h + hs, t1, 4); store<f32>(h + hs, t2, 8); store<f32>(h + hs, t3, 12)
}

// 1 token x the 4 rows of a quad (row j's chunks at a + j * rs, its tail at t + j * ts); results to h[0..4].
@inline function tile1x4<W>(x0: usize, a: usize, rs: usize, step: usize, t: usize, ts: usize, G: i32, inF: i32, h: usize): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  let d0 = f32x4.splat(0), d1 = f32x4.splat(0), d2 = f32x4.splat(0), d3 = f32x4.splat(0)
  const step8: usize = sizeof<W>() == 4 ? 2 * step : step // bytes per 8 weights of a row
  for (let i: usize = 0; i < <usize>G; i += 8) {
    const v = v128.load(x0 + (i << 2))
    const u = v128.load(x0 + (i << 2), 16)
    c0 = fma(v, load8lo<W>(a), c0); d0 = fma(u, hiOf<W>(a, step), d0)
    c1 = fma(v, load8lo<W>(a + rs), c1); d1 = fma(u, hiOf<W>(a + rs, step), d1)
    c2 = fma(v, load8lo<W>(a + 2 * rs), c2); d2 = fma(u, hiOf<W>(a + 2 * rs, step), d2)
    c3 = fma(v, load8lo<W>(a + 3 * rs), c3); d3 = fma(u, hiOf<W>(a + 3 * rs, step), d3)
    a += step8
  }
  if (G + 4 <= inF) {
    const v = v128.load(x0 + (<usize>G << 2))
    c0 = fma(v, load4<W>(t), c0); c1 = fma(v, load4<W>(t + ts), c1)
    c2 = fma(v, load4<W>(t + 2 * ts), c2); c3 = fma(v, load4<W>(t + 3 * ts), c3)
  }
  let s0 = hsum(f32x4.add(c0, d0)), s1 = hsum(f32x4.add(c1, d1)), s2 = hsum(f32x4.add(c2, d2)), s3 = hsum(f32x4.add(c3, d3))
  for (let i = <usize>(inF & ~3); i < <usize>inF; i++) {
    const v = load<f32>(x0 + (i << 2))
    const o = t + (i - <usize>G) * wsize<W>()
    s0 += v * load1<W>(o); s1 += v * load1<W>(o + ts)
    s2 += v * load1<W>(o + 2 * ts); s3 += v * load1<W>(o + 3 * ts)
  }
  store<f32>(h, s0); store<f32>(h, s1, 4); store<f32>(h, s2, 8); store<f32>(h, s3, 12)
}

// One dot product of length inF with a plain row (two chains; the tail starts at value G).
@inline function dot<W>(x0: usize, a0: usize, G: i32, inF: i32): f32 {
  let c0 = f32x4.splat(0), d0 = f32x4.splat(0)
  for (let i: usize = 0; i < <usize>G; i += 8) {
    const p = a0 + i * wsize<W>()
    c0 = fma(v128.load(x0 + (i << 2)), load8lo<W>(p), c0)
    d0 = fma(v128.load(x0 + (i << 2), 16), load8hi<W>(p), d0)
  }
  if (G + 4 <= inF) c0 = fma(v128.load(x0 + (<usize>G << 2)), load4<W>(a0 + <usize>G * wsize<W>()), c0)
  let s = hsum(f32x4.add(c0, d0))
  for (let i = <usize>(inF & ~3); i < <usize>inF; i++) s += load<f32>(x0 + (i << 2)) * load1<W>(a0 + i * wsize<W>())
  return s
}
