import type { LayerSpec } from '../../types.js'
import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { expandGroups, expandKernel, expandSpec, expandTiling, type ExpandTiling } from './expand.js'
import { EXPAND_MULTI_TILING, expandMultiGroups, expandMultiSpec } from './expand_multi.js'
import { foldByDefault, foldSpec } from './fold.js'
import { type FusedTiling, fusedByDefault, fusedGroups, fusedSpec, fusedTiling, fusedUsable } from './fused.js'
import { gatherGroups, gatherSpec } from './gather.js'
import {
  expandGemmGroups,
  expandGemmPrefetch,
  expandGemmSpec,
  expandGemmTiling,
  expandGemmUsable,
  fitShrinkGemm,
  type GemmTuning,
  mergeSlices,
  shrinkGemmGroups,
  shrinkGemmSpec,
  shrinkGemmTilingFor,
  shrinkGemmWorkgroups,
  splitKGemm,
} from './gemm.js'
import { type CallShape, type KernelProfile, splitK } from './program.js'
import { shrinkGroups, shrinkSpec, shrinkTiling, shrinkWorkgroups } from './shrink.js'
import {
  type ExpandTileTiling,
  expandTileGroups,
  expandTileSpec,
  expandTileTiling,
  expandTileUsable,
  type ShrinkTileTiling,
  shrinkTileGroups,
  shrinkTileSpec,
  shrinkTileTiling,
  shrinkTileUsable,
  shrinkTileWorkgroups,
  splitKTile,
} from './tile.js'

/** Tiles forced over the chosen ones (a tuning run; tests forcing a variant). */
export interface TileTuning extends GemmTuning {
  shrink?: Partial<ShrinkTileTiling>
  expand?: Partial<ExpandTileTiling>
  /** Entries per tile (a multiple of 4 above 4; only where both tile kernels apply). */
  tileM?: number
  /**
   * The tile kernels: by default on decode tiles (<= 4 entries) only; true: on prefill tiles too;
   * false: never (the kernels of shrink.ts / expand.ts). Either choice leaves out the GEMM kernels
   * of programs/gemm.ts unless `gemm` is true.
   */
  tileKernels?: boolean
  /** Fold the split-K partials before a GEMM expand (programs/fold.ts): forced on or off. */
  fold?: boolean
  /**
   * Whether expand_gemm and expand_tile read y before their k loop (the shaders' PY) or where they
   * write it: forced either way (by default early, except in expand_gemm's long high-rank calls:
   * expandGemmPrefetch).
   */
  prefetchY?: boolean
  /**
   * shaders/fused_tile.wgsl (shrink and expand of decode tiles in one dispatch) where it can run:
   * forced on (with tiles forced over fusedTiling's when an object) or off.
   */
  fused?: boolean | Partial<FusedTiling>
  /**
   * The subgroup lanes of shrink_tile's and fused_tile's trees: false: none; a number: that many
   * lanes assumed (a wrong one makes every workgroup take workgroup memory, as the kernels check).
   */
  subgroups?: boolean | number
}

/** The kernels of one kind of call and how many workgroups each launches. */
export interface KernelChoice {
  /** Split-K over workgroups of the shrink: h holds this many partials. */
  kg: number
  /** One dispatch per slot group (fused_tile.wgsl: specs[0], its workgroups `groups().shrink`), no h. */
  fused: boolean
  /** shrink (or gather), expand, then weigh.wgsl's spec when the call has weights, then `fold`'s. */
  specs: PipelineSpec[]
  /** fold.wgsl's spec when the partials are added once before the expand (which then has KG 1), else null. */
  fold: PipelineSpec | null
  /** Workgroups of the shrink and of the expand for `tiles` tiles of one slot group. */
  groups(shape: CallShape, tiles: number, numTokens: number): { shrink: [number, number, number]; expand: [number, number, number] }
}

