import { LoraError } from '../../errors.js'
import type { LayerSpec } from '../../types.js'
import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type KernelProfile } from './program.js'
import { MIN_WORKGROUP_MEMORY, MIN_WORKGROUP_THREADS } from './tile.js'

/**
 * The prefill kernels of a GPU of many multiprocessors (tiles 'discrete'): shaders/shrink_gemm.wgsl
 * and shaders/expand_gemm.wgsl, register-blocked GEMMs over tiles of up to 64 entries of one slot,
 * x, A and h staged in workgroup memory. Used on segments longer than 16 entries where their
 * preconditions hold; decode batches keep the kernels of programs/tile.ts.
 */
export interface ShrinkGemmTiling {
  TM: number
  RT: number
  BM: number
  BR: number
  KB: number
  KG: number
  /** Slices merged into one rank axis of RS rows each (0: RT rank rows of one slice). */
  RS: number
}

export interface ExpandGemmTiling {
  TM: number
  BM: number
  NW: number
  BQ: number
  KC: number
  KG: number
}

/** Forced choices over the defaults (tuning runs, tests). */
export interface GemmTuning {
  /** true: the GEMM kernels wherever they apply, even on short segments; false: never. */
  gemm?: boolean
  /** The rank rows of every slice in one tile of shrink_gemm (RS): forced on (where they fit) or off. */
  mergeSlices?: boolean
  shrinkGemm?: Partial<ShrinkGemmTiling>
  expandGemm?: Partial<ExpandGemmTiling>
}

/** Largest split over workgroups of shrink_gemm. */
export const GEMM_MAX_KG = 16
/**
 * Workgroups shrink_gemm aims for with a split over workgroups (one to three per multiprocessor of
 * a 132-SM GPU). Each expand workgroup adds the KG partials of its tile's h, which costs more the
 * higher the rank: on an H100 (bench/webgpu-gemm.ts, 32-entry tiles) the fastest split came near
 * 384 workgroups at rank 16 (KG 8-16) but near 192 at rank 64 (KG 4 at T = 1024 against KG 8's
 * 1.07x, KG 2 on qkv), so the target halves for rank tiles of 64.
 */
export const GEMM_TARGET_WORKGROUPS = 384

/**
 * The target for rank tiles of RT rows (see GEMM_TARGET_WORKGROUPS), 512 at rank 16: there a long
 * call then splits 16 ways and folds its partials once (fold.ts foldByDefault), and the H200 grid
 * (bench/webgpu-gemm.ts, T = 1024, 32 tiles) had the shrink at KG 16 faster than at KG 8 on every
 * rank-16 shape (square 17.6 against 19.1 us, qkv with the slices merged 28.1 against 30.7) while
 * an expand reading one partial took what it takes at KG 1 (19.6 against 24.6 at KG 8).
 */
export function gemmTargetWorkgroups(RT: number): number {
  return RT >= 64 ? GEMM_TARGET_WORKGROUPS / 2 : RT <= 16 ? 512 : GEMM_TARGET_WORKGROUPS
}

/**
 * Entries a call needs for the GEMM kernels by default. H100 (bench/webgpu-gemm.ts, each shape's
 * variants side by side, clocks warmed): with 32-entry tiles they beat the kernels of shrink.ts /
 * expand.ts at T = 256 on every shape (one or 8 adapters; sum of the kernels alone 31 against 38 us
 * at square r16, 54 against 73 at square r64, 86 against 118 at qkv r64 with 8 adapters) and at
 * T = 1024 by 1.4-2x. Smaller calls keep those kernels (not measured below 256).
 */
export const GEMM_MIN_ENTRIES = 256

/**
 * Entries per tile of the GEMM kernels for this call, or 0 where they do not apply: on 'discrete'
 * (unless forced either way; forcing the tile kernels on or off leaves them out), calls of at
 * least GEMM_MIN_ENTRIES entries whose segments are longer than 16 entries, x rows as vec4
 * (in % 4 == 0), not an embedding. Tiles of 32 entries: on the H100 they were faster than tiles
 * of 64 on 29 of the 31 shapes bench/webgpu-gemm.ts timed (the split over workgroups fills the GPU
 * either way, and a 32-entry tile wastes less of a segment's last tile).
 */
export function gemmTile(
  profile: KernelProfile,
  spec: LayerSpec,
  call: { longestSegment: number; entries: number },
  tuning?: GemmTuning & { tileM?: number; tileKernels?: boolean },
): number {
  const forced = tuning?.gemm ?? (tuning?.tileKernels !== undefined ? false : undefined)
  if (forced === false || spec.embedding || spec.inFeatures % 4 !== 0) return 0
  const { longestSegment, entries } = call
  if (forced !== true && (profile !== 'discrete' || longestSegment <= 16 || entries < GEMM_MIN_ENTRIES)) return 0
  return tuning?.tileM ?? 32
}

