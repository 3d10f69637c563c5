/**
 * The records the host writes into linear memory for the kernels, defined once on this side;
 * assembly/records.ts mirrors every value (test/records.test.ts checks that the two agree).
 */
import type { SegmentPlan } from '../metadata.js'
import type { WeightDtype } from '../types.js'

/** The `dtype` argument of every kernel export: how the weights are stored. */
export const DTYPE_CODE: Readonly<Record<WeightDtype, number>> = { f32: 0, bf16: 1, f16: 2 }

/** Segment record: i32 (slot, first entry, entries), one per segment of the plan. */
export const SEGMENT_BYTES = 12

/** Slot record of a layer's slot table: i32 rank, f32 scale, u32 address of A, u32 address of B^T. */
export const SLOT_BYTES = 16

/** Threads' shrink task: i32 (segment, first entry in it, entries, first A row, end A row). */
export const TASK_FIELDS = 5

/** Write the plan's segment records at byte address `at` of `i32`'s memory. */
export function writeSegments(i32: Int32Array, at: number, plan: SegmentPlan): void {
  for (let g = 0, o = at >> 2; g < plan.segSlot.length; g++, o += SEGMENT_BYTES >> 2) {
    i32[o] = plan.segSlot[g]
    i32[o + 1] = plan.segStart[g]
    i32[o + 2] = plan.segLength[g]
  }
}

/** n rounded up to a multiple of 16 (every record array starts 16-byte aligned). */
export function align16(n: number): number {
  return Math.ceil(n / 16) * 16
}