export interface ChoiceInput {
  profile: KernelProfile
  storage: WeightStorage
  spec: LayerSpec
  shape: CallShape
  tileM: number
  numTiles: number
  /** A token has several adapters: the token-major expand_multi. */
  multi: boolean
  /** The GEMM kernels of programs/gemm.ts (tileM is then theirs: see gemmTile). */
  gemm: boolean
  /** The device's maxComputeWorkgroupStorageSize (default: the WebGPU minimum, 16 KiB). */
  workgroupBytes?: number
  /** The device's subgroup lanes (DeviceContext.subgroupSize; 0 or absent: none). */
  subgroupSize?: number
  /** The call has entry weights (weigh.wgsl scales h between the kernels: never fused). */
  weighted?: boolean
  tuning?: TileTuning
}

/**
 * A tree kernel's spec with its subgroup lanes (the SG override, compiled with the `subgroups`
 * extension): the device's, or tuning.subgroups. The same bits with or without them (the kernels
 * add in the same order); where they apply the tree's last steps skip workgroup memory and barriers.
 */
export function withLanes(spec: PipelineSpec, c: Pick<ChoiceInput, 'subgroupSize' | 'tuning'>): PipelineSpec {
  const forced = c.tuning?.subgroups
  const SG = forced === false ? 0 : typeof forced === 'number' ? forced : (c.subgroupSize ?? 0)
  return SG > 1 ? { ...spec, overrides: { ...spec.overrides, SG }, subgroups: true } : spec
}

/** Cache key of everything chooseKernels depends on besides the layer and its profile. */
export function choiceKey(c: ChoiceInput): string {
  return `${c.tileM}|${c.multi}|${c.gemm}|${c.shape.maxUsedRank}|${c.numTiles}|${!!c.weighted}`
}

/**
 * Kernel choice: the shrink (gather for an embedding layer), then the segment-major expand when
 * every token has one adapter, else the token-major expand_multi. On 'discrete' the tile kernels
 * (programs/tile.ts) where their preconditions hold. Tiles follow the profile.
 */
