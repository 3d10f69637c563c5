// Work items of the multi-threaded SGMV (src/wasm/threads/): one call runs in two phases over
// one shared memory, every thread taking its own part of each phase, with a barrier between.
//
//   phase 1, shrinkTasks: H rows of (segment, entries, A rows) ranges; every H element has one
//     writer, so any split of entries and rows is race-free. The slot's scale is folded in here.
//   phase 2, expandColumns: a range of y's output columns for every segment and slice. A token row
//     appears in several segments when adaptersPerToken > 1, so splitting the expand by segments
//     could let two threads add into the same y element; splitting it by columns cannot.
//
//   or, with one adapter per token, both phases at once, sgmvTasks: a run of a segment's entries
//     is shrunk and then expanded for every column (each y row belongs to one entry: no race, and
//     no barrier between the phases).
//
// H of the whole call is kept (not one chunk as in sgmv.ts): segment g owns the block at
// hPtr + start_g * hRow * 4, [n_g x R_g] with R_g = numSlices * rank_g, hRow = numSlices * maxRank.
import { expandSegment } from './expand'
import { slotA, slotBt, slotOf, slotRank, slotScale } from './sgmv'
import { shrinkSegment } from './shrink'
import { scaleInPlace, wsize } from './simd'
import { DTYPE_BF16, DTYPE_F32, SEGMENT_BYTES, TASK_FIELDS } from './records'

/**
 * @param xPtr     f32 [T * inF]: activations
 * @param inF      input width
 * @param rowsPtr  i32 [N]: row of each entry, grouped by segment
 * @param segPtr   i32 [numSeg * 3]: (slot, start, length) per segment
 * @param slotsPtr slot table (SLOT_BYTES per slot, records.ts)
 * @param numSlices output slices
 * @param hPtr     f32 [N * hRow]: H of the call (layout above)
 * @param hRow     numSlices * maxRank
 * @param taskPtr  i32 [numTasks * TASK_FIELDS]: (g, e0, n, k0, k1); k0 = 0, k1 = R_g for whole rows
 * @param numTasks tasks of this thread
 */
export function shrinkTasksT<W>(
  xPtr: usize, inF: i32, rowsPtr: usize, segPtr: usize, slotsPtr: usize, numSlices: i32,
  hPtr: usize, hRow: i32, taskPtr: usize, numTasks: i32,
): void {
  const aStride = <usize>inF * wsize<W>()
  for (let i = 0; i < numTasks; i++) {
    const t = taskPtr + <usize>(i * TASK_FIELDS) * 4
    const g = load<i32>(t), e0 = load<i32>(t, 4), n = load<i32>(t, 8), k0 = load<i32>(t, 12), k1 = load<i32>(t, 16)
    const seg = segPtr + <usize>g * SEGMENT_BYTES
    const slotEntry = slotOf(slotsPtr, seg)
    const start = load<i32>(seg, 4)
    const rank = slotRank(slotEntry)
    const scale = slotScale(slotEntry)
    const aPtr = slotA(slotEntry)
    const R = numSlices * rank
    const hSeg = hPtr + <usize>start * <usize>hRow * 4 // [n_g x R] block of the segment
    const rows = rowsPtr + (<usize>(start + e0) << 2)
    if (k0 == 0 && k1 == R) {
      const h = hSeg + <usize>e0 * <usize>R * 4
      shrinkSegment<W>(xPtr, inF, rows, n, aPtr, R, h)
      scaleInPlace(h, n * R, scale)
    } else {
      // a range of A rows: one entry at a time (H's row stride is R, the kernel's would be k1 - k0)
      for (let e = 0; e < n; e++) {
        const h = hSeg + (<usize>(e0 + e) * <usize>R + <usize>k0) * 4
        shrinkSegment<W>(xPtr, inF, rows + (<usize>e << 2), 1, aPtr + <usize>k0 * aStride, k1 - k0, h)
        scaleInPlace(h, k1 - k0, scale)
      }
    }
  }
}

/**
 * y[:, c0:c1] += the delta of every segment, for output columns c0..c1. c0 and c1 must be slice
 * boundaries or 8-column panel boundaries inside a slice (slice start + 8j).
 * @param hPtr     f32 [N * hRow]: H after phase 1
 * @param hRow     numSlices * maxRank
 * @param yPtr     f32 [T * outF]: accumulated into
 * @param outF     row stride of y
 * @param rowsPtr  i32 [N]: row of each entry
 * @param segPtr   i32 [numSeg * 3]: (slot, start, length)
 * @param numSeg   segments
 * @param slotsPtr slot table
 * @param widthsPtr i32 [numSlices]: slice widths
 * @param numSlices output slices
 * @param c0, c1   column range of this thread
 */
export function expandColumnsT<W>(
  hPtr: usize, hRow: i32, yPtr: usize, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, widthsPtr: usize, numSlices: i32, c0: i32, c1: i32,
): void {
  for (let g = 0; g < numSeg; g++) {
    const seg = segPtr + <usize>g * SEGMENT_BYTES
    const slotEntry = slotOf(slotsPtr, seg)
    const start = load<i32>(seg, 4)
    const n = load<i32>(seg, 8)
    const rank = slotRank(slotEntry)
    let btPtr = slotBt(slotEntry)
    const R = numSlices * rank
    const hSeg = hPtr + <usize>start * <usize>hRow * 4
    const rows = rowsPtr + (<usize>start << 2)
    const panel = <usize>rank * 8 * wsize<W>() // bytes per 8-column panel of B (expand.ts)
    let off = 0
    for (let s = 0; s < numSlices; s++) {
      const width = load<i32>(widthsPtr + (<usize>s << 2))
      const a = max(c0, off) - off // local range [a, b) of this slice
      const b = min(c1, off + width) - off
      if (a < b) {
        // panels a/8 .. : the tail block (width % 8 columns) follows the last full panel, so a
        // range ending at the slice end finds it at the same place as the whole slice would
        expandSegment<W>(hSeg, R, s * rank, rank, btPtr + <usize>(a >> 3) * panel, b - a, yPtr, outF, off + a, rows, n)
      }
      btPtr += <usize>rank * <usize>width * wsize<W>()
      off += width
    }
  }
}

