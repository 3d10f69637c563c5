import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type Dispatch } from './program.js'

/** Overrides of shaders/shrink.wgsl (EM*MT entries x RW*RV rank rows per workgroup, KS-way split-K). */
export interface ShrinkTiling { EM: number; MT: number; RW: number; RV: number; KS: number }

/** The pipeline of shaders/shrink.wgsl with these tiles. */
export function shrinkSpec(storage: WeightStorage, tiling: ShrinkTiling): PipelineSpec {
  return { shader: 'shrink', storage, overrides: { ...tiling } }
}

/**
 * Decode batches (tiles of <= 4 entries) are pure weight streaming: few outputs, so 8 threads
 * share each dot product (split-K), each thread on 8 rank rows (8 A pairs per x pair); lavapipe,
 * interleaved A/B at T = 1 and 16: 1.5-3x faster than 16-way split-K over 2 rank rows per thread.
 * Larger tiles (16 entries) are small GEMMs: an 8 x 8 register tile per thread
 * (entries x rank rows, 16 loads per 64 FMAs), 4-way split-K, 2 x 2 x 4 = 16 threads (lavapipe,
 * interleaved A/B: 1.1-1.2x faster than the 4 x 8 tile of 4 x 2 x 4 threads; 16-entry threads,
 * 2-way or 8-way split-K and 4 x 4 tiles were slower).
 */
export function shrinkTiling(tileM: number): ShrinkTiling {
  if (tileM <= 4) return { EM: 1, MT: tileM, RW: 1, RV: 8, KS: 8 }
  return { EM: tileM / 8, MT: 8, RW: 2, RV: 8, KS: 4 }
}

/**
 * @param params uniform Params
 * @param x      [T * inFeatures] f32
 * @param A      resident A weights
 * @param slots  [maxAdapters] (rank, scale)
 * @param meta   call metadata (tiles, rows)
 * @param h      [N * S * rankStride] f32 output
 */
export function shrinkDispatch(
  storage: WeightStorage,
  tiling: ShrinkTiling,
  shape: CallShape,
  numTiles: number,
  buffers: { params: GPUBuffer; x: GPUBuffer; A: GPUBuffer; slots: GPUBuffer; meta: GPUBuffer; h: GPUBuffer },
): Dispatch {
  const rankTile = tiling.RW * tiling.RV
  const groups = checkGroups([Math.ceil(shape.maxUsedRank / rankTile), numTiles, shape.numSlices], 'shrink')
  return {
    spec: shrinkSpec(storage, tiling),
    groups,
    buffers: [buffers.params, buffers.x, buffers.A, buffers.slots, buffers.meta, buffers.h],
  }
}
