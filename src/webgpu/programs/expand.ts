import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type KernelProfile } from './program.js'

/**
 * The segment-major expand kernels: shaders/expand_vec4.wgsl (y and B as column quads) when every
 * slice width is a multiple of 4, else shaders/expand.wgsl (column pairs, any width).
 */
export type ExpandKernel = 'expand' | 'expand_vec4'

export function expandKernel(sliceWidths: readonly number[]): ExpandKernel {
  return sliceWidths.every((n) => n % 4 === 0) ? 'expand_vec4' : 'expand'
}

/**
 * Overrides: EM*MT entries x NW*NT column groups per workgroup, where a group is a column pair
 * (expand.wgsl, override NT) or a column quad (expand_vec4.wgsl, override NQ).
 */
export interface ExpandTiling {
  EM: number
  MT: number
  NW: number
  NT: number
  KG: number
}

/** Columns of one column group of the kernel. */
const groupWidth = (kernel: ExpandKernel): number => (kernel === 'expand_vec4' ? 4 : 2)

/** The pipeline of the kernel with these tiles. */
export function expandSpec(storage: WeightStorage, kernel: ExpandKernel, tiling: ExpandTiling): PipelineSpec {
  const { EM, MT, NW, NT, KG } = tiling
  return { shader: kernel, storage, overrides: kernel === 'expand_vec4' ? { EM, MT, NW, NQ: NT, KG } : { EM, MT, NW, NT, KG } }
}

/**
 * Pairs (expand.wgsl). Decode tiles (<= 4 entries): one thread row, 32 threads x 8 column pairs =
 * 512 columns per workgroup (weight streaming; lavapipe, interleaved A/B: up to 1.3x faster than
 * 64 x 2). GEMM tiles (16 entries): all 16 entries x 4 column pairs per thread (16 + 4 loads per
 * 128 FMAs), 8 threads = 16 entries x 64 columns per workgroup (lavapipe, interleaved A/B:
 * 1.3-3.7x faster than 2 pairs per thread, which beat 2 x 8 threads of 8 entries x 4 pairs by
 * 1.1-1.9x; 8 pairs per thread spill and run 3-7x slower; 16 or 32 threads were no faster).
 *
 * Quads (expand_vec4.wgsl). Decode: 32 threads x 4 quads = 512 columns (lavapipe, interleaved
 * A/B at T = 1 and 16: 1.05-1.15x faster than the pairs). GEMM tiles: 16 entries x 4 quads per
 * thread (256 accumulators: no spill here, unlike 8 pairs of expand.wgsl), 8 threads = 16 x 128
 * per workgroup (lavapipe, interleaved A/B, rank 16 and 64, T = 16 to 1024: 1.2-1.45x faster than
 * the pairs; 2 quads 1.1-1.3x slower than 4; 6 or 8 quads spill, 5-8x slower).
 */
export function expandTiling(kernel: ExpandKernel, tileM: number, profile: KernelProfile = 'software'): Omit<ExpandTiling, 'KG'> {
  if (profile === 'discrete') {
    // decode: 32 threads of one column group each (more workgroups); GEMM: 4 x 4 entry threads
    // with 4 entries x 2 groups each (small register tiles), 128 threads
    if (tileM <= 4) return { EM: 1, MT: tileM, NW: 32, NT: 1 }
    return { EM: 4, MT: tileM / 4, NW: 32, NT: 2 }
  }
  if (kernel === 'expand_vec4') return tileM <= 4 ? { EM: 1, MT: tileM, NW: 32, NT: 4 } : { EM: 1, MT: tileM, NW: 8, NT: 4 }
  if (tileM <= 4) return { EM: 1, MT: tileM, NW: 32, NT: 8 }
  return { EM: 1, MT: tileM, NW: 8, NT: 4 }
}

/**
 * Workgroups of the segment-major expand (tiles, column tiles, slices); only valid when every
 * token has at most one entry (no two entries write the same row).
 */
export function expandGroups(kernel: ExpandKernel, tiling: ExpandTiling, shape: CallShape, numTiles: number): [number, number, number] {
  const colTile = groupWidth(kernel) * tiling.NW * tiling.NT // columns: NT pairs or quads per thread
  return checkGroups([numTiles, Math.ceil(shape.maxSliceWidth / colTile), shape.numSlices], 'expand')
}
