/**
 * SGMV metadata: the one description of a mixed batch that every backend consumes.
 *
 * Each (token, adapter) entry is stably sorted by slot (counting sort), entries with slot -1 are
 * dropped, and the run of entries of each slot is cut into segments of at most `chunkSize`
 * entries. Kernels loop over segments and load each weight tile once per segment, never per token.
 * (Same idea as vLLM's token_indices_sorted_by_lora_ids / lora_token_start_loc and SGLang's
 * seg_indptr / weight_indices / permutation.)
 */
import { describe, LoraError } from './errors.js'
import { checkInt } from './validate.js'

export interface SegmentPlan {
  /** T: number of tokens (rows of x and y). */
  numTokens: number
  /** K: slot ids per token. */
  adaptersPerToken: number
  /** [N] row of x and y of each entry, grouped by slot in ascending slot order, stable within a slot. */
  rows: Int32Array
  /** [S] slot of each segment. */
  segSlot: Int32Array
  /** [S] first entry of each segment (index into rows). */
  segStart: Int32Array
  /** [S] number of entries of each segment (1..chunkSize). */
  segLength: Int32Array
  /** [D] distinct slots used by the batch, ascending. */
  slots: Int32Array
}

/**
 * {@link buildSegments} as exported to users: the arguments are checked first and bad ones throw
 * LoraError (INVALID_ARGUMENT, SHAPE_MISMATCH, OUT_OF_RANGE), as every public call does.
 */
export function buildSegmentsChecked(ids: Int32Array, adaptersPerToken: number, numSlots: number, chunkSize = 64): SegmentPlan {
  if (!(ids instanceof Int32Array)) throw new LoraError('INVALID_ARGUMENT', `ids must be an Int32Array, got ${describe(ids)}`)
  const K = checkInt('adaptersPerToken', adaptersPerToken, 1, 64)
  const L = checkInt('numSlots', numSlots, 1)
  checkInt('chunkSize', chunkSize, 1)
  if (ids.length % K !== 0) throw new LoraError('SHAPE_MISMATCH', `ids has ${ids.length} entries, not a multiple of adaptersPerToken = ${K}`)
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < -1 || ids[i] >= L) throw new LoraError('OUT_OF_RANGE', `ids[${i}] = ${ids[i]} is outside -1..${L - 1}`)
  }
  return buildSegments(ids, K, L, chunkSize)
}

/**
 * Build the segment plan of a batch.
 * @param ids [T * K] slot id of each (token, k) entry; -1 = none. Must already be validated
 *   (every id in -1..numSlots-1).
 * @param adaptersPerToken K.
 * @param numSlots number of slots of the layer (ids are < numSlots).
 * @param chunkSize longest segment; longer runs of one slot are cut into several segments.
 */
export function buildSegments(
  ids: Int32Array,
  adaptersPerToken: number,
  numSlots: number,
  chunkSize = 64,
): SegmentPlan {
  const K = adaptersPerToken
  const T = K > 0 ? Math.floor(ids.length / K) : 0
  // counts[s] entries per slot
  const counts = new Int32Array(numSlots + 1)
  let n = 0
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]
    if (s >= 0) {
      counts[s + 1]++
      n++
    }
  }
  // prefix sums: counts[s] becomes the first position of slot s
  let distinct = 0
  let numSegments = 0
  for (let s = 0; s < numSlots; s++) {
    const c = counts[s + 1]
    if (c > 0) {
      distinct++
      numSegments += Math.ceil(c / chunkSize)
    }
    counts[s + 1] += counts[s]
  }
  const rows = new Int32Array(n)
  const cursor = counts.slice(0, numSlots)
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]
    if (s >= 0) rows[cursor[s]++] = (i / K) | 0
  }
  const segSlot = new Int32Array(numSegments)
  const segStart = new Int32Array(numSegments)
  const segLength = new Int32Array(numSegments)
  const slots = new Int32Array(distinct)
  let g = 0
  let d = 0
  for (let s = 0; s < numSlots; s++) {
    const begin = counts[s]
    const end = counts[s + 1]
    if (end === begin) continue
    slots[d++] = s
    for (let start = begin; start < end; start += chunkSize) {
      segSlot[g] = s
      segStart[g] = start
      segLength[g] = Math.min(chunkSize, end - start)
      g++
    }
  }
  return { numTokens: T, adaptersPerToken: K, rows, segSlot, segStart, segLength, slots }
}