export function expandGemmUsable(sliceWidths: readonly number[], multi: boolean): boolean {
  return !multi && sliceWidths.every((n) => n % 4 === 0)
}

/** Rank rows per workgroup: the used rank rounded up to 16, 32 or 64 (more rank tiles past 64). */
function rankRows(maxUsedRank: number): number {
  return maxUsedRank <= 16 ? 16 : maxUsedRank <= 32 ? 32 : 64
}

/** Rank rows of all slices that shrink_gemm takes in one tile at most (slices merged). */
export const GEMM_MERGE_MAX_ROWS = 64

/**
 * Whether shrink_gemm merges the slices of a stacked layer into one rank axis (RS): where the
 * rank rows of every slice fit one tile of GEMM_MERGE_MAX_ROWS (qkv at rank 16, gate_up at 16 or
 * 32), the tile's x block is then read once instead of once per slice.
 */
export function mergeSlices(maxUsedRank: number, numSlices: number, forced?: boolean): boolean {
  return numSlices > 1 && numSlices * rankRows(maxUsedRank) <= GEMM_MERGE_MAX_ROWS && forced !== false
}

/**
 * One rank tile of 16 rows on 32-entry tiles: 2 x 2 per thread (128 threads), k blocks of 64, the
 * fastest shrink of bench/webgpu-gemm.ts on each of its rank-16 shapes of one slice on the H200
 * (square T = 256 11.9 against 13.8 us, T = 1024 19.1 against 20.5 at KG 8) and of qkv with the
 * slices apart (merged slices take 4 x 2 there: 2 x 2 would be 384 threads). Otherwise
 * 4 entries x BR rank rows per thread, k blocks of 32 (fitted by fitShrinkGemm). BR is RT / 8 (8
 * rank threads) on 64-entry tiles: H200, 4 x 2 at rank 16 and 4 x 8 at rank 64 were the fastest of
 * 4 x 4, 8 x 4, 4 x 8, 2 x 4, 4 x 2 and 8 x 2 there, 4 x 4 at rank 64 (256 threads) 2-4x slower.
 * On 32-entry tiles BR is 2 at every rank (256 threads at rank 64): on the H100, of the 34
 * fastest rank-64 (32-entry tile, split) pairs it printed, the best shrink was 4 x 2 in 21, 8 x 4
 * in 9, 8 x 2 in 3, 2 x 4 in 1 and 4 x 8 in none.
 */
export function shrinkGemmTiling(tileM: number, maxUsedRank: number, mergedSlices = 0): Omit<ShrinkGemmTiling, 'KG'> {
  const RS = mergedSlices > 1 ? rankRows(maxUsedRank) : 0
  const RT = RS ? RS * mergedSlices : rankRows(maxUsedRank)
  if (tileM === 32 && RT === 16) return { TM: tileM, RT, BM: 2, BR: 2, KB: 64, RS }
  return { TM: tileM, RT, BM: 4, BR: tileM <= 32 ? 2 : RT / 8, KB: 32, RS }
}

/**
 * Unsplit workgroups from which rank tiles of 64 on 32-entry tiles take 8 x 4 register blocks (64
 * threads) instead of 4 x 2 (256): with that many workgroups there is little split over workgroups
 * left (KG <= 2) and each workgroup's own rate decides. H100 (bench/webgpu-gemm.ts): qkv r64 at
 * T = 1024 (96 unsplit workgroups) shrinks in 88 us with 8 x 4 against 117 with 4 x 2 (f32, one
 * adapter; 111 against 130 with 8 adapters; bf16 99 against 110), kernels of the pass 144 against
 * 172 us; square r64 at T = 1024 (32 unsplit, KG 4) was fastest with 4 x 2 at its own split.
 */
export const GEMM_WIDE_BLOCKS_FROM = 64

/**
 * shrinkGemmTiling for a call of `workgroups` unsplit workgroups (see GEMM_WIDE_BLOCKS_FROM), its
 * slices `merged` (mergeSlices) or not.
 */
export function shrinkGemmTilingFor(tileM: number, shape: CallShape, numTiles: number, merged: boolean): Omit<ShrinkGemmTiling, 'KG'> {
  const t = shrinkGemmTiling(tileM, shape.maxUsedRank, merged ? shape.numSlices : 0)
  if (!merged && t.RT >= 64 && tileM === 32 && shrinkGemmWorkgroups(t, shape, numTiles) >= GEMM_WIDE_BLOCKS_FROM)
    return { ...t, BM: 8, BR: 4 }
  return t
}

/** Vec4s of x and of A one thread of shrink_gemm stages per block (MAX_STAGE in the shader). */
const MAX_STAGE = 8

