import { LoraError } from '../../errors.js'

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

import type { KernelProfile } from '../../types.js'

export type { KernelProfile }

/** Workgroups a split-K shrink aims for on a 'discrete' device (a few per multiprocessor of a big GPU). */
export const TARGET_WORKGROUPS = 512
/** Largest split over workgroups (the expand adds this many partials per h value). */
export const MAX_KG = 16

/**
 * k chunks of the shrink over workgroups: 1 on 'software'; on 'discrete' the power of two that
 * brings the shrink near TARGET_WORKGROUPS, keeping at least 2 k pairs per thread per chunk.
 */
export function splitK(profile: KernelProfile, workgroups: number, inFeatures: number, threadsPerDot: number): number {
  if (profile === 'software') return 1
  let kg = 1
  while (kg < MAX_KG && workgroups * kg * 2 <= TARGET_WORKGROUPS && inFeatures / (kg * 2) >= 4 * threadsPerDot) kg *= 2
  return kg
}

/** Entries per tile shared by the shrink and the segment-major expand: small for decode batches. */
export function tileEntries(longestSegment: number, profile: KernelProfile = 'software'): number {
  if (longestSegment <= 1) return 1
  if (longestSegment <= 2) return 2
  if (longestSegment <= 4) return 4
  // a GPU: segments of up to 16 entries in tiles of 4 (4x the workgroups; the weights are read
  // 4 times, from its cache)
  if (profile === 'discrete' && longestSegment <= 16) return 4
  return 16
}

export const MAX_GROUPS = 65535

export function checkGroups(groups: [number, number, number], what: string): [number, number, number] {
  if (groups.some((g) => g > MAX_GROUPS)) {
    throw new LoraError('OUT_OF_RANGE', `${what}: ${groups.join(' x ')} workgroups exceed ${MAX_GROUPS} per dimension (split the batch)`)
  }
  return groups
}
