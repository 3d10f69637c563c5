import { LoraError } from '../../errors.js'
import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape } from './program.js'

/**
 * The kernels of a GPU of many multiprocessors (tiles 'discrete'): shaders/shrink_tile.wgsl (x
 * as vec4, A through workgroup memory on prefill tiles, a tree over the k threads) and
 * shaders/expand_tile.wgsl (the tile's h staged in workgroup memory with the split-K partials
 * added once). Used where their preconditions hold, else the kernels of shrink.ts / expand.ts.
 */
export interface ShrinkTileTiling {
  TE: number
  MT: number
  KS: number
  RT: number
  RC: number
  KB: number
  STAGE: number
  KG: number
}

export interface ExpandTileTiling {
  EM: number
  MT: number
  NW: number
  NQ: number
  RMAX: number
  /** Rows of B loaded per step of the k loop (4, 8 or 16; the same bits for every value). */
  KU: number
  /**
   * Threads along k per column quad, each over a contiguous 1/KT of the rank, their sums added in
   * workgroup memory in a fixed order (the same bits per KT, not across KT values).
   */
  KT: number
  KG: number
}

/** Largest rank the tile kernels take (register tiles of <= 64 sums per thread). */
export const TILE_MAX_RANK = 64
/** Largest split over workgroups of shrink_tile (the expand adds this many partials per h value). */
export const TILE_MAX_KG = 16
/**
 * Workgroups shrink_tile aims for: decode tiles (small workgroups, 32 threads per entry) about a
 * dozen per multiprocessor of a 132-SM GPU; prefill tiles (128 threads) a few.
 */
export const TILE_TARGET_WORKGROUPS = { decode: 1536, prefill: 512 }

/** Rank rows staged for the largest used rank: 16, 32 or 64 (fewer distinct pipelines). */
export function rankRows(maxUsedRank: number): number {
  return maxUsedRank <= 16 ? 16 : maxUsedRank <= 32 ? 32 : 64
}

export function shrinkTileUsable(inFeatures: number, maxUsedRank: number, embedding: boolean): boolean {
  return !embedding && inFeatures % 4 === 0 && maxUsedRank <= TILE_MAX_RANK
}

export function expandTileUsable(sliceWidths: readonly number[], maxUsedRank: number, multi: boolean): boolean {
  return !multi && maxUsedRank <= TILE_MAX_RANK && sliceWidths.every((n) => n % 4 === 0)
}

/**
 * Decode tiles (<= 4 entries: nothing to reuse A for): A read directly, 4 rank rows per
 * workgroup, 32 threads along k (H200, one call, interleaved variants: 1.1-1.5x faster than 16
 * rank rows or 64 threads; 16, 32 or 64 threads within 3%). Prefill tiles (16 or more entries):
 * A blocks through workgroup memory, MT x RT sums per thread (MT * RT = 64), 128 threads, 16 KiB
 * of workgroup memory (the minimum every device has): RT * KB floats of A and tileM * KS * RC
 * floats for the tree.
 */
export function shrinkTileTiling(tileM: number, maxUsedRank: number): Omit<ShrinkTileTiling, 'KG'> {
  const rows = rankRows(maxUsedRank)
  if (tileM <= 4) return { TE: 1, MT: tileM, KS: 32, RT: 4, RC: 4, KB: 4, STAGE: 0 }
  const MT = Math.min(4, 64 / rows, tileM)
  const TE = tileM / MT
  const KS = Math.max(1, Math.min(32, 128 / TE))
  const KB = Math.max(4 * KS, 2048 / rows)
  const RC = Math.min(rows, 2048 / (tileM * KS))
  return { TE, MT, KS, RT: rows, RC, KB, STAGE: 1 }
}

/** Workgroups of shrink_tile before any split over workgroups (rank tiles x tiles x slices). */
export function shrinkTileWorkgroups(t: Omit<ShrinkTileTiling, 'KG'>, shape: CallShape, numTiles: number): number {
  return Math.ceil(shape.maxUsedRank / t.RT) * numTiles * shape.numSlices
}

/**
 * k chunks over workgroups: the power of two (at most TILE_MAX_KG) that brings the shrink near
 * its target, keeping at least one vec4 per k thread (and one A block when staged) in each chunk.
 * H200, decode: the best split of 4, 8, 16 and 32 was the one that brings the count nearest 1536
 * (square r16 T = 1: 16; qkv r64 T = 16: 8; qkv r64, 8 adapters, T = 16: 4).
 */
