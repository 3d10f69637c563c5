import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type Dispatch } from './program.js'

/** Overrides of shaders/expand_multi.wgsl (EM tokens x 2*NW*NT columns per workgroup). */
export interface ExpandMultiTiling { EM: number; NW: number; NT: number }

export const EXPAND_MULTI_TILING: ExpandMultiTiling = { EM: 1, NW: 64, NT: 2 }

/** The pipeline of shaders/expand_multi.wgsl with these tiles. */
export function expandMultiSpec(storage: WeightStorage, tiling: ExpandMultiTiling): PipelineSpec {
  return { shader: 'expand_multi', storage, overrides: { ...tiling } }
}

/**
 * Token-major expand for batches where a token has several adapters.
 * @param params uniform Params
 * @param h      [N * S * rankStride] f32
 * @param B      resident B weights
 * @param slots  [maxAdapters] (rank, scale)
 * @param meta   call metadata (tokens)
 * @param y      [T * outFeatures] f32, updated in place
 */
export function expandMultiDispatch(
  storage: WeightStorage,
  tiling: ExpandMultiTiling,
  shape: CallShape,
  numTokens: number,
  buffers: { params: GPUBuffer; h: GPUBuffer; B: GPUBuffer; slots: GPUBuffer; meta: GPUBuffer; y: GPUBuffer },
): Dispatch {
  const colTile = 2 * tiling.NW * tiling.NT // columns: NT pairs per thread
  const groups = checkGroups(
    [Math.ceil(numTokens / tiling.EM), Math.ceil(shape.maxSliceWidth / colTile), shape.numSlices],
    'expand_multi',
  )
  return {
    spec: expandMultiSpec(storage, tiling),
    groups,
    buffers: [buffers.params, buffers.h, buffers.B, buffers.slots, buffers.meta, buffers.y],
  }
}
