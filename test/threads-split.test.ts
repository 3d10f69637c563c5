/** How the threaded backend cuts a call into parts (src/wasm/threads/split.ts). */
import { describe, expect, it } from 'vitest'
import { buildSegments } from '../src/metadata.js'
import { granuleShares, splitColumns, splitShrink, TASK_FIELDS } from '../src/wasm/threads/split.js'
import { Rng } from './random.js'

/** Every (entry, A row) exactly once; entry groups as the single-threaded kernel makes them. */
function checkShrink(ids: Int32Array, K: number, slots: number, ranksBySlot: number[], S: number, parts: number) {
  const plan = buildSegments(ids, K, slots, 64)
  const ranks = Int32Array.from(plan.segSlot, (s) => ranksBySlot[s])
  const { tasks, partStart } = splitShrink(plan, ranks, S, new Array(parts).fill(1))
  expect(partStart.length).toBe(parts + 1)
  expect(partStart[parts] * TASK_FIELDS).toBe(tasks.length)
  const seen = plan.segSlot.length === 0 ? [] : Array.from(plan.segLength, (n, g) => new Uint8Array(n * ranks[g] * S))
  const cost = new Array(parts).fill(0)
  for (let p = 0; p < parts; p++) {
    expect(partStart[p + 1]).toBeGreaterThanOrEqual(partStart[p])
    for (let t = partStart[p]; t < partStart[p + 1]; t++) {
      const [g, e0, n, k0, k1] = tasks.subarray(t * TASK_FIELDS, (t + 1) * TASK_FIELDS)
      const R = ranks[g] * S
      const len = plan.segLength[g]
      expect(n).toBeGreaterThan(0)
      expect(e0 + n).toBeLessThanOrEqual(len)
      expect(0 <= k0 && k0 < k1 && k1 <= R).toBe(true)
      // starts at a block of 4 or inside the tail of single entries
      expect(e0 % 4 === 0 || e0 >= len - (len % 4)).toBe(true)
      if (k1 - k0 < R) {
        expect(n).toBe(1)
        expect(k0 % 4).toBe(0)
        expect(e0).toBeGreaterThanOrEqual(len - (len % 4)) // only single entries are cut by rows
      }
      for (let e = e0; e < e0 + n; e++) for (let k = k0; k < k1; k++) seen[g][e * R + k]++
      cost[p] += n * (k1 - k0)
    }
  }
  for (let g = 0; g < seen.length; g++) {
    const bad = seen[g].findIndex((v) => v !== 1)
    expect(bad, `segment ${g}: element ${bad} covered ${seen[g][bad]} times`).toBe(-1)
  }
  return { cost, plan, ranks, tasks }
}

describe('splitShrink', () => {
  it('covers every H element once over random batches, any part count', () => {
    const rng = new Rng(5)
    for (let trial = 0; trial < 200; trial++) {
      const slots = 1 + rng.int(6)
      const K = 1 + rng.int(3)
      const T = rng.int(150)
      const ids = Int32Array.from({ length: T * K }, () => (rng.next() < 0.2 ? -1 : rng.int(slots)))
      for (let t = 0; t < T; t++) {
        // no slot twice in one token
        for (let k = 1; k < K; k++) for (let j = 0; j < k; j++) if (ids[t * K + k] === ids[t * K + j]) ids[t * K + k] = -1
      }
      const ranks = Array.from({ length: slots }, () => 1 + rng.int(40))
      checkShrink(ids, K, slots, ranks, 1 + rng.int(3), 1 + rng.int(5))
    }
  })

  it('keeps segments whole and balances a big batch within one segment per part', () => {
    const ids = Int32Array.from({ length: 1000 }, (_, t) => t % 7)
    const { cost, tasks } = checkShrink(ids, 1, 7, [16, 16, 16, 16, 16, 16, 16], 3, 4)
    const total = cost.reduce((a, b) => a + b, 0)
    for (const c of cost) expect(Math.abs(c - total / 4)).toBeLessThanOrEqual(64 * 48)
    for (let t = 0; t < tasks.length; t += TASK_FIELDS) expect(tasks[t + 1]).toBe(0) // every task starts a segment
  })

  it('cuts a segment that is most of the call into blocks of 4', () => {
    const ids = Int32Array.from({ length: 64 }, () => 0) // one segment
    const { cost, tasks } = checkShrink(ids, 1, 1, [8], 1, 4)
    expect(cost).toEqual([128, 128, 128, 128])
    expect(tasks.length / TASK_FIELDS).toBe(4)
  })

  it('never cuts a single token past its last row of A, whatever R % 4', () => {
    // two single-token segments: the first one's cost moves where the part boundaries fall in the second
    for (let r0 = 1; r0 <= 12; r0++) {
      for (let R = 8; R <= 48; R++) for (let parts = 2; parts <= 5; parts++) checkShrink(Int32Array.of(0, 1), 1, 2, [r0, R], 1, parts)
    }
  })

  it('cuts a single token by rows of A (multiples of 4)', () => {
    const { cost } = checkShrink(Int32Array.of(2), 1, 4, [8, 8, 64, 8], 3, 2) // R = 192
    expect(cost).toEqual([96, 96])
    expect(checkShrink(Int32Array.of(0), 1, 1, [16], 1, 3).cost).toEqual([4, 8, 4])
  })

  it('gives nothing to do for an empty plan', () => {
    const { cost } = checkShrink(new Int32Array([-1, -1]), 1, 2, [4, 4], 1, 3)
    expect(cost).toEqual([0, 0, 0])
  })
})

