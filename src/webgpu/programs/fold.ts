import type { PipelineSpec } from '../pipelines.js'

/**
 * shaders/fold.wgsl: the KG partials of a split-K shrink added once into partial 0, between the
 * shrink and a GEMM expand, which then reads one h. Without it every workgroup of the expand adds
 * the KG partials of its tile's h again, once per column tile: on an H100 (bench/webgpu-gemm.ts,
 * qkv r64 T = 256, 32-entry tiles) the expand took 26 us reading one partial, 37 with 4 and 50 with
 * 8, while a third dispatch costs ~2 us of a pass. On an H200 (bench/webgpu-gemm.ts --defaults,
 * folded against not, one run) every rank-64 call of the bench got faster or stayed even: T = 256
 * 1.25-1.41x (f32 square 47.0 -> 33.3 us, qkv 78.0 -> 58.6), T = 1024 1.00-1.15x (KG 2 on qkv
 * leaves little to fold). Rank tiles of 16 pay little for their partials and mostly keep them:
 * folding them took 0.87-0.89x of the time on qkv at T = 256 (KG 16, 3 slices) but 1.02-1.04x on
 * square at T = 256 and 0.99-1.02x at T = 1024 (foldByDefault).
 */
export const FOLD_THREADS = 256
/** Workgroups of a fold at most (each thread then loops over the values). */
export const FOLD_MAX_GROUPS = 4096
/** Rank rows of the shrink's tiles from which a split-K GEMM call folds its partials. */
export const FOLD_FROM_RANK_ROWS = 32
/** Partials (KG) from which a call of several slices folds whatever its rank rows. */
export const FOLD_FROM_PARTIALS_SLICED = 16
/** Partials x tiles from which any split-K GEMM call folds (long calls at rank 16). */
export const FOLD_FROM_PARTIAL_TILES = 256

/**
 * Whether a split-K GEMM call folds its KG partials unless tuned otherwise: rank tiles of 32 rows
 * or more; rank 16 with 16 partials over several slices, or with KG x tiles >= 256 (what the
 * expand adds again per column tile grows with both).
 * In the H200 run (folded against not, gemm-defaults-nvidia-h200.json) that was qkv r16 at
 * T = 256, 1.13-1.15x faster (f32 32.7 -> 28.4 us) on all four of its rows (f32, bf16; 1 and 8
 * adapters), where square r16 with the same 16 partials took 1.02-1.04x the time and calls of 4
 * or 8 partials 0.97-1.02x. A later H200 run (after the y prefetch of expand_gemm and the merged
 * slices of shrink_gemm) had folding 8 partials over 32 tiles (T = 1024, rank 16) faster on all
 * eight such rows: square 1.02-1.04x (f32 44.8 -> 43.4 us), qkv 1.04-1.05x (69.3 -> 65.9); 16
 * partials over 8 tiles (square, T = 256) stayed 0.98x, as before.
 */
export function foldByDefault(rankRows: number, kg: number, slices: number, tiles = 0): boolean {
  return rankRows >= FOLD_FROM_RANK_ROWS || (kg >= FOLD_FROM_PARTIALS_SLICED && slices > 1) || kg * tiles >= FOLD_FROM_PARTIAL_TILES
}

export function foldSpec(kg: number): PipelineSpec {
  return { shader: 'fold', storage: 'f32', overrides: { KG: kg, WG: FOLD_THREADS } }
}

/** Workgroups that cover hPart values (one per thread, looping past FOLD_MAX_GROUPS workgroups). */
export function foldGroups(hPart: number): [number, number, number] {
  return [Math.max(1, Math.min(FOLD_MAX_GROUPS, Math.ceil(hPart / FOLD_THREADS))), 1, 1]
}