/**
 * shrink, scale and expand whole entries: for each task (g, e0, n, 0, R_g), H rows e0 .. e0 + n of
 * segment g, then y[rows[e]] += the delta of every slice (with `shrink` false: only the expand,
 * H rows already there). Tasks must start at a block of 4 (or at
 * the segment's pair or single) as in splitShrink, so that the expand groups entries as sgmv.ts.
 * Arguments as shrinkTasksT and expandColumnsT (yPtr f32 [T * outF], accumulated into).
 */
export function sgmvTasksT<W>(
  xPtr: usize, inF: i32, rowsPtr: usize, segPtr: usize, slotsPtr: usize, numSlices: i32,
  hPtr: usize, hRow: i32, taskPtr: usize, numTasks: i32, yPtr: usize, outF: i32, widthsPtr: usize, shrink: bool,
): void {
  for (let i = 0; i < numTasks; i++) {
    const t = taskPtr + <usize>(i * TASK_FIELDS) * 4
    const g = load<i32>(t), e0 = load<i32>(t, 4), n = load<i32>(t, 8)
    const seg = segPtr + <usize>g * SEGMENT_BYTES
    const slotEntry = slotOf(slotsPtr, seg)
    const start = load<i32>(seg, 4)
    const rank = slotRank(slotEntry)
    const scale = slotScale(slotEntry)
    const aPtr = slotA(slotEntry)
    let btPtr = slotBt(slotEntry)
    const R = numSlices * rank
    const h = hPtr + (<usize>start * <usize>hRow + <usize>e0 * <usize>R) * 4
    const rows = rowsPtr + (<usize>(start + e0) << 2)
    if (shrink) {
      shrinkSegment<W>(xPtr, inF, rows, n, aPtr, R, h)
      scaleInPlace(h, n * R, scale)
    }
    let off = 0
    for (let s = 0; s < numSlices; s++) {
      const width = load<i32>(widthsPtr + (<usize>s << 2))
      expandSegment<W>(h, R, s * rank, rank, btPtr, width, yPtr, outF, off, rows, n)
      btPtr += <usize>rank * <usize>width * wsize<W>()
      off += width
    }
  }
}

// Exports (dtype: 0 f32, 1 bf16, 2 f16, as in index.ts); argument shapes as above.
export function shrinkTasks(
  dtype: i32, xPtr: usize, inF: i32, rowsPtr: usize, segPtr: usize, slotsPtr: usize, numSlices: i32,
  hPtr: usize, hRow: i32, taskPtr: usize, numTasks: i32,
): void {
  if (dtype == DTYPE_F32) shrinkTasksT<f32>(xPtr, inF, rowsPtr, segPtr, slotsPtr, numSlices, hPtr, hRow, taskPtr, numTasks)
  else if (dtype == DTYPE_BF16) shrinkTasksT<u16>(xPtr, inF, rowsPtr, segPtr, slotsPtr, numSlices, hPtr, hRow, taskPtr, numTasks)
  else shrinkTasksT<i16>(xPtr, inF, rowsPtr, segPtr, slotsPtr, numSlices, hPtr, hRow, taskPtr, numTasks)
}

// shrink: 0 to run only the expand of the tasks (their H rows already computed by shrinkTasks).
export function sgmvTasks(
  dtype: i32, xPtr: usize, inF: i32, rowsPtr: usize, segPtr: usize, slotsPtr: usize, numSlices: i32,
  hPtr: usize, hRow: i32, taskPtr: usize, numTasks: i32, yPtr: usize, outF: i32, widthsPtr: usize, shrink: i32,
): void {
  if (dtype == DTYPE_F32) sgmvTasksT<f32>(xPtr, inF, rowsPtr, segPtr, slotsPtr, numSlices, hPtr, hRow, taskPtr, numTasks, yPtr, outF, widthsPtr, shrink != 0)
  else if (dtype == DTYPE_BF16) sgmvTasksT<u16>(xPtr, inF, rowsPtr, segPtr, slotsPtr, numSlices, hPtr, hRow, taskPtr, numTasks, yPtr, outF, widthsPtr, shrink != 0)
  else sgmvTasksT<i16>(xPtr, inF, rowsPtr, segPtr, slotsPtr, numSlices, hPtr, hRow, taskPtr, numTasks, yPtr, outF, widthsPtr, shrink != 0)
}

export function expandColumns(
  dtype: i32, hPtr: usize, hRow: i32, yPtr: usize, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, widthsPtr: usize, numSlices: i32, c0: i32, c1: i32,
): void {
  if (dtype == DTYPE_F32) expandColumnsT<f32>(hPtr, hRow, yPtr, outF, rowsPtr, segPtr, numSeg, slotsPtr, widthsPtr, numSlices, c0, c1)
  else if (dtype == DTYPE_BF16) expandColumnsT<u16>(hPtr, hRow, yPtr, outF, rowsPtr, segPtr, numSeg, slotsPtr, widthsPtr, numSlices, c0, c1)
  else expandColumnsT<i16>(hPtr, hRow, yPtr, outF, rowsPtr, segPtr, numSeg, slotsPtr, widthsPtr, numSlices, c0, c1)
}