export function splitKTile(t: Omit<ShrinkTileTiling, 'KG'>, workgroups: number, inFeatures: number): number {
  const target = t.STAGE ? TILE_TARGET_WORKGROUPS.prefill : TILE_TARGET_WORKGROUPS.decode
  const minChunk = Math.max(t.KS, t.STAGE ? t.KB / 4 : 0) // vec4s
  let kg = 1
  while (kg < TILE_MAX_KG && workgroups * kg * 2 <= target && inFeatures / 4 / (kg * 2) >= minChunk) kg *= 2
  return kg
}

export function shrinkTileSpec(storage: WeightStorage, t: ShrinkTileTiling): PipelineSpec {
  return { shader: 'shrink_tile', storage, overrides: { ...t } }
}

export function shrinkTileGroups(t: ShrinkTileTiling, shape: CallShape, numTiles: number): [number, number, number] {
  return checkGroups([Math.ceil(shape.maxUsedRank / t.RT), numTiles, shape.numSlices * t.KG], 'shrink_tile')
}

/**
 * Decode: 32 threads of one column quad each, 8 rows of B in flight per step, and from rank rows of
 * 32 up KT = rows / 8 threads per quad, 8 rows of k each (H200, bench/webgpu-tiles.ts: every
 * rank-64 shape 1.1-1.4x faster than one thread per quad, T = 1 12.9-13.3 against 14.8-18.0 us,
 * T = 16 15.8-21.6 against 18.1-23.7 us; at rank 16 KT 2-8 were within 0.5 us at T = 1 and up to
 * 1.2 us slower at T = 16 with 8 adapters, so it keeps one). Before the k split (a decode expand
 * waits on its loads: on the H100, bench/webgpu-tiles.ts, 8 rows per step made every rank-64
 * T = 1 call 0.7-1.7 us faster than 4 (16.0-16.9 against 17.4-18.4 us), and 16 were no faster
 * than 8); prefill: (entries / 4, at most 8 per thread) x 32 threads of 2 quads, 4 rows per step.
 */
export function expandTileTiling(tileM: number, maxUsedRank: number): Omit<ExpandTileTiling, 'KG'> {
  const RMAX = rankRows(maxUsedRank)
  if (tileM <= 4) return { EM: 1, MT: tileM, NW: 32, NQ: 1, RMAX, KU: 8, KT: RMAX >= 32 ? RMAX / 8 : 1 }
  const MT = Math.min(8, tileM / 4)
  return { EM: tileM / MT, MT, NW: 32, NQ: 2, RMAX, KU: 4, KT: 1 }
}

/** Workgroup memory of expand_tile (bytes): staged h, then the sums of the threads kt > 0. */
export function expandTileMemory(t: ExpandTileTiling): number {
  return 4 * t.EM * t.MT * t.RMAX + 16 * ((t.KT - 1) * t.EM * t.MT * t.NQ * t.NW + 1)
}

/** Workgroup limits every WebGPU device has (the spec's defaults). */
export const MIN_WORKGROUP_MEMORY = 16384
export const MIN_WORKGROUP_THREADS = 256

export function expandTileSpec(storage: WeightStorage, t: ExpandTileTiling): PipelineSpec {
  const threads = t.EM * t.NW * t.KT
  if (threads > MIN_WORKGROUP_THREADS || expandTileMemory(t) > MIN_WORKGROUP_MEMORY) {
    throw new LoraError(
      'OUT_OF_RANGE',
      `expand_tile tiles EM ${t.EM} x NW ${t.NW} x KT ${t.KT}: ${threads} threads and ${expandTileMemory(t)} bytes of workgroup memory exceed ${MIN_WORKGROUP_THREADS} and ${MIN_WORKGROUP_MEMORY}`,
    )
  }
  return { shader: 'expand_tile', storage, overrides: { ...t } }
}

export function expandTileGroups(t: ExpandTileTiling, shape: CallShape, numTiles: number): [number, number, number] {
  return checkGroups([numTiles, Math.ceil(shape.maxSliceWidth / (4 * t.NW * t.NQ)), shape.numSlices], 'expand_tile')
}
