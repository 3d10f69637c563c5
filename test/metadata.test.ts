import { describe, expect, it } from 'vitest'
import { buildSegments } from '../src/metadata.js'

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
    expect(plain(buildSegments(new Int32Array(0), 1, 4))).toEqual({ numTokens: 0, rows: [], segSlot: [], segStart: [], segLength: [], slots: [] })
  })
  it('every token -1', () => {
    expect(plain(buildSegments(Int32Array.of(-1, -1, -1), 1, 4))).toEqual({ numTokens: 3, rows: [], segSlot: [], segStart: [], segLength: [], slots: [] })
  })
  it('one token', () => {
    expect(plain(buildSegments(Int32Array.of(2), 1, 4))).toEqual({ numTokens: 1, rows: [0], segSlot: [2], segStart: [0], segLength: [1], slots: [2] })
  })
  it('every token a different slot', () => {
    expect(plain(buildSegments(Int32Array.of(3, 0, 2, 1), 1, 4))).toEqual({
      numTokens: 4, rows: [1, 3, 2, 0], segSlot: [0, 1, 2, 3], segStart: [0, 1, 2, 3], segLength: [1, 1, 1, 1], slots: [0, 1, 2, 3],
    })
  })
  it('interleaved ids: stable within a slot, -1 dropped', () => {
    expect(plain(buildSegments(Int32Array.of(1, 0, 1, -1, 0, 1), 1, 2))).toEqual({
      numTokens: 6, rows: [1, 4, 0, 2, 5], segSlot: [0, 1], segStart: [0, 2], segLength: [2, 3], slots: [0, 1],
    })
  })
  it('long runs are cut into chunks', () => {
    const ids = Int32Array.of(0, 0, 0, 0, 0, 1, 0, 0)
    expect(plain(buildSegments(ids, 1, 2, 3))).toEqual({
      numTokens: 8, rows: [0, 1, 2, 3, 4, 6, 7, 5], segSlot: [0, 0, 0, 1], segStart: [0, 3, 6, 7], segLength: [3, 3, 1, 1], slots: [0, 1],
    })
  })
  it('several adapters per token: one entry per (token, adapter)', () => {
    // token 0: slots 1, 0; token 1: slot 1, pad; token 2: pad, 0
    const ids = Int32Array.of(1, 0, 1, -1, -1, 0)
    expect(plain(buildSegments(ids, 2, 2))).toEqual({
      numTokens: 3, rows: [0, 2, 0, 1], segSlot: [0, 1], segStart: [0, 2], segLength: [2, 2], slots: [0, 1],
    })
  })
  it('a slot with no tokens gets no segment', () => {
    expect(plain(buildSegments(Int32Array.of(2, 0, 2), 1, 3)).slots).toEqual([0, 2])
  })
})
