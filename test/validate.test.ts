/**
 * The argument checks of apply() that only the fuller (WebGPU, threads, embedding) suites reached:
 * options.tokens against host ids, x and y overlapping in one buffer, the token ids of an
 * embedding layer, per-entry weights, and the slot ids of a token. Each bad call is a LoraError
 * with its code, naming the argument, and leaves y untouched; each good one gives the reference.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Layer, type Runtime } from '../src/index.js'
import { isGpuBuffer } from '../src/validate.js'
import { expectDelta, expectLoraError } from './compare.js'
import { Rng } from './random.js'
import { gather, type RefAdapter, sgmv } from './reference.js'

const IN = 6,
  OUT = 5,
  VOCAB = 9

let rt: Runtime
let layer: Layer
let emb: Layer
const adapters: RefAdapter[] = []
const embAdapters: RefAdapter[] = []
beforeAll(async () => {
  rt = await createRuntime({ backend: 'wasm' })
  const rng = new Rng(11)
  layer = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: 3, maxRank: 2 })
  emb = rt.createLayer({ inFeatures: VOCAB, outFeatures: OUT, maxAdapters: 2, maxRank: 2, embedding: true })
  for (let s = 0; s < 2; s++) {
    const a = { rank: 2, scale: 1 + s, A: [rng.array(2 * IN)], B: [rng.array(OUT * 2)] }
    layer.setAdapter(s, a)
    adapters.push(a)
    const e = { rank: 2, scale: 0.5 + s, A: [rng.array(2 * VOCAB)], B: [rng.array(OUT * 2)] }
    emb.setAdapter(s, e)
    embAdapters.push(e)
  }
})
afterAll(() => rt?.dispose())

const ref = () => ({ inFeatures: IN, sliceWidths: [OUT], adapters })

/** A refused call: its code and words, and y as it was. */
async function refused(call: (y: Float32Array) => Promise<void>, y: Float32Array, code: string, words: string[]): Promise<void> {
  const before = y.slice()
  await expectLoraError(() => call(y), code as never, words)
  expect(y).toEqual(before)
}

describe('apply(): options.tokens with host ids', () => {
  it('must equal the tokens ids hold; equal, the call runs', async () => {
    const rng = new Rng(1)
    const x = rng.array(3 * IN)
    const ids = Int32Array.of(0, 1, -1)
    const y = rng.array(3 * OUT)
    await refused((yy) => layer.apply(x, yy, ids, { tokens: 2 }), y, 'SHAPE_MISMATCH', ['options.tokens = 2', '3 tokens'])
    await refused((yy) => layer.apply(x, yy, ids, { tokens: 2.5 }), y, 'INVALID_ARGUMENT', ['options.tokens'])
    const y0 = y.slice()
    await layer.apply(x, y, ids, { tokens: 3 })
    expectDelta(y, y0, sgmv(ref(), x, ids), 1e-5, 'tokens = 3')
  })
})

describe('apply(): x and y in one buffer', () => {
  it('overlapping views are refused, however they overlap; adjacent ones run', async () => {
    const T = 2
    const buf = new Float32Array(64)
    const ids = Int32Array.of(0, 1)
    // y starts inside x; x starts inside y; one view inside the other; the last byte shared
    for (const [xAt, yAt] of [
      [0, 4],
      [8, 2],
      [0, 2],
      [20, 20 + T * IN - 1],
      [20 + T * OUT - 1, 20],
    ]) {
      const x = buf.subarray(xAt, xAt + T * IN)
      const y = buf.subarray(yAt, yAt + T * OUT)
      await refused((yy) => layer.apply(x, yy, ids), y, 'INVALID_ARGUMENT', ['overlap', `bytes ${xAt * 4}`])
    }
    const rng = new Rng(2)
    buf.set(rng.array(64))
    const x = buf.subarray(0, T * IN)
    const y = buf.subarray(T * IN, T * IN + T * OUT) // right after x
    const xCopy = x.slice()
    const y0 = y.slice()
    await layer.apply(x, y, ids)
    expectDelta(y, y0, sgmv(ref(), xCopy, ids), 1e-5, 'adjacent')
    const before = buf.subarray(0, T * IN)
    expect(before).toEqual(xCopy)
    // empty views never overlap
    await layer.apply(new Float32Array(buf.buffer, 0, 0), new Float32Array(buf.buffer, 0, 0), new Int32Array(0))
  })
})

