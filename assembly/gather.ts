// gather: the shrink of an embedding layer. Its input is one token id per row instead of an
// activation row, and A x with x the one-hot vector of token t is column t of A: so
// h[e, :] = A[:, tok[row_e]] * scale (* the entry's weight), a copy of `rank` weights per entry,
// then the ordinary expand. A is stored transposed, [vocab x rank] natural order (the host's
// packGatherA), so each entry's column is one contiguous read. One output slice.
import { expandSegment } from './expand'
import { slotA, slotBt, slotOf, slotRank, slotScale } from './sgmv'
import { load1, wsize } from './simd'

/**
 * @param tokPtr     i32 [T]: token id of each row (validated: 0 <= id < vocab)
 * @param yPtr       f32 [T * outF], accumulated into
 * @param outF       output width (the embedding dimension)
 * @param rowsPtr    i32 [N]: row of each entry, grouped by segment
 * @param segPtr     i32 [numSeg * 3]: (slot, start, length) per segment
 * @param numSeg     number of segments
 * @param slotsPtr   slot table (sgmv.ts SLOT_BYTES per slot; A pointer: W [vocab x rank])
 * @param scratchPtr f32 [chunkSize * maxRank]: H
 * @param weightsPtr f32 [N]: per-entry weights (0 = none)
 */
export function gatherT<W>(
  tokPtr: usize, yPtr: usize, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, scratchPtr: usize, weightsPtr: usize,
): void {
  for (let g = 0; g < numSeg; g++) {
    const seg = segPtr + <usize>g * 12
    const slotEntry = slotOf(slotsPtr, seg)
    const start = load<i32>(seg, 4)
    const n = load<i32>(seg, 8)
    const rank = slotRank(slotEntry)
    const scale = slotScale(slotEntry)
    const aPtr = slotA(slotEntry)
    const rows = rowsPtr + (<usize>start << 2)
    for (let e = 0; e < n; e++) {
      const tok = load<i32>(tokPtr + (<usize>load<i32>(rows + (<usize>e << 2)) << 2))
      const c = weightsPtr == 0 ? scale : scale * load<f32>(weightsPtr + (<usize>(start + e) << 2))
      const col = aPtr + <usize>tok * <usize>rank * wsize<W>()
      const h = scratchPtr + (<usize>(e * rank) << 2)
      for (let k = 0; k < rank; k++) store<f32>(h + (<usize>k << 2), load1<W>(col + <usize>k * wsize<W>()) * c)
    }
    expandSegment<W>(scratchPtr, rank, 0, rank, slotBt(slotEntry), outF, yPtr, outF, 0, rows, n)
  }
}

/** gatherT for weight storage `dtype` (0 f32, 1 bf16, 2 f16, as in index.ts). */
export function gather(
  dtype: i32, tokPtr: usize, yPtr: usize, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, scratchPtr: usize, weightsPtr: usize,
): void {
  if (dtype == 0) gatherT<f32>(tokPtr, yPtr, outF, rowsPtr, segPtr, numSeg, slotsPtr, scratchPtr, weightsPtr)
  else if (dtype == 1) gatherT<u16>(tokPtr, yPtr, outF, rowsPtr, segPtr, numSeg, slotsPtr, scratchPtr, weightsPtr)
  else gatherT<i16>(tokPtr, yPtr, outF, rowsPtr, segPtr, numSeg, slotsPtr, scratchPtr, weightsPtr)
}
