import { describe, expect, it } from 'vitest'
import { buildSegments, bySorting, SORT_BELOW } from '../src/metadata.js'
import { Rng } from './random.js'

const plain = (p: ReturnType<typeof buildSegments>) => ({
  numTokens: p.numTokens,
  rows: [...p.rows],
  segSlot: [...p.segSlot],
  segStart: [...p.segStart],
  segLength: [...p.segLength],
  slots: [...p.slots],
})

describe('buildSegments', () => {
  it('empty batch', () => {
    expect(plain(buildSegments(new Int32Array(0), 1, 4))).toEqual({
      numTokens: 0,
      rows: [],
      segSlot: [],
      segStart: [],
      segLength: [],
      slots: [],
    })
  })
  it('every token -1', () => {
    expect(plain(buildSegments(Int32Array.of(-1, -1, -1), 1, 4))).toEqual({
      numTokens: 3,
      rows: [],
      segSlot: [],
      segStart: [],
      segLength: [],
      slots: [],
    })
  })
  it('one token', () => {
    expect(plain(buildSegments(Int32Array.of(2), 1, 4))).toEqual({
      numTokens: 1,
      rows: [0],
      segSlot: [2],
      segStart: [0],
      segLength: [1],
      slots: [2],
    })
  })
  it('every token a different slot', () => {
    expect(plain(buildSegments(Int32Array.of(3, 0, 2, 1), 1, 4))).toEqual({
      numTokens: 4,
      rows: [1, 3, 2, 0],
      segSlot: [0, 1, 2, 3],
      segStart: [0, 1, 2, 3],
      segLength: [1, 1, 1, 1],
      slots: [0, 1, 2, 3],
    })
  })
  it('interleaved ids: stable within a slot, -1 dropped', () => {
    expect(plain(buildSegments(Int32Array.of(1, 0, 1, -1, 0, 1), 1, 2))).toEqual({
      numTokens: 6,
      rows: [1, 4, 0, 2, 5],
      segSlot: [0, 1],
      segStart: [0, 2],
      segLength: [2, 3],
      slots: [0, 1],
    })
  })
  it('long runs are cut into chunks', () => {
    const ids = Int32Array.of(0, 0, 0, 0, 0, 1, 0, 0)
    expect(plain(buildSegments(ids, 1, 2, 3))).toEqual({
      numTokens: 8,
      rows: [0, 1, 2, 3, 4, 6, 7, 5],
      segSlot: [0, 0, 0, 1],
      segStart: [0, 3, 6, 7],
      segLength: [3, 3, 1, 1],
      slots: [0, 1],
    })
  })
  it('several adapters per token: one entry per (token, adapter)', () => {
    // token 0: slots 1, 0; token 1: slot 1, pad; token 2: pad, 0
    const ids = Int32Array.of(1, 0, 1, -1, -1, 0)
    expect(plain(buildSegments(ids, 2, 2))).toEqual({
      numTokens: 3,
      rows: [0, 2, 0, 1],
      segSlot: [0, 1],
      segStart: [0, 2],
      segLength: [2, 2],
      slots: [0, 1],
    })
  })
  it('a slot with no tokens gets no segment', () => {
    expect(plain(buildSegments(Int32Array.of(2, 0, 2), 1, 3)).slots).toEqual([0, 2])
  })
})

describe('buildSegments: few entries over many slots (sorted instead of counted)', () => {
  /** The plan by definition: entries stably ordered by slot, runs cut every `chunk` entries. */
  function naive(ids: Int32Array, K: number, chunk: number) {
    const entries = [...ids]
      .map((s, i) => ({ s, row: Math.floor(i / K), i }))
      .filter((e) => e.s >= 0)
      .sort((a, b) => a.s - b.s || a.i - b.i)
    const segSlot: number[] = [],
      segStart: number[] = [],
      segLength: number[] = []
    entries.forEach((e, k) => {
      const g = segSlot.length - 1
      if (g < 0 || segSlot[g] !== e.s || segLength[g] === chunk) segSlot.push(e.s), segStart.push(k), segLength.push(1)
      else segLength[g]++
    })
    return { numTokens: ids.length / K, rows: entries.map((e) => e.row), segSlot, segStart, segLength, slots: [...new Set(segSlot)] }
  }

  it('gives the plan by definition on both paths, over random batches, K, chunk sizes and slot counts', () => {
    const rng = new Rng(77)
    let sortedPath = 0
    for (let trial = 0; trial < 400; trial++) {
      const K = 1 + rng.int(3)
      const T = rng.int(40)
      const used = 1 + rng.int(12)
      const stride = 1 + rng.int(200)
      const ids = Int32Array.from({ length: T * K }, () => (rng.next() < 0.2 ? -1 : rng.int(used) * stride))
      const chunk = 1 + rng.int(6)
      const numSlots = (used - 1) * stride + 1
      if (ids.length * SORT_BELOW < numSlots) sortedPath++
      const want = naive(ids, K, chunk)
      expect(plain(buildSegments(ids, K, numSlots, chunk))).toEqual(want)
      expect(plain(bySorting(ids, K, T, chunk))).toEqual(want)
      expect(plain(buildSegments(ids, K, 1 << 20, chunk))).toEqual(want) // always the sorting path
    }
    expect(sortedPath).toBeGreaterThan(50) // both paths were taken by buildSegments itself
    expect(sortedPath).toBeLessThan(350)
  })

  it('the sorting path is taken below SORT_BELOW entries per slot, with the same result', () => {
    const ids = Int32Array.of(900, -1, 3, 900, 3, 511)
    const plan = buildSegments(ids, 1, 1000, 64) // 6 * SORT_BELOW < 1000
    expect(6 * SORT_BELOW).toBeLessThan(1000)
    expect(Array.from(plan.rows)).toEqual([2, 4, 5, 0, 3])
    expect(Array.from(plan.segSlot)).toEqual([3, 511, 900])
    expect(Array.from(plan.segStart)).toEqual([0, 2, 3])
    expect(Array.from(plan.segLength)).toEqual([2, 1, 2])
    expect(Array.from(plan.slots)).toEqual([3, 511, 900])
  })
})