describe('apply() on an embedding layer: x holds token ids', () => {
  it('ids in 0..vocab-1, T of them, in an Int32Array; the good call gives the reference', async () => {
    const ids = Int32Array.of(1, 0, -1)
    const y = new Rng(3).array(3 * OUT)
    await refused((yy) => emb.apply(Int32Array.of(0, 1), yy, ids), y, 'SHAPE_MISMATCH', ['token ids', 'T = 3', 'got 2'])
    await refused((yy) => emb.apply(Int32Array.of(0, VOCAB, 1), yy, ids), y, 'OUT_OF_RANGE', [`x[1] = ${VOCAB}`, `0..${VOCAB - 1}`])
    await refused((yy) => emb.apply(Int32Array.of(-1, 0, 1), yy, ids), y, 'OUT_OF_RANGE', ['x[0] = -1'])
    await refused((yy) => emb.apply(new Float32Array(3), yy, ids), y, 'INVALID_ARGUMENT', ['Int32Array of token ids'])
    const tokens = Int32Array.of(VOCAB - 1, 0, 4)
    const y0 = y.slice()
    await emb.apply(tokens, y, ids)
    expectDelta(y, y0, gather({ inFeatures: VOCAB, sliceWidths: [OUT], adapters: embAdapters }, tokens, ids), 1e-5, 'gather')
  })
})

describe('apply(): options.weights', () => {
  it('a Float32Array of one finite weight per id; the good call scales each delta', async () => {
    const rng = new Rng(4)
    const x = rng.array(2 * IN)
    const ids = Int32Array.of(0, 1, 1, -1)
    const y = rng.array(2 * OUT)
    const opts = { adaptersPerToken: 2 }
    await refused((yy) => layer.apply(x, yy, ids, { ...opts, weights: [1, 1, 1, 1] as never }), y, 'INVALID_ARGUMENT', [
      'options.weights',
      'Float32Array',
    ])
    await refused((yy) => layer.apply(x, yy, ids, { ...opts, weights: new Float32Array(3) }), y, 'SHAPE_MISMATCH', [
      'options.weights has 3 values',
      'ids has 4',
    ])
    for (const bad of [NaN, Infinity, -Infinity]) {
      await refused((yy) => layer.apply(x, yy, ids, { ...opts, weights: Float32Array.of(1, 1, bad, 1) }), y, 'INVALID_ARGUMENT', [
        'options.weights[2]',
      ])
    }
    const weights = Float32Array.of(0.5, -2, 3, 7)
    const y0 = y.slice()
    await layer.apply(x, y, ids, { ...opts, weights })
    expectDelta(y, y0, sgmv(ref(), x, ids, 2, weights), 1e-5, 'weighted')
  })
})

describe('apply(): slot ids', () => {
  it('-1..maxAdapters-1, a filled slot, no slot twice in one token (the same slot in two tokens is fine)', async () => {
    const rng = new Rng(5)
    const x = rng.array(2 * IN)
    const y = rng.array(2 * OUT)
    const K = { adaptersPerToken: 2 }
    await refused((yy) => layer.apply(x, yy, Int32Array.of(0, 0, 1, -1), K), y, 'DUPLICATE_ADAPTER', [
      'token 0',
      'slot 0',
      'ids[0]',
      'ids[1]',
    ])
    await refused((yy) => layer.apply(x, yy, Int32Array.of(1, -1, 0, 0), K), y, 'DUPLICATE_ADAPTER', ['token 1', 'ids[2]', 'ids[3]'])
    await refused((yy) => layer.apply(x, yy, Int32Array.of(0, 3, -1, -1), K), y, 'OUT_OF_RANGE', ['ids[1] = 3', '-1..2'])
    await refused((yy) => layer.apply(x, yy, Int32Array.of(-2, -1, -1, -1), K), y, 'OUT_OF_RANGE', ['ids[0] = -2'])
    await refused((yy) => layer.apply(x, yy, Int32Array.of(2, -1, -1, -1), K), y, 'SLOT_EMPTY', ['ids[0] = 2', 'slot 2'])
    const ids = Int32Array.of(0, 1, 1, 0)
    const y0 = y.slice()
    await layer.apply(x, y, ids, K)
    expectDelta(y, y0, sgmv(ref(), x, ids, 2), 1e-5, 'K = 2')
  })
})

describe('isGpuBuffer', () => {
  it('recognises a buffer by its shape (size, usage, mapAsync), whatever the implementation', () => {
    const fake = { size: 16, usage: 4, mapAsync: () => Promise.resolve() }
    expect(isGpuBuffer(fake)).toBe(true)
    for (const v of [
      null,
      undefined,
      16,
      'buf',
      new Float32Array(4),
      { ...fake, size: '16' },
      { ...fake, usage: undefined },
      { ...fake, mapAsync: 1 },
    ])
      expect(isGpuBuffer(v)).toBe(false)
  })
})
