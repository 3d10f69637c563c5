import { LoraError } from '../../errors.js'
import type { PipelineSpec } from '../pipelines.js'

/** One kernel launch: which pipeline, how many workgroups, and the buffers of bindings 0..5. */
export interface Dispatch {
  spec: PipelineSpec
  groups: [number, number, number]
  /** Binding i of group 0 (params, input, weights, slots, meta, output). */
  buffers: GPUBuffer[]
}

/** The shape facts kernel selection depends on. */
export interface CallShape {
  /** Longest segment of the plan. */
  longestSegment: number
  /** Largest rank among the slots the batch uses. */
  maxUsedRank: number
  /** Widest output slice. */
  maxSliceWidth: number
  numSlices: number
}

/** Entries per tile shared by the shrink and the segment-major expand: small for decode batches. */
export function tileEntries(longestSegment: number): number {
  if (longestSegment <= 1) return 1
  if (longestSegment <= 2) return 2
  if (longestSegment <= 4) return 4
  return 16
}

export const MAX_GROUPS = 65535

export function checkGroups(groups: [number, number, number], what: string): [number, number, number] {
  if (groups.some((g) => g > MAX_GROUPS)) {
    throw new LoraError('OUT_OF_RANGE', `${what}: ${groups.join(' x ')} workgroups exceed ${MAX_GROUPS} per dimension (split the batch)`)
  }
  return groups
}
