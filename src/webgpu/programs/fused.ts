import { LoraError } from '../../errors.js'
import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { type CallShape, checkGroups } from './program.js'
import { MIN_WORKGROUP_MEMORY, MIN_WORKGROUP_THREADS, rankRows, TILE_MAX_RANK } from './tile.js'

/**
 * shaders/fused_tile.wgsl: the shrink and the expand of decode tiles (<= 4 entries of one slot) in
 * one dispatch, each workgroup computing its tile's h itself (see the shader's header).
 */
export interface FusedTiling {
  /** Entries per tile (1, 2 or 4). */
  MT: number
  /** Rank rows computed (16, 32 or 64: >= every used rank). */
  RMAX: number
  /** Shrink threads along k per rank row group (a power of two). */
  KS: number
  /** Rank rows per shrink thread (RMAX / RR * KS = WG). */
  RR: number
  /** Column quads per workgroup. */
  NW: number
  /** Expand threads along the rank per column quad (NW * KT <= WG; the same bits per KT, not across KT values). */
  KT: number
  /** Rows of B loaded per step of the expand's k loop (1-16; the same bits for every value). */
  KU: number
  /** Threads per workgroup. */
  WG: number
  /** k strips per step of the shrink loop, loaded before they are used (QU * MT and QU * RR <= 16; the same bits for every value). */
  QU: number
}

/** Whether fused_tile.wgsl can run the call. */
export function fusedUsable(c: {
  inFeatures: number
  sliceWidths: readonly number[]
  maxUsedRank: number
  tileM: number
  multi: boolean
  embedding: boolean
  weighted: boolean
}): boolean {
  return (
    c.tileM <= 4 &&
    !c.multi &&
    !c.embedding &&
    !c.weighted &&
    c.inFeatures % 4 === 0 &&
    c.maxUsedRank <= TILE_MAX_RANK &&
    c.sliceWidths.every((n) => n % 4 === 0)
  )
}

/** Workgroup memory of fused_tile (bytes): the shrink's tree, then the expand's sums of threads kt > 0. */
export function fusedMemory(t: FusedTiling): number {
  return 4 * t.MT * t.RMAX * t.KS + 16 * ((t.KT - 1) * t.MT * t.NW + 1)
}

/**
 * 256 threads; the shrink 2 rank rows per thread (32, 16 or 8 threads along k for 16, 32 or 64
 * rank rows) over 2 k strips per step for f32 weights and 4 for 16-bit ones (rank 16 at T = 1, f32:
 * H200 12.9-13.3 against 13.5-13.8 us with 4 strips, H100 13.9-14.2 against 14.8-14.9; bf16 within
 * 0.2 us either way); the expand 4 threads along the rank per column quad over 64 quads (32 for
 * tiles of 4 entries, so that the sums fit the 16 KiB of workgroup memory every device has).
 */
export function fusedTiling(tileM: number, maxUsedRank: number, storage: WeightStorage): FusedTiling {
  const RMAX = rankRows(maxUsedRank)
  const WG = MIN_WORKGROUP_THREADS
  const RR = 2
  const QU = storage === 'f32' ? 2 : 4
  const t: FusedTiling = { MT: tileM, RMAX, KS: (WG * RR) / RMAX, RR, NW: 64, KT: 4, KU: 4, WG, QU }
  while (t.NW > 8 && fusedMemory(t) > MIN_WORKGROUP_MEMORY) t.NW /= 2
  return t
}

export function fusedSpec(storage: WeightStorage, t: FusedTiling): PipelineSpec {
  const why =
    t.WG > MIN_WORKGROUP_THREADS
      ? `${t.WG} threads exceed ${MIN_WORKGROUP_THREADS}`
      : (t.RMAX / t.RR) * t.KS !== t.WG
        ? `RMAX ${t.RMAX} / RR ${t.RR} x KS ${t.KS} is not WG ${t.WG}`
        : t.NW * t.KT > t.WG
          ? `NW ${t.NW} x KT ${t.KT} exceeds WG ${t.WG}`
          : fusedMemory(t) > MIN_WORKGROUP_MEMORY
            ? `${fusedMemory(t)} bytes of workgroup memory exceed ${MIN_WORKGROUP_MEMORY}`
            : t.KU < 1 || t.KU > 16 || t.MT > 4 || t.RMAX > TILE_MAX_RANK || t.QU < 1 || t.QU * Math.max(t.MT, t.RR) > 16
              ? `KU ${t.KU}, MT ${t.MT}, RMAX ${t.RMAX} or QU ${t.QU} x RR ${t.RR} out of range (1-16, <= 4, <= ${TILE_MAX_RANK}, QU x MT and QU x RR <= 16)`
              : ''
  if (why) throw new LoraError('OUT_OF_RANGE', `fused_tile tiles: ${why}`)
  return { shader: 'fused_tile', storage, overrides: { ...t } }
}

export function fusedGroups(t: FusedTiling, shape: CallShape, numTiles: number): [number, number, number] {
  return checkGroups([numTiles, Math.ceil(shape.maxSliceWidth / (4 * t.NW)), shape.numSlices], 'fused_tile')
}

/** Largest used rank at which fused_tile runs by default (see fusedByDefault). */
export const FUSED_DEFAULT_MAX_RANK = 16

/**
 * Where fused_tile runs by default (on 'discrete', where it can): calls of one entry (one token
 * with an adapter) at rank <= 16, where it takes the pair's GPU time and one dispatch less of CPU.
 * bench/webgpu-tiles.ts --fused, the pair timed beside it in one run: rank 16 at T = 1, H200
 * 12.9-13.3 against 12.5-12.9 us (fused-nvidia-h200.json), H100 13.9-14.2 against 13.9-14.4, and
 * on the H100 host 5.5-6.1 us of CPU per encode against 7.6-8.5. Elsewhere every column block
 * reading A again costs more than the pair's second dispatch: rank 64 at T = 1 1.9-2.3x the pair's
 * time, T = 16 faster on at most 4 of 16 shapes (by <= 8%) and up to 3.4x slower. `tuning.fused`
 * forces it either way.
 */
export function fusedByDefault(tileM: number, numTiles: number, maxUsedRank: number): boolean {
  return tileM === 1 && numTiles === 1 && maxUsedRank <= FUSED_DEFAULT_MAX_RANK
}
