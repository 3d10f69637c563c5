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
import { checkAdaptersPerToken, checkInt, tokensOf } from './validate.js'

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
  /** [N] weight of each entry (same order as rows), or absent: every weight 1. */
  weights?: Float32Array
}

/**
 * {@link buildSegments} as exported to users: the arguments are checked first and bad ones throw
 * LoraError (INVALID_ARGUMENT, SHAPE_MISMATCH, OUT_OF_RANGE), as every public call does.
 */
export function buildSegmentsChecked(ids: Int32Array, adaptersPerToken: number, numSlots: number, chunkSize = 64): SegmentPlan {
  if (!(ids instanceof Int32Array)) throw new LoraError('INVALID_ARGUMENT', `ids must be an Int32Array, got ${describe(ids)}`)
  const K = checkAdaptersPerToken('adaptersPerToken', adaptersPerToken)
  const L = checkInt('numSlots', numSlots, 1)
  checkInt('chunkSize', chunkSize, 1)
  tokensOf(ids.length, K)
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
 * @param weights [T * K] weight of each (token, k) entry (validated), carried into plan.weights.
 */
export function buildSegments(
  ids: Int32Array,
  adaptersPerToken: number,
  numSlots: number,
  chunkSize = 64,
  weights?: Float32Array,
): SegmentPlan {
  const K = adaptersPerToken
  const T = K > 0 ? Math.floor(ids.length / K) : 0
  // few entries in many slots (a decode batch on a layer with hundreds of adapter slots): sort the
  // entries instead of counting over every slot
  const plan = ids.length * SORT_BELOW < numSlots ? bySorting(ids, K, T, chunkSize) : byCounting(ids, K, T, numSlots, chunkSize)
  if (weights) plan.weights = entryWeights(ids, plan, weights)
  return plan
}

/**
 * The weights in plan order. Both builders order the entries by slot, then by their index in ids,
 * so entry e of slot s is the (e - first entry of s)-th id equal to s.
 */
function entryWeights(ids: Int32Array, plan: SegmentPlan, weights: Float32Array): Float32Array {
  const out = new Float32Array(plan.rows.length)
  const next = new Map<number, number>() // slot -> its next position in plan order
  for (let g = 0; g < plan.segSlot.length; g++) if (!next.has(plan.segSlot[g])) next.set(plan.segSlot[g], plan.segStart[g])
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]
    if (s < 0) continue
    const e = next.get(s)!
    out[e] = weights[i]
    next.set(s, e + 1)
  }
  return out
}

/** The plan by a counting sort over the slots. */
function byCounting(ids: Int32Array, K: number, T: number, numSlots: number, chunkSize: number): SegmentPlan {
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

/** buildSegments sorts the entries, instead of counting per slot, when slots > entries * this. */
export const SORT_BELOW = 8

/**
 * The same plan as the counting sort, from the entries sorted by (slot, position): O(n log n) in
 * the entries, independent of the number of slots. Keys slot * L + i are exact in a Float64Array
 * (L = ids.length < 2^31, slots < 2^21: below 2^53).
 */
export function bySorting(ids: Int32Array, K: number, T: number, chunkSize: number): SegmentPlan {
  const L = ids.length
  let n = 0
  for (let i = 0; i < L; i++) if (ids[i] >= 0) n++
  const keys = new Float64Array(n)
  for (let i = 0, j = 0; i < L; i++) if (ids[i] >= 0) keys[j++] = ids[i] * L + i
  keys.sort()
  const rows = new Int32Array(n)
  let distinct = 0
  let numSegments = 0
  for (let e = 0, run = 0, prev = -1; e < n; e++) {
    const s = Math.floor(keys[e] / L)
    rows[e] = ((keys[e] - s * L) / K) | 0
    if (s !== prev) distinct++, numSegments++, (run = 1), (prev = s)
    else if (++run > chunkSize) numSegments++, (run = 1)
  }
  const segSlot = new Int32Array(numSegments)
  const segStart = new Int32Array(numSegments)
  const segLength = new Int32Array(numSegments)
  const slots = new Int32Array(distinct)
  for (let e = 0, g = -1, d = 0, prev = -1; e < n; e++) {
    const s = Math.floor(keys[e] / L)
    if (s !== prev || segLength[g] === chunkSize) {
      if (s !== prev) slots[d++] = s
      g++
      segSlot[g] = s
      segStart[g] = e
      prev = s
    }
    segLength[g]++
  }
  return { numTokens: T, adaptersPerToken: K, rows, segSlot, segStart, segLength, slots }
}
