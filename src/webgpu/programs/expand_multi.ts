import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape } from './program.js'

/** Overrides of shaders/expand_multi.wgsl (EM tokens x 2*NW*NT columns per workgroup). */
export interface ExpandMultiTiling {
  EM: number
  NW: number
  NT: number
  KG: number
}

export const EXPAND_MULTI_TILING: Omit<ExpandMultiTiling, 'KG'> = { EM: 1, NW: 64, NT: 2 }

/** The pipeline of shaders/expand_multi.wgsl with these tiles. */
export function expandMultiSpec(storage: WeightStorage, tiling: ExpandMultiTiling): PipelineSpec {
  return { shader: 'expand_multi', storage, overrides: { ...tiling } }
}

/** Workgroups of the token-major expand (tokens, column tiles, slices), for batches where a token has several adapters. */
export function expandMultiGroups(tiling: ExpandMultiTiling, shape: CallShape, numTokens: number): [number, number, number] {
  const colTile = 2 * tiling.NW * tiling.NT // columns: NT pairs per thread
  return checkGroups([Math.ceil(numTokens / tiling.EM), Math.ceil(shape.maxSliceWidth / colTile), shape.numSlices], 'expand_multi')
}
