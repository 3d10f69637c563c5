/**
 * Host arrays (rt.hostArray): x and y in the wasm memory are used in place, on one thread and on
 * several (fused and two-phase calls, fused with home ranges on 4 threads), with the same results bit for bit as ordinary arrays and
 * against the float64 reference; views after the memory grew; views the kernels must not take.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type HostArray, type Runtime } from '../src/index.js'
import { backendsOf } from '../src/runtime.js'
import { expectDelta, expectLoraError, expectUntouchedRows, TOLERANCE } from './compare.js'
import { caseGrid, makeCase } from './grid.js'
import { sgmv } from './reference.js'

const wasmOf = (rt: Runtime) => backendsOf(rt).find((b) => b.name === 'wasm')!

let single: Runtime
let two: Runtime
let four: Runtime
beforeAll(async () => {
  single = await createRuntime({ backend: 'wasm' })
  two = await createRuntime({ backend: 'wasm', threads: 2 })
  // every call on all threads, whatever its size; on 4, fused calls with y in place claim
  // granules from home ranges (layer.ts HOME_MIN_PARTS)
  wasmOf(two).forceParts(2)
  four = await createRuntime({ backend: 'wasm', threads: 4 })
  wasmOf(four).forceParts(4)
})
afterAll(() => {
  single?.dispose()
  two?.dispose()
  four?.dispose()
})

/** Which of x and y live in host arrays. */
const PLACES = [['x', 'y'], ['x'], ['y']] as const

describe.each([
  ['1 thread', () => single],
  ['2 threads', () => two],
  ['4 threads', () => four],
] as const)('%s', (_label, rt) => {
  describe.each(
    caseGrid(1)
      .filter((c) => c.tokens > 0)
      .map((c) => [c.name, c] as const),
  )('%s', (_name, c) => {
    it.each(PLACES.map((p) => [p.join(' and '), p] as const))(
      '%s in host arrays: the reference, and ordinary arrays bit for bit',
      async (_p, place) => {
        const data = makeCase(c)
        const layer = rt().createLayer(data.options)
        const hosts: HostArray[] = []
        try {
          for (const [slot, ad] of data.adapters) layer.setAdapter(slot, ad)
          const plain = new Float32Array(data.y)
          await layer.apply(data.x, plain, data.ids, { adaptersPerToken: c.adaptersPerToken })
          const hx = place.includes('x' as never) ? rt().hostArray(data.x.length) : null
          const hy = place.includes('y' as never) ? rt().hostArray(data.y.length) : null
          for (const h of [hx, hy]) if (h) hosts.push(h)
          hx?.array.set(data.x)
          hy?.array.set(data.y)
          const y = hy ? hy.array : new Float32Array(data.y)
          await layer.apply(hx ? hx.array : data.x, y, data.ids, { adaptersPerToken: c.adaptersPerToken })
          const got = hy ? hy.array : y
          const mismatch = plain.findIndex((v, i) => !Object.is(v, got[i]))
          expect(mismatch, mismatch < 0 ? '' : `y[${mismatch}]: ordinary ${plain[mismatch]}, host array ${got[mismatch]}`).toBe(-1)
          expectDelta(got, data.y, sgmv(data.ref, data.x, data.ids, c.adaptersPerToken), TOLERANCE[c.dtype], c.name)
          expectUntouchedRows(got, data.y, data.ids, c.adaptersPerToken, data.y.length / c.tokens)
          if (hx) expect(Array.from(hx.array.subarray(0, 64))).toEqual(Array.from(data.x.subarray(0, 64))) // x is only read
        } finally {
          for (const h of hosts) h.release()
          layer.dispose()
        }
      },
    )
  })

  it('copies nothing: the work area holds no x or y', async () => {
    const r = await createRuntime({ backend: 'wasm' })
    try {
      const T = 64,
        inF = 1024,
        out = 512
      const layer = r.createLayer({ inFeatures: inF, outFeatures: out, maxAdapters: 1, maxRank: 4 })
      layer.setAdapter(0, { rank: 4, scale: 1, A: new Float32Array(4 * inF).fill(0.5), B: new Float32Array(out * 4).fill(0.25) })
      const hx = r.hostArray(T * inF),
        hy = r.hostArray(T * out)
      hx.array.fill(1)
      await layer.apply(hx.array, hy.array, new Int32Array(T))
      expect(hy.array[0]).toBe(inF * 0.5 * 0.25 * 4)
      expect(wasmOf(r).hostMemory!.scratchBytes).toBeLessThan(T * out * 4)
    } finally {
      r.dispose()
    }
  })

  it('a subarray of a host array (fewer tokens) is used in place', async () => {
    const layer = rt().createLayer({ inFeatures: 8, outFeatures: 4, maxAdapters: 1, maxRank: 1 })
    layer.setAdapter(0, { rank: 1, scale: 2, A: new Float32Array(8).fill(1), B: new Float32Array(4).fill(1) })
    const hx = rt().hostArray(8 * 8),
      hy = rt().hostArray(8 * 4)
    try {
      hx.array.fill(1)
      await layer.apply(hx.array.subarray(8, 24), hy.array.subarray(4, 12), Int32Array.of(0, -1))
      expect(Array.from(hy.array.subarray(0, 16))).toEqual([0, 0, 0, 0, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0])
    } finally {
      hx.release()
      hy.release()
      layer.dispose()
    }
  })
})