export function chooseKernels(c: ChoiceInput): KernelChoice {
  const { spec, shape, storage, tileM, numTiles } = c
  // prefill tiles keep the kernels of shrink.ts / expand.ts by default: on the H200 the tile
  // kernels were 0.5-1.6x as fast there, depending on the shape (bench/webgpu-tiles.ts)
  const wanted = c.tuning?.tileKernels ?? (tileM <= 4 || c.tuning?.tileM !== undefined)
  const discrete = c.profile === 'discrete' && wanted && !c.gemm
  const tileShrink = discrete && shrinkTileUsable(spec.inFeatures, shape.maxUsedRank, !!spec.embedding)
  const tileExpand = discrete && expandTileUsable(spec.sliceWidths, shape.maxUsedRank, c.multi)
  const fusable = discrete && fusedUsable({ ...spec, ...shape, tileM, multi: c.multi, embedding: !!spec.embedding, weighted: !!c.weighted })
  const fuse = c.tuning?.fused ?? fusedByDefault(tileM, numTiles, shape.maxUsedRank)
  if (fusable && fuse) {
    const t = { ...fusedTiling(tileM, shape.maxUsedRank, storage), ...(typeof fuse === 'object' ? fuse : {}) }
    const kernel = withLanes(fusedSpec(storage, t), c)
    const groups = (sh: CallShape, tiles: number) => {
      const g = fusedGroups(t, sh, tiles)
      return { shrink: g, expand: g } // one dispatch: call.ts records only the first
    }
    return { kg: 1, fused: true, fold: null, specs: [kernel], groups }
  }
  // the GEMM shrinks take every slice in one workgroup where their rank rows fit one tile
  const merged = c.gemm && mergeSlices(shape.maxUsedRank, shape.numSlices, c.tuning?.mergeSlices)
  let kg = 1
  let first: PipelineSpec
  let firstGroups: (shape: CallShape, tiles: number) => [number, number, number]
  if (spec.embedding) {
    first = gatherSpec(storage)
    firstGroups = gatherGroups
  } else if (c.gemm) {
    const base = fitShrinkGemm({ ...shrinkGemmTilingFor(tileM, shape, numTiles, merged), ...c.tuning?.shrinkGemm }, c.workgroupBytes)
    kg = c.tuning?.shrinkGemm?.KG ?? splitKGemm(base, shrinkGemmWorkgroups(base, shape, numTiles), spec.inFeatures)
    const t = { ...base, KG: kg }
    first = shrinkGemmSpec(storage, t)
    firstGroups = (sh, tiles) => shrinkGemmGroups(t, sh, tiles)
  } else if (tileShrink) {
    const base = { ...shrinkTileTiling(tileM, shape.maxUsedRank), ...c.tuning?.shrink }
    kg = c.tuning?.shrink?.KG ?? splitKTile(base, shrinkTileWorkgroups(base, shape, numTiles), spec.inFeatures)
    const t: ShrinkTileTiling = { ...base, KG: kg }
    first = withLanes(shrinkTileSpec(storage, t), c)
    firstGroups = (sh, tiles) => shrinkTileGroups(t, sh, tiles)
  } else {
    const base = shrinkTiling(tileM, c.profile)
    kg = splitK(c.profile, shrinkWorkgroups(base, shape, numTiles), spec.inFeatures, base.KS)
    const t = { ...base, KG: kg }
    first = shrinkSpec(storage, t)
    firstGroups = (sh, tiles) => shrinkGroups(t, sh, tiles)
  }
  let fold: PipelineSpec | null = null
  let expand: PipelineSpec
  let expandGroupsOf: (shape: CallShape, tiles: number, numTokens: number) => [number, number, number]
  if (c.multi) {
    const t = { ...EXPAND_MULTI_TILING, KG: kg }
    expand = expandMultiSpec(storage, t)
    expandGroupsOf = (sh, _tiles, tokens) => expandMultiGroups(t, sh, tokens)
  } else if (c.gemm && expandGemmUsable(spec.sliceWidths, c.multi)) {
    fold = kg > 1 && (c.tuning?.fold ?? foldByDefault(rankRowsOf(first), kg, spec.sliceWidths.length, numTiles)) ? foldSpec(kg) : null
    const t = { ...expandGemmTiling(tileM, shape.maxUsedRank), ...c.tuning?.expandGemm, KG: fold ? 1 : kg }
    expand = prefetchY(expandGemmSpec(storage, t), c.tuning, expandGemmPrefetch(shape.maxUsedRank, numTiles))
    expandGroupsOf = (sh, tiles) => expandGemmGroups(t, sh, tiles)
  } else if (tileExpand) {
    const t: ExpandTileTiling = { ...expandTileTiling(tileM, shape.maxUsedRank), ...c.tuning?.expand, KG: kg }
    expand = prefetchY(expandTileSpec(storage, t), c.tuning)
    expandGroupsOf = (sh, tiles) => expandTileGroups(t, sh, tiles)
  } else {
    const kernel = expandKernel(spec.sliceWidths)
    const t: ExpandTiling = { ...expandTiling(kernel, tileM, c.profile), KG: kg }
    expand = expandSpec(storage, kernel, t)
    expandGroupsOf = (sh, tiles) => expandGroups(kernel, t, sh, tiles)
  }
  return {
    kg,
    fused: false,
    fold,
    specs: [first, expand],
    groups: (sh, tiles, tokens) => ({ shrink: firstGroups(sh, tiles), expand: expandGroupsOf(sh, tiles, tokens) }),
  }
}

/** An expand spec with its early read of y turned off (PY 0) where the tuning asks, or `early` is false and the tuning says nothing. */
function prefetchY(spec: PipelineSpec, tuning: TileTuning | undefined, early = true): PipelineSpec {
  return (tuning?.prefetchY ?? early) ? spec : { ...spec, overrides: { ...spec.overrides, PY: 0 } }
}

/** Rank rows of one slice per workgroup of a shrink spec (RT, or RS with the slices merged; 0 where it has none). */
function rankRowsOf(shrink: PipelineSpec): number {
  const o = shrink.overrides
  return o.RS || o.RT || 0
}
