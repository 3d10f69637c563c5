import type { PipelineSpec } from '../pipelines.js'

/**
 * shaders/fold.wgsl: the KG partials of a split-K shrink added once into partial 0, between the
 * shrink and a GEMM expand, which then reads one h. Without it every workgroup of the expand adds
 * the KG partials of its tile's h again, once per column tile: on an H100 (bench/webgpu-gemm.ts,
 * qkv r64 T = 256, 32-entry tiles) the expand took 26 us reading one partial, 37 with 4 and 50 with
 * 8, while a third dispatch costs ~2 us of a pass. On an H200 (bench/webgpu-gemm.ts --defaults,
 * folded against not, one run) every rank-64 call of the bench got faster or stayed even: T = 256
 * 1.25-1.41x (f32 square 47.0 -> 33.3 us, qkv 78.0 -> 58.6), T = 1024 1.00-1.15x (KG 2 on qkv
 * leaves little to fold). Rank tiles of 16 pay little for their partials and keep them: folding
 * them summed to 0.98x of the time over the 16 rank-16 calls, 0.87-0.89x on qkv at T = 256 (KG
 * 16, 3 slices) but 1.02-1.04x on square at T = 256 and 0.99-1.02x at T = 1024.
 */
export const FOLD_THREADS = 256
/** Workgroups of a fold at most (each thread then loops over the values). */
export const FOLD_MAX_GROUPS = 4096
/** Rank rows of the shrink's tiles from which a split-K GEMM call folds its partials. */
export const FOLD_FROM_RANK_ROWS = 32

export function foldSpec(kg: number): PipelineSpec {
  return { shader: 'fold', storage: 'f32', overrides: { KG: kg, WG: FOLD_THREADS } }
}

/** Workgroups that cover hPart values (one per thread, looping past FOLD_MAX_GROUPS workgroups). */
export function foldGroups(hPart: number): [number, number, number] {
  return [Math.max(1, Math.min(FOLD_MAX_GROUPS, Math.ceil(hPart / FOLD_THREADS))), 1, 1]
}
