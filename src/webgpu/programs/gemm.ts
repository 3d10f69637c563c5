import type { LayerSpec } from '../../types.js'
import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type KernelProfile } from './program.js'

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
  shrinkGemm?: Partial<ShrinkGemmTiling>
  expandGemm?: Partial<ExpandGemmTiling>
}

/** Workgroup memory every device has (the WebGPU default limit), less 16 bytes of scalars. */
const WORKGROUP_BYTES = 16384 - 16
/** Largest split over workgroups of shrink_gemm. */
export const GEMM_MAX_KG = 16
/**
 * Workgroups shrink_gemm aims for with a split over workgroups (one to three per multiprocessor of
 * a 132-SM GPU). Each expand workgroup adds the KG partials of its tile's h: on the H200 the expand
 * took 1.3-2x longer at KG 16 than at KG 4, so the split stops short of filling the GPU twice.
 */
export const GEMM_TARGET_WORKGROUPS = 384

/**
 * Entries a call needs for the GEMM kernels by default. H200 (bench/webgpu-gemm.ts, each shape's
 * variants side by side): at T = 1024 they were 1.5-7.9x faster than the kernels of shrink.ts /
 * expand.ts; at T = 256 between 0.3x (one adapter: 4 tiles of 64 entries leave most of the GPU
 * idle) and 1.6x, so smaller calls keep those kernels.
 */
export const GEMM_MIN_ENTRIES = 512

/**
 * Entries per tile of the GEMM kernels for this call, or 0 where they do not apply: on 'discrete'
 * (unless forced either way; forcing the tile kernels on or off leaves them out), calls of at
 * least GEMM_MIN_ENTRIES entries whose segments are longer than 16 entries, x rows as vec4
 * (in % 4 == 0), not an embedding. Tiles of 32 entries when no segment is longer, else 64.
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
  return tuning?.tileM ?? (longestSegment <= 32 ? 32 : 64)
}

export function expandGemmUsable(sliceWidths: readonly number[], multi: boolean): boolean {
  return !multi && sliceWidths.every((n) => n % 4 === 0)
}

/** Rank rows per workgroup: the used rank rounded up to 16, 32 or 64 (more rank tiles past 64). */
function rankRows(maxUsedRank: number): number {
  return maxUsedRank <= 16 ? 16 : maxUsedRank <= 32 ? 32 : 64
}

/**
 * 4 entries x RT / 8 rank rows per thread (8 rank threads: 128 threads on 64-entry tiles), k blocks
 * of 32 (fitted by fitShrinkGemm). H200, each kernel alone over forced variants
 * (bench/webgpu-gemm.ts): 4 x 2 at rank 16 and 4 x 8 at rank 64 were the fastest of 4 x 4, 8 x 4,
 * 4 x 8, 2 x 4, 4 x 2 and 8 x 2 on most shapes; 4 x 4 at rank 64 (256 threads) ran 2-4x slower.
 */
export function shrinkGemmTiling(tileM: number, maxUsedRank: number): Omit<ShrinkGemmTiling, 'KG'> {
  const RT = rankRows(maxUsedRank)
  return { TM: tileM, RT, BM: 4, BR: RT / 8, KB: 32 }
}

/** Vec4s of x and of A one thread of shrink_gemm stages per block (MAX_STAGE in the shader). */
const MAX_STAGE = 8

/**
 * The k block shortened (halved down to 4) until the staged x and A blocks fit the workgroup memory
 * and each thread stages at most MAX_STAGE vec4s of each.
 */
export function fitShrinkGemm<T extends Omit<ShrinkGemmTiling, 'KG'>>(t: T): T {
  const threads = (t.TM / t.BM) * (t.RT / t.BR)
  let KB = t.KB
  const fits = (kb: number) =>
    (t.TM + t.RT) * (kb / 4 + 1) * 16 <= WORKGROUP_BYTES && Math.max(t.TM, t.RT) * (kb / 4) <= MAX_STAGE * threads
  while (KB > 4 && !fits(KB)) KB /= 2
  return { ...t, KB }
}

/** Workgroups of shrink_gemm before any split over workgroups (rank tiles x tiles x slices). */
export function shrinkGemmWorkgroups(t: Omit<ShrinkGemmTiling, 'KG'>, shape: CallShape, numTiles: number): number {
  return Math.ceil(shape.maxUsedRank / t.RT) * numTiles * shape.numSlices
}

/** k chunks over workgroups: the power of two that brings the count near the target, keeping two k blocks per chunk. */
export function splitKGemm(t: Omit<ShrinkGemmTiling, 'KG'>, workgroups: number, inFeatures: number): number {
  let kg = 1
  while (kg < GEMM_MAX_KG && workgroups * kg * 2 <= GEMM_TARGET_WORKGROUPS && inFeatures / (kg * 2) >= 2 * t.KB) kg *= 2
  return kg
}

export function shrinkGemmSpec(storage: WeightStorage, t: ShrinkGemmTiling): PipelineSpec {
  return { shader: 'shrink_gemm', storage, overrides: { ...t } }
}

export function shrinkGemmGroups(t: ShrinkGemmTiling, shape: CallShape, numTiles: number): [number, number, number] {
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

export function expandGemmSpec(storage: WeightStorage, t: ExpandGemmTiling): PipelineSpec {
  return { shader: 'expand_gemm', storage, overrides: { ...t } }
}

export function expandGemmGroups(t: ExpandGemmTiling, shape: CallShape, numTiles: number): [number, number, number] {
  return checkGroups([numTiles, Math.ceil(shape.maxSliceWidth / (4 * t.NW * t.BQ)), shape.numSlices], 'expand_gemm')
}