describe('splitColumns', () => {
  const valid = (widths: number[]) => {
    const ok = new Set<number>()
    let off = 0
    for (const w of widths) {
      for (let j = 0; j < w; j += 8) ok.add(off + j)
      off += w
    }
    ok.add(off)
    return ok
  }

  it('cuts at panel or slice boundaries, in order, covering all columns', () => {
    const rng = new Rng(9)
    for (let trial = 0; trial < 300; trial++) {
      const widths = Array.from({ length: 1 + rng.int(3) }, () => 1 + rng.int(300))
      const parts = 1 + rng.int(6)
      const cuts = splitColumns(widths, new Array(parts).fill(1))
      const ok = valid(widths)
      expect(cuts[0]).toBe(0)
      expect(cuts[parts]).toBe(widths.reduce((a, b) => a + b, 0))
      for (let p = 0; p < parts; p++) {
        expect(cuts[p + 1]).toBeGreaterThanOrEqual(cuts[p])
        expect(ok.has(cuts[p]), `cut ${cuts[p]} of ${widths}`).toBe(true)
      }
    }
  })

  it('splits a QKV layer evenly and honours shares', () => {
    expect(Array.from(splitColumns([4096, 1024, 1024], [1, 1]))).toEqual([0, 3072, 6144])
    expect(Array.from(splitColumns([4096], [1, 3]))).toEqual([0, 1024, 4096])
    expect(Array.from(splitColumns([5], [1, 1, 1]))).toEqual([0, 0, 0, 5]) // 5 columns: one panel
  })
})

describe('granuleShares', () => {
  it('sums to 1, shrinks down to a floor, one share per granule', () => {
    for (const [threads, count] of [
      [2, 32],
      [3, 48],
      [8, 128],
      [1, 16],
    ]) {
      const s = granuleShares(threads, count)
      expect(s.length).toBe(count)
      expect(Math.abs(s.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-12)
      expect(s[0]).toBeCloseTo(1 / (4 * threads))
      for (let i = 1; i < count - 1; i++) expect(s[i]).toBeLessThanOrEqual(s[i - 1] + 1e-15)
      for (const v of s) expect(v).toBeGreaterThanOrEqual(0)
    }
  })

  it('with cutRows false, splitShrink gives whole H rows only (fused granules)', () => {
    const ids = Int32Array.from({ length: 37 }, (_, t) => t % 5)
    const plan = buildSegments(ids, 1, 5, 64)
    const ranks = Int32Array.from(plan.segSlot, () => 16)
    const { tasks } = splitShrink(plan, ranks, 2, granuleShares(2, 16), 1 / 64, false)
    for (let t = 0; t < tasks.length; t += TASK_FIELDS) {
      expect(tasks[t + 3]).toBe(0)
      expect(tasks[t + 4]).toBe(32)
    }
  })
})
