import type { PipelineSpec } from '../pipelines.js'
import { checkGroups, type Dispatch, MAX_GROUPS } from './program.js'

/** The pipeline of shaders/weigh.wgsl (no weights read, no overrides). */
export const WEIGH_SPEC: PipelineSpec = { shader: 'weigh', storage: 'f32', overrides: {} }

/** Bytes of its uniform WeighParams. */
export const WEIGH_PARAMS_BYTES = 16

/** The uniform of shaders/weigh.wgsl and the workgroups that cover N entries of hRow floats. */
export function weighParams(entries: number, hRow: number): { params: Uint32Array; groups: [number, number, number] } {
  const yGroups = Math.min(entries, MAX_GROUPS)
  const groups = checkGroups([Math.ceil(hRow / 64), yGroups, Math.ceil(entries / yGroups)], 'weigh')
  return { params: Uint32Array.of(entries, hRow, yGroups, 0), groups }
}

/**
 * h[e, :] *= w[e] for every entry (per-entry adapter weights).
 * @param params  uniform WeighParams (from weighParams)
 * @param weights [N] f32, the plan's entry weights
 * @param h       [N * hRow] f32, the shrink's output, scaled in place
 */
export function weighDispatch(groups: [number, number, number], buffers: { params: GPUBuffer; weights: GPUBuffer; h: GPUBuffer }): Dispatch {
  return { spec: WEIGH_SPEC, groups, buffers: [buffers.params, buffers.weights, buffers.h] }
}
