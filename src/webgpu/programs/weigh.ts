import type { PipelineSpec } from '../pipelines.js'
import { checkGroups, MAX_GROUPS } from './program.js'

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
