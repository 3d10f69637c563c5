// sgmv: the fused driver. For each segment (one slot, up to chunkSize entries): shrink into the
// scratch H (stays in L1/L2: chunk x numSlices x rank floats), scale H by the slot's scale, then
// expand every slice from it. Per-slot rank: only r_a rows and columns are touched.
import { expandSegment } from './expand'
import { shrinkSegment } from './shrink'
import { scaleInPlace, wsize } from './simd'

// Slot table entry (16 bytes per slot), written by the host:
//   +0 i32 rank, +4 f32 scale, +8 u32 A_cat pointer (W [numSlices*rank x inF]),
//   +12 u32 Bt pointer (W: per slice s, [rank x width_s], slices one after another)
export const SLOT_BYTES: i32 = 16

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
 */
export function sgmvT<W>(
  xPtr: usize, yPtr: usize, inF: i32, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, widthsPtr: usize, numSlices: i32, scratchPtr: usize,
): void {
  for (let g = 0; g < numSeg; g++) {
    const seg = segPtr + <usize>g * 12
    const slotEntry = slotsPtr + <usize>load<i32>(seg) * SLOT_BYTES
    const start = load<i32>(seg, 4)
    const n = load<i32>(seg, 8)
    const rank = load<i32>(slotEntry)
    const scale = load<f32>(slotEntry, 4)
    const aPtr = <usize>load<u32>(slotEntry, 8)
    let btPtr = <usize>load<u32>(slotEntry, 12)
    const R = numSlices * rank
    const rows = rowsPtr + (<usize>start << 2)
    shrinkSegment<W>(xPtr, inF, rows, n, aPtr, R, scratchPtr)
    scaleInPlace(scratchPtr, n * R, scale)
    let col0 = 0
    for (let s = 0; s < numSlices; s++) {
      const width = load<i32>(widthsPtr + (<usize>s << 2))
      expandSegment<W>(scratchPtr, R, s * rank, rank, btPtr, width, yPtr, outF, col0, rows, n)
      btPtr += <usize>rank * <usize>width * wsize<W>()
      col0 += width
    }
  }
}
