// sgmv: the fused driver. For each segment (one slot, up to chunkSize entries): shrink into the
// scratch H (stays in L1/L2: chunk x numSlices x rank floats), scale H by the slot's scale, then
// expand every slice from it. Per-slot rank: only r_a rows and columns are touched.
// 16-bit weights: a segment of at least DECODE_MIN entries first decodes its slot's weights to
// f32 in a scratch area (the f32 form of the same layouts: decodeA, decodeRows) and runs the
// f32 kernels on them, so the decode is paid once per segment instead of once per 4-token tile;
// the f32 kernels add in the same order, so the results are the same bits either way.
import { expandSegment } from './expand'
import { shrinkSegment } from './shrink'
import { load1, load8hi, load8lo, scaleInPlace, wsize } from './simd'

/**
 * Segments of at least this many entries decode 16-bit weights once. A/B measured: 64-entry
 * segments 1.08-1.25x faster; 16-32-entry ones 1.1-1.3x (the 16-bit 4-entry tile keeps more
 * vectors live than the 16 registers V8 gives it and spills); 8-entry ones -9% to +10%.
 */
export const DECODE_MIN: i32 = 16

// Slot table entry (16 bytes per slot), written by the host:
//   +0 i32 rank, +4 f32 scale, +8 u32 A_cat pointer (W [numSlices*rank x inF]),
//   +12 u32 Bt pointer (W: per slice s, [rank x width_s], slices one after another)
export const SLOT_BYTES: i32 = 16

/** The slot-table entry of segment `seg` (i32 [3] at seg: slot, start, length). */
@inline export function slotOf(slotsPtr: usize, seg: usize): usize {
  return slotsPtr + <usize>load<i32>(seg) * SLOT_BYTES
}
@inline export function slotRank(entry: usize): i32 { return load<i32>(entry) }
@inline export function slotScale(entry: usize): f32 { return load<f32>(entry, 4) }
@inline export function slotA(entry: usize): usize { return <usize>load<u32>(entry, 8) }
@inline export function slotBt(entry: usize): usize { return <usize>load<u32>(entry, 12) }

/**
 * @param xPtr       f32 [T * inF]
 * @param yPtr       f32 [T * outF], accumulated into
 * @param inF        input width
 * @param outF       output width (sum of slice widths)
 * @param rowsPtr    i32 [N]: row of each entry, grouped by segment
 * @param segPtr     i32 [numSeg * 3]: (slot, start, length) per segment
 * @param numSeg     number of segments
 * @param slotsPtr   slot table (SLOT_BYTES per slot)
 * @param widthsPtr  i32 [numSlices]: slice widths
 * @param numSlices  number of output slices
 * @param scratchPtr f32 [chunkSize * numSlices * maxRank]: H
 * @param decodePtr  f32 [numSlices * maxRank * inF + maxRank * outF]: decoded weights of one slot
 *                   (16-bit weights only; 0 = never decode)
 * @param weightsPtr f32 [N]: weight of each entry, multiplying its slot's scale (0 = none: every
 *                   weight 1, the scale alone)
 */
