import type { SegmentPlan } from '../metadata.js'
import type { CallMetaOffsets } from './params.js'

/**
 * The per-call metadata the kernels read, packed into one Int32Array (one upload):
 *   tiles  [numTiles * 4]: (slot, first entry, entries, 0), segments cut to at most tileM entries
 *   rows   [N]: row of x / y of each entry (plan.rows)
 *   tokens [numTokens * (1 + 2K)]: only when a token has several entries: (row, then per adapter
 *          (entry, slot), -1 pads), tokens ordered by their first entry in the plan.
 */
export interface CallMeta extends CallMetaOffsets {
  data: Int32Array
  numTiles: number
  numEntries: number
  /** Largest number of entries of one token: > 1 needs the token-major expand. */
  maxEntriesPerToken: number
}

/** Longest segment of the plan (0 for an empty plan). */
export function longestSegment(plan: SegmentPlan): number {
  let m = 0
  for (let g = 0; g < plan.segLength.length; g++) m = Math.max(m, plan.segLength[g])
  return m
}

export function buildCallMeta(plan: SegmentPlan, tileM: number): CallMeta {
  const K = plan.adaptersPerToken
  const N = plan.rows.length
  let numTiles = 0
  for (let g = 0; g < plan.segLength.length; g++) numTiles += Math.ceil(plan.segLength[g] / tileM)
  // entries per token, and the slot of each entry
  const perToken = new Int32Array(plan.numTokens)
  let maxEntriesPerToken = 0
  for (let e = 0; e < N; e++) maxEntriesPerToken = Math.max(maxEntriesPerToken, ++perToken[plan.rows[e]])
  const multi = maxEntriesPerToken > 1
  let numTokens = 0
  if (multi) for (let t = 0; t < plan.numTokens; t++) if (perToken[t] > 0) numTokens++
  const tokenWords = 1 + 2 * K
  const tilesOffset = 0
  const rowsOffset = numTiles * 4
  const tokensOffset = rowsOffset + N
  const data = new Int32Array(tokensOffset + (multi ? numTokens * tokenWords : 0))
  let i = 0
  for (let g = 0; g < plan.segLength.length; g++) {
    for (let off = 0; off < plan.segLength[g]; off += tileM) {
      data[i++] = plan.segSlot[g]
      data[i++] = plan.segStart[g] + off
      data[i++] = Math.min(tileM, plan.segLength[g] - off)
      data[i++] = 0
    }
  }
  data.set(plan.rows, rowsOffset)
  if (multi) {
    const base = new Int32Array(plan.numTokens).fill(-1) // word index of each token's record
    const filled = new Int32Array(plan.numTokens)
    let next = tokensOffset
    data.fill(-1, tokensOffset)
    for (let g = 0; g < plan.segLength.length; g++) {
      for (let e = plan.segStart[g]; e < plan.segStart[g] + plan.segLength[g]; e++) {
        const t = plan.rows[e]
        if (base[t] < 0) {
          base[t] = next
          data[next] = t
          next += tokenWords
        }
        const w = base[t] + 1 + 2 * filled[t]++
        data[w] = e
        data[w + 1] = plan.segSlot[g]
      }
    }
  }
  return {
    data,
    numTiles,
    numEntries: N,
    maxEntriesPerToken,
    tilesOffset,
    rowsOffset,
    tokensOffset,
    numTokens,
    adaptersPerToken: K,
  }
}

/** Whether two plans describe the same batch (the same object, or equal arrays; per-entry weights: only the same object). */
export function samePlan(a: SegmentPlan, b: SegmentPlan): boolean {
  if (a === b) return true
  if (a.numTokens !== b.numTokens || a.adaptersPerToken !== b.adaptersPerToken || a.weights || b.weights) return false
  return same(a.rows, b.rows) && same(a.segSlot, b.segSlot) && same(a.segStart, b.segStart) && same(a.segLength, b.segLength)
}

function same(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
