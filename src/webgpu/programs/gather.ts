import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape, type Dispatch } from './program.js'

/** Rank rows per workgroup of shaders/gather.wgsl. */
const WG = 64

/** The pipeline of shaders/gather.wgsl. */
export function gatherSpec(storage: WeightStorage): PipelineSpec {
  return { shader: 'gather', storage, overrides: { WG } }
}

/**
 * The shrink of an embedding layer: h = the token's column of A, per entry.
 * @param params uniform Params
 * @param tokens [T] i32 token ids
 * @param A      resident A weights
 * @param slots  [maxAdapters] (rank, scale)
 * @param meta   call metadata (tiles, rows)
 * @param h      [N * rankStride] f32 output
 */
export function gatherDispatch(
  storage: WeightStorage,
  shape: CallShape,
  numTiles: number,
  buffers: { params: GPUBuffer; x: GPUBuffer; A: GPUBuffer; slots: GPUBuffer; meta: GPUBuffer; h: GPUBuffer },
): Dispatch {
  return {
    spec: gatherSpec(storage),
    groups: checkGroups([Math.ceil(shape.maxUsedRank / WG), numTiles, 1], 'gather'),
    buffers: [buffers.params, buffers.x, buffers.A, buffers.slots, buffers.meta, buffers.h],
  }
}