export function sgmvT<W>(
  xPtr: usize, yPtr: usize, inF: i32, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, widthsPtr: usize, numSlices: i32, scratchPtr: usize, decodePtr: usize, weightsPtr: usize,
): void {
  for (let g = 0; g < numSeg; g++) {
    const seg = segPtr + <usize>g * 12
    const slotEntry = slotOf(slotsPtr, seg)
    const start = load<i32>(seg, 4)
    const n = load<i32>(seg, 8)
    const rank = slotRank(slotEntry)
    const scale = slotScale(slotEntry)
    const aPtr = slotA(slotEntry)
    let btPtr = slotBt(slotEntry)
    const R = numSlices * rank
    const rows = rowsPtr + (<usize>start << 2)
    // 16-bit weights of a long segment: decoded to f32 once (see the header)
    const decode = sizeof<W>() == 2 && decodePtr != 0 && n >= DECODE_MIN
    if (decode) {
      // A_cat: quad layout (see shrink.ts) -> the f32 quad layout
      decodeA<W>(aPtr, R, inF, decodePtr)
      shrinkSegment<f32>(xPtr, inF, rows, n, decodePtr, R, scratchPtr)
    } else {
      shrinkSegment<W>(xPtr, inF, rows, n, aPtr, R, scratchPtr)
    }
    if (weightsPtr == 0) scaleInPlace(scratchPtr, n * R, scale)
    else scaleEntries(scratchPtr, n, R, scale, weightsPtr + (<usize>start << 2))
    const btF = decodePtr + (<usize>R * <usize>inF << 2) // decoded B of one slice
    let col0 = 0
    for (let s = 0; s < numSlices; s++) {
      const width = load<i32>(widthsPtr + (<usize>s << 2))
      if (decode) {
        // panels: (width / 8) * rank rows of one 8-group; then the [rank x width % 8] tail, natural
        const full = (width >> 3) * rank
        decodeRows<W>(btPtr, full, 8, btF)
        decodeRows<W>(btPtr + <usize>full * 8 * wsize<W>(), 1, rank * (width & 7), btF + (<usize>full << 5), false)
        expandSegment<f32>(scratchPtr, R, s * rank, rank, btF, width, yPtr, outF, col0, rows, n)
      } else {
        expandSegment<W>(scratchPtr, R, s * rank, rank, btPtr, width, yPtr, outF, col0, rows, n)
      }
      btPtr += <usize>rank * <usize>width * wsize<W>()
      col0 += width
    }
  }
}

/** H [n x R]: row e times scale * w[e] (w: f32 [n], per-entry weights). */
function scaleEntries(h: usize, n: i32, R: i32, scale: f32, w: usize): void {
  for (let e = 0; e < n; e++) scaleInPlace(h + (<usize>(e * R) << 2), R, scale * load<f32>(w + (<usize>e << 2)))
}

/**
 * A_cat in the 16-bit quad layout (shrink.ts) -> the f32 quad layout at dst: a 16-bit chunk of
 * 8 weights becomes two f32 chunks of 4, the second one a chunk step (4 chunks) further on.
 */
function decodeA<W>(src: usize, R: i32, inF: i32, dst: usize): void {
  const G = inF & ~7
  const R4 = R & ~3
  const rowBytes = <usize>inF * wsize<W>()
  const chunks = (G >> 3) * 4 // 16-bit chunks in a quad
  for (let k = 0; k < R4; k += 4) {
    const s = src + <usize>k * rowBytes
    const d = dst + (<usize>k * <usize>inF << 2)
    for (let c = 0; c < chunks; c++) {
      const p = s + (<usize>c << 4)
      const o = d + (<usize>(c >> 2) << 7) + (<usize>(c & 3) << 4)
      v128.store(o, load8lo<W>(p))
      v128.store(o, load8hi<W>(p), 64)
    }
    // the quad's tails: 4 rows of inF - G, natural order
    decodeRows<W>(s + <usize>G * 4 * wsize<W>(), 1, 4 * (inF - G), d + (<usize>G << 4), false)
  }
  if (R4 < R) decodeRows<W>(src + <usize>R4 * rowBytes, R - R4, inF, dst + (<usize>R4 * <usize>inF << 2))
}

/** rows x len weights at src (8-groups in storage order when `grouped`, the rest natural) -> f32 at dst, natural order. */
function decodeRows<W>(src: usize, rows: i32, len: i32, dst: usize, grouped: bool = true): void {
  const g8 = grouped ? len & ~7 : 0
  for (let r = 0; r < rows; r++) {
    const s = src + <usize>r * <usize>len * wsize<W>()
    const d = dst + (<usize>r * <usize>len << 2)
    let i = 0
    for (; i < g8; i += 8) {
      const p = s + <usize>i * wsize<W>()
      v128.store(d + (<usize>i << 2), load8lo<W>(p))
      v128.store(d + (<usize>i << 2), load8hi<W>(p), 16)
    }
    for (; i < len; i++) store<f32>(d + (<usize>i << 2), load1<W>(s + <usize>i * wsize<W>()))
  }
}
