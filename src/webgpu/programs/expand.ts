import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type Dispatch } from './program.js'

/** Overrides of shaders/expand.wgsl (EM*MT entries x 2*NW*NT columns per workgroup). */
export interface ExpandTiling { EM: number; MT: number; NW: number; NT: number }

/** The pipeline of shaders/expand.wgsl with these tiles. */
export function expandSpec(storage: WeightStorage, tiling: ExpandTiling): PipelineSpec {
  return { shader: 'expand', storage, overrides: { ...tiling } }
}

/**
 * Decode tiles (<= 4 entries): one thread row, 32 threads x 8 column pairs = 512 columns per
 * workgroup (weight streaming; lavapipe, interleaved A/B: up to 1.3x faster than 64 x 2). GEMM tiles (16 entries):
 * all 16 entries x 4 column pairs per thread (16 + 4 loads per 128 FMAs), 8 threads = 16 entries
 * x 64 columns per workgroup (lavapipe, interleaved A/B: 1.3-3.7x faster than 2 pairs per
 * thread, which beat 2 x 8 threads of 8 entries x 4 pairs by 1.1-1.9x; 8 pairs per thread
 * (256 accumulators) spill and run 3-7x slower; 16 or 32 threads were no faster).
 */
export function expandTiling(tileM: number): ExpandTiling {
  if (tileM <= 4) return { EM: 1, MT: tileM, NW: 32, NT: 8 }
  return { EM: 1, MT: tileM, NW: 8, NT: 4 }
}

/**
 * Segment-major expand; only valid when every token has at most one entry (no two entries
 * write the same row).
 * @param params uniform Params
 * @param h      [N * S * rankStride] f32
 * @param B      resident B weights
 * @param slots  [maxAdapters] (rank, scale)
 * @param meta   call metadata (tiles, rows)
 * @param y      [T * outFeatures] f32, updated in place
 */
export function expandDispatch(
  storage: WeightStorage,
  tiling: ExpandTiling,
  shape: CallShape,
  numTiles: number,
  buffers: { params: GPUBuffer; h: GPUBuffer; B: GPUBuffer; slots: GPUBuffer; meta: GPUBuffer; y: GPUBuffer },
): Dispatch {
  const colTile = 2 * tiling.NW * tiling.NT // columns: NT pairs per thread
  const groups = checkGroups([numTiles, Math.ceil(shape.maxSliceWidth / colTile), shape.numSlices], 'expand')
  return {
    spec: expandSpec(storage, tiling),
    groups,
    buffers: [buffers.params, buffers.h, buffers.B, buffers.slots, buffers.meta, buffers.y],
  }
}