describe('host array views and memory growth', () => {
  it('one thread: a view kept across a grow is detached and refused; `array` read again holds the values', async () => {
    const r = await createRuntime({ backend: 'wasm' })
    try {
      const layer = r.createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 })
      layer.setAdapter(0, { rank: 1, scale: 1, A: new Float32Array(4).fill(1), B: new Float32Array(4).fill(1) })
      const hx = r.hostArray(4),
        hy = r.hostArray(4)
      const staleX = hx.array
      staleX.set([1, 2, 3, 4])
      const big = r.hostArray(staleX.buffer.byteLength / 4) // more than the whole memory: it grows
      expect(staleX.length).toBe(0)
      await expectLoraError(() => layer.apply(staleX, hy.array, Int32Array.of(0)), 'SHAPE_MISMATCH', ['x', 'detached'])
      expect(Array.from(hx.array)).toEqual([1, 2, 3, 4])
      await layer.apply(hx.array, hy.array, Int32Array.of(0))
      expect(Array.from(hy.array)).toEqual([10, 10, 10, 10])
      hx.release()
      expect(() => hx.array).toThrow(/released/)
      hy.release()
      big.release()
    } finally {
      r.dispose()
    }
  })

  it('threads: the memory is shared, so a view kept across a grow still works in place', async () => {
    const layer = two.createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 })
    const hx = two.hostArray(4),
      hy = two.hostArray(4)
    let big: HostArray | null = null
    try {
      layer.setAdapter(0, { rank: 1, scale: 1, A: new Float32Array(4).fill(1), B: new Float32Array(4).fill(1) })
      const x = hx.array,
        y = hy.array
      x.set([1, 2, 3, 4])
      big = two.hostArray(x.buffer.byteLength / 4) // more than the whole memory: it grows
      await layer.apply(x, y, Int32Array.of(0))
      expect(Array.from(y)).toEqual([10, 10, 10, 10])
      expect(y.buffer).not.toBe(hy.array.buffer) // the memory did grow
    } finally {
      hx.release()
      hy.release()
      layer.dispose()
      big?.release()
    }
  })

  it.each([
    ['1 thread', () => single],
    ['2 threads', () => two],
  ] as const)('%s: a view of the wasm memory outside host arrays, or x overlapping y, is refused and y is untouched', async (_l, rt) => {
    const layer = rt().createLayer({ inFeatures: 4, outFeatures: 4, maxAdapters: 1, maxRank: 1 })
    const h = rt().hostArray(8)
    try {
      layer.setAdapter(0, { rank: 1, scale: 1, A: new Float32Array(4).fill(1), B: new Float32Array(4).fill(1) })
      const foreign = new Float32Array(h.array.buffer, 16, 4)
      const y = new Float32Array(4).fill(7)
      await expectLoraError(() => layer.apply(foreign, y, Int32Array.of(0)), 'INVALID_ARGUMENT', ['x', 'outside every HostArray'])
      h.array.fill(3)
      await expectLoraError(() => layer.apply(h.array.subarray(0, 4), h.array.subarray(2, 6), Int32Array.of(0)), 'INVALID_ARGUMENT', [
        'overlap',
      ])
      expect(Array.from(y)).toEqual([7, 7, 7, 7])
      expect(Array.from(h.array)).toEqual([3, 3, 3, 3, 3, 3, 3, 3])
    } finally {
      h.release()
      layer.dispose()
    }
  })

  it('rejects a bad length', async () => {
    for (const n of [1.5, 'many']) await expectLoraError(() => single.hostArray(n as never), 'INVALID_ARGUMENT', ['length'])
    await expectLoraError(() => single.hostArray(-1), 'OUT_OF_RANGE', ['length'])
  })
})