/**
 * The k block shortened (halved down to 4) until the staged x and A blocks fit the workgroup memory
 * (the device's maxComputeWorkgroupStorageSize, less 16 bytes of scalars) and each thread stages
 * at most MAX_STAGE vec4s of each.
 */
export function fitShrinkGemm<T extends Omit<ShrinkGemmTiling, 'KG'>>(t: T, workgroupBytes = MIN_WORKGROUP_MEMORY): T {
  const threads = (t.TM / t.BM) * (t.RT / t.BR)
  let KB = t.KB
  const fits = (kb: number) =>
    (t.TM + t.RT) * (kb / 4 + 1) * 16 <= workgroupBytes - 16 && Math.max(t.TM, t.RT) * (kb / 4) <= MAX_STAGE * threads
  while (KB > 4 && !fits(KB)) KB /= 2
  return { ...t, KB }
}

/** Workgroups of shrink_gemm before any split over workgroups (rank tiles x tiles x slices, or tiles with the slices merged). */
export function shrinkGemmWorkgroups(t: Omit<ShrinkGemmTiling, 'KG'>, shape: CallShape, numTiles: number): number {
  return t.RS ? numTiles : Math.ceil(shape.maxUsedRank / t.RT) * numTiles * shape.numSlices
}

/** k chunks over workgroups: the power of two that brings the count near the target, keeping two k blocks per chunk. */
export function splitKGemm(t: Omit<ShrinkGemmTiling, 'KG'>, workgroups: number, inFeatures: number): number {
  let kg = 1
  while (kg < GEMM_MAX_KG && workgroups * kg * 2 <= gemmTargetWorkgroups(t.RS || t.RT) && inFeatures / (kg * 2) >= 2 * t.KB) kg *= 2
  return kg
}

export function shrinkGemmSpec(storage: WeightStorage, t: ShrinkGemmTiling): PipelineSpec {
  const threads = (t.TM / t.BM) * (t.RT / t.BR)
  if (threads > MIN_WORKGROUP_THREADS) {
    throw new LoraError(
      'OUT_OF_RANGE',
      `shrink_gemm tiles TM ${t.TM} / BM ${t.BM} x RT ${t.RT} / BR ${t.BR}: ${threads} threads exceed ${MIN_WORKGROUP_THREADS}`,
    )
  }
  return { shader: 'shrink_gemm', storage, overrides: { ...t } }
}

export function shrinkGemmGroups(t: ShrinkGemmTiling, shape: CallShape, numTiles: number): [number, number, number] {
  if (t.RS) return checkGroups([1, numTiles, t.KG], 'shrink_gemm')
  return checkGroups([Math.ceil(shape.maxUsedRank / t.RT), numTiles, shape.numSlices * t.KG], 'shrink_gemm')
}

/**
 * 256 threads of 4 entries each, 256 columns per workgroup: 16 threads x 4 column quads on 64-entry
 * tiles, 32 x 2 on 32-entry tiles, 64 x 1 on 16-entry tiles; rank in rounds of up to 32. H200: the
 * fastest of the 7 variants of bench/webgpu-gemm.ts on most shapes.
 */
export function expandGemmTiling(tileM: number, maxUsedRank: number): Omit<ExpandGemmTiling, 'KG'> {
  const NW = Math.min(64, 1024 / tileM)
  return { TM: tileM, BM: 4, NW, BQ: 64 / NW, KC: Math.min(32, rankRows(maxUsedRank)) }
}

/** Tiles from which expand_gemm at rank rows of 64 reads y where it writes it (PY 0). */
export const GEMM_LATE_Y_FROM_TILES = 32

/**
 * Whether expand_gemm reads y before its k loop (PY 1). H200 (bench/webgpu-gemm.ts --defaults,
 * early against late, one run): faster early on every rank-16 call (T = 1024 square 44.8 against
 * 47.2 us) and every rank-64 call at T = 256 (1.02-1.13x), but at rank 64 over 32 tiles (T = 1024)
 * slower on 6 of 8 calls (qkv f32 171.0 against 163.5 us, bf16 206.0 against 196.7; only f32
 * square was faster early, 92.3 against 96.8): there the k loop is long enough to hide the read.
 */
export function expandGemmPrefetch(maxUsedRank: number, numTiles: number): boolean {
  return rankRows(maxUsedRank) < 64 || numTiles < GEMM_LATE_Y_FROM_TILES
}

export function expandGemmSpec(storage: WeightStorage, t: ExpandGemmTiling): PipelineSpec {
  return { shader: 'expand_gemm', storage, overrides: { ...t } }
}

export function expandGemmGroups(t: ExpandGemmTiling, shape: CallShape, numTiles: number): [number, number, number] {
  return checkGroups([numTiles, Math.ceil(shape.maxSliceWidth / (4 * t.NW * t.BQ)), shape.numSlices], 'expand_gemm')
}
