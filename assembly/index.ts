// Raw exports over one linear memory. The host owns allocation (see src/wasm/memory.ts): every
// argument is a byte address or a size; no managed objects, no copies.
import { expandSegment } from './expand'
import { sgmvT } from './sgmv'
export { DECODE_MIN } from './sgmv'
import { shrinkSegment } from './shrink'
import { DTYPE_BF16, DTYPE_F32 } from './records'
export { peakFlops, readBytes } from './peak'


/** Fused SGMV over all segments; see assembly/sgmv.ts for the argument shapes. */
export function sgmv(
  dtype: i32, xPtr: usize, yPtr: usize, inF: i32, outF: i32, rowsPtr: usize, segPtr: usize, numSeg: i32,
  slotsPtr: usize, widthsPtr: usize, numSlices: i32, scratchPtr: usize, decodePtr: usize, weightsPtr: usize,
): void {
  if (dtype == DTYPE_F32) sgmvT<f32>(xPtr, yPtr, inF, outF, rowsPtr, segPtr, numSeg, slotsPtr, widthsPtr, numSlices, scratchPtr, 0, weightsPtr)
  else if (dtype == DTYPE_BF16) sgmvT<u16>(xPtr, yPtr, inF, outF, rowsPtr, segPtr, numSeg, slotsPtr, widthsPtr, numSlices, scratchPtr, decodePtr, weightsPtr)
  else sgmvT<i16>(xPtr, yPtr, inF, outF, rowsPtr, segPtr, numSeg, slotsPtr, widthsPtr, numSlices, scratchPtr, decodePtr, weightsPtr)
}

/** shrink of one segment; see assembly/shrink.ts. */
export function shrink(dtype: i32, xPtr: usize, inF: i32, rowsPtr: usize, n: i32, aPtr: usize, R: i32, hPtr: usize): void {
  if (dtype == DTYPE_F32) shrinkSegment<f32>(xPtr, inF, rowsPtr, n, aPtr, R, hPtr)
  else if (dtype == DTYPE_BF16) shrinkSegment<u16>(xPtr, inF, rowsPtr, n, aPtr, R, hPtr)
  else shrinkSegment<i16>(xPtr, inF, rowsPtr, n, aPtr, R, hPtr)
}

/** expand of one segment and slice; see assembly/expand.ts. */
export function expand(
  dtype: i32, hPtr: usize, R: i32, h0: i32, rank: i32, btPtr: usize, width: i32,
  yPtr: usize, outF: i32, col0: i32, rowsPtr: usize, n: i32,
): void {
  if (dtype == DTYPE_F32) expandSegment<f32>(hPtr, R, h0, rank, btPtr, width, yPtr, outF, col0, rowsPtr, n)
  else if (dtype == DTYPE_BF16) expandSegment<u16>(hPtr, R, h0, rank, btPtr, width, yPtr, outF, col0, rowsPtr, n)
  else expandSegment<i16>(hPtr, R, h0, rank, btPtr, width, yPtr, outF, col0, rowsPtr, n)
}

/** First byte the host may allocate (everything below belongs to the module's static data). */
export function heapBase(): usize {
  return __heap_base
}
export { shrinkTasks, expandColumns, sgmvTasks } from './threads'
export { gather } from './gather'
