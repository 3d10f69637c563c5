import type { PipelineSpec } from '../pipelines.js'
import type { WeightStorage } from '../shaders.js'
import { checkGroups, type CallShape } from './program.js'

/** Rank rows per workgroup of shaders/gather.wgsl. */
const WG = 64

/** The pipeline of shaders/gather.wgsl. */
export function gatherSpec(storage: WeightStorage): PipelineSpec {
  return { shader: 'gather', storage, overrides: { WG } }
}

/** Workgroups of the gather, the shrink of an embedding layer (h = the token's column of A, per entry). */
export function gatherGroups(shape: CallShape, numTiles: number): [number, number, number] {
  return checkGroups([Math.ceil(shape.maxUsedRank / WG), numTiles, 1], 'gather')
}
