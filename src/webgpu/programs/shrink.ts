import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type KernelProfile } from './program.js'

/**
 * Overrides of shaders/shrink.wgsl (EM*MT entries x RW*RV rank rows per workgroup, KS-way split-K
 * inside the workgroup, KG-way split-K over workgroups).
 */
export interface ShrinkTiling {
  EM: number
  MT: number
  RW: number
  RV: number
  KS: number
  KG: number
}

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
export function shrinkTiling(tileM: number, profile: KernelProfile = 'software'): Omit<ShrinkTiling, 'KG'> {
  if (profile === 'discrete') {
    // 64 threads: decode 4 rank rows x 64-way split-K; GEMM tiles 8 x 8 per thread, 16-way split-K
    // (H200: 8 x 4 with 8-way split-K and the partials added as a tree: 0.7-1.7x, slower on
    // 3 slices and rank 64)
    if (tileM <= 4) return { EM: 1, MT: tileM, RW: 1, RV: 4, KS: 64 }
    return { EM: tileM / 8, MT: 8, RW: 2, RV: 8, KS: 16 }
  }
  if (tileM <= 4) return { EM: 1, MT: tileM, RW: 1, RV: 8, KS: 8 }
  return { EM: tileM / 8, MT: 8, RW: 2, RV: 8, KS: 4 }
}

/** Workgroups of the shrink before any split over workgroups (rank tiles x tiles x slices). */
export function shrinkWorkgroups(tiling: Omit<ShrinkTiling, 'KG'>, shape: CallShape, numTiles: number): number {
  return Math.ceil(shape.maxUsedRank / (tiling.RW * tiling.RV)) * numTiles * shape.numSlices
}

/** Workgroups of the shrink: (rank tiles, tiles, slices x KG). */
export function shrinkGroups(tiling: ShrinkTiling, shape: CallShape, numTiles: number): [number, number, number] {
  const rankTile = tiling.RW * tiling.RV
  return checkGroups([Math.ceil(shape.maxUsedRank / rankTile), numTiles, shape.numSlices * tiling.KG], 'shrink')
}
