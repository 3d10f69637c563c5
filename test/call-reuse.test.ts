/**
 * A call on GPU buffers repeated with the same batch reuses the last call's metadata and bindings
 * (nothing built or written). These tests mix repeated, changed and weighted batches, apply and
 * encode, and an adapter replaced between two equal calls: y must always receive exactly the
 * deltas of the calls made, with the weights as they were at each call. And the metadata ring
 * says a region is intact only until later regions cover it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import { MetaRing } from '../src/webgpu/shared.js'
import { expectDelta } from './compare.js'
import { download, FULL, setupCase, upload } from './gpu-buffers.js'
import { type Case, makeCase } from './grid.js'
import { has } from './needs.js'
import { type RefLayer, sgmv } from './reference.js'

const gpuHere = await has('webgpu')
const CASE: Case = {
  name: 'reuse',
  seed: 91,
  inFeatures: 40,
  sliceWidths: [24, 8, 12],
  slots: 4,
  rank: 8,
  tokens: 6,
  pattern: 'uniform',
  dtype: 'f32',
  adaptersPerToken: 1,
}
/** Several deltas add up in y: each addition rounds once (1e-5 of one delta is the single-call tolerance). */
const TOL = 1e-4

function add(into: Float64Array, d: Float64Array, times = 1): void {
  for (let i = 0; i < d.length; i++) into[i] += times * d[i]
}

describe.runIf(gpuHere).each(['software', 'discrete'] as const)('repeated calls on GPU buffers, %s kernels', (gpuKernels) => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'webgpu', gpuKernels })
    expect(rt.device, `${rt.webgpuUnavailableReason}`).not.toBeNull()
  })
  afterAll(() => rt?.dispose())

  it('same batch again (same and equal ids), another batch, encode, weights, a replaced adapter: y gets every delta', async (ctx) => {
    const { device, d, layer } = setupCase(rt, CASE, ctx)
    const xb = upload(device, d.x, FULL())
    const yb = upload(device, d.y, FULL())
    const a = d.ids
    const b = Int32Array.from(a, (id) => (id < 0 ? -1 : (id + 1) % CASE.slots)).map((id) => (d.adapters.has(id) ? id : -1))
    const w = Float32Array.from(a, (_, t) => 0.5 + t)
    const total = new Float64Array(d.y.length)
    const dA = sgmv(d.ref, d.x, a)
    await layer.apply(xb, yb, a)
    await layer.apply(xb, yb, a) // the same ids array
    await layer.apply(xb, yb, a.slice()) // equal ids, another array
    add(total, dA, 3)
    await layer.apply(xb, yb, b)
    add(total, sgmv(d.ref, d.x, b))
    await layer.apply(xb, yb, a)
    const enc = device.createCommandEncoder()
    layer.encode(enc, xb, yb, a)
    layer.encode(enc, xb, yb, a.slice())
    device.queue.submit([enc.finish()])
    add(total, dA, 3)
    await layer.apply(xb, yb, a, { weights: w })
    await layer.apply(xb, yb, a, { weights: Float32Array.from(w, (v) => 2 * v) })
    add(total, sgmv(d.ref, d.x, a, 1, w), 3)
    // a slot of a low rank gets an adapter of the largest rank between two equal calls (the
    // ranks of the slots used choose the kernels)
    const [low] = [...d.adapters].find(([, v]) => v.rank < CASE.rank)!
    const one = new Int32Array(CASE.tokens).fill(low)
    const other = makeCase({ ...CASE, seed: 92 })
    const [slot2, adapter2] = [...other.adapters].find(([, v]) => v.rank === CASE.rank)!
    await layer.apply(xb, yb, one)
    add(total, sgmv(d.ref, d.x, one))
    layer.setAdapter(low, adapter2)
    const ref2: RefLayer = { ...d.ref, adapters: d.ref.adapters.map((v, s) => (s === low ? other.ref.adapters[slot2] : v)) }
    await layer.apply(xb, yb, one)
    add(total, sgmv(ref2, d.x, one))
    expectDelta((await download(device, yb)).subarray(0, d.y.length), d.y, total, TOL, 'after every call')
    for (const buf of [xb, yb]) buf.destroy()
    layer.dispose()
  })

  it('the same batch on other buffers writes those buffers', async (ctx) => {
    const { device, d, layer } = setupCase(rt, CASE, ctx)
    const xb = upload(device, d.x, FULL())
    const y1 = upload(device, d.y, FULL())
    const y2 = upload(device, d.y, FULL())
    await layer.apply(xb, y1, d.ids)
    await layer.apply(xb, y2, d.ids)
    await layer.apply(xb, y2, d.ids)
    const delta = sgmv(d.ref, d.x, d.ids)
    expectDelta((await download(device, y1)).subarray(0, d.y.length), d.y, delta, TOL, 'y1')
    const twice = new Float64Array(delta.length)
    add(twice, delta, 2)
    expectDelta((await download(device, y2)).subarray(0, d.y.length), d.y, twice, TOL, 'y2')
    for (const buf of [xb, y1, y2]) buf.destroy()
    layer.dispose()
  })
})

describe.runIf(gpuHere).each(['software', 'discrete'] as const)('the same batch on alternating buffers, %s kernels', (gpuKernels) => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'webgpu', gpuKernels })
    expect(rt.device, `${rt.webgpuUnavailableReason}`).not.toBeNull()
  })
  afterAll(() => rt?.dispose())

  it('apply and encode alternating two x and two y (one batch, bound anew each call): each y gets the deltas of its calls', async (ctx) => {
    const { device, d, layer } = setupCase(rt, CASE, ctx)
    const x2 = Float32Array.from(d.x, (v, i) => (i % 3) - 0.5 * v)
    const x1b = upload(device, d.x, FULL())
    const x2b = upload(device, x2, FULL())
    const y1 = upload(device, d.y, FULL())
    const y2 = upload(device, d.y, FULL())
    const d1 = sgmv(d.ref, d.x, d.ids)
    const d2 = sgmv(d.ref, x2, d.ids)
    await layer.apply(x1b, y1, d.ids)
    await layer.apply(x2b, y2, d.ids)
    await layer.apply(x1b, y2, d.ids)
    await layer.apply(x2b, y1, d.ids)
    const enc = device.createCommandEncoder()
    layer.encode(enc, x2b, y2, d.ids)
    layer.encode(enc, x1b, y1, d.ids)
    layer.encode(enc, x2b, y2, d.ids)
    device.queue.submit([enc.finish()])
    const want1 = new Float64Array(d.y.length)
    add(want1, d1, 2)
    add(want1, d2)
    const want2 = new Float64Array(d.y.length)
    add(want2, d1)
    add(want2, d2, 3)
    expectDelta((await download(device, y1)).subarray(0, d.y.length), d.y, want1, TOL, 'y1')
    expectDelta((await download(device, y2)).subarray(0, d.y.length), d.y, want2, TOL, 'y2')
    for (const buf of [x1b, x2b, y1, y2]) buf.destroy()
    layer.dispose()
  })

  it('weighted calls share one weigh bind group at other offsets, also with more weights than the metadata window (64 KiB)', async (ctx) => {
    const small: Case = { ...CASE, inFeatures: 8, sliceWidths: [6, 4], rank: 4, adaptersPerToken: 2, weighted: true }
    for (const tokens of [5, 9000]) {
      const { device, d, layer } = setupCase(rt, { ...small, tokens }, ctx)
      const xb = upload(device, d.x, FULL())
      const yb = upload(device, d.y, FULL())
      const w2 = Float32Array.from(d.weights!, (v) => 1.5 - v)
      await layer.apply(xb, yb, d.ids, { adaptersPerToken: 2, weights: d.weights })
      await layer.apply(xb, yb, d.ids, { adaptersPerToken: 2, weights: w2 })
      const want = new Float64Array(d.y.length)
      add(want, sgmv(d.ref, d.x, d.ids, 2, d.weights))
      add(want, sgmv(d.ref, d.x, d.ids, 2, w2))
      expectDelta((await download(device, yb)).subarray(0, d.y.length), d.y, want, TOL, `T = ${tokens}`)
      for (const buf of [xb, yb]) buf.destroy()
      layer.dispose()
    }
  })

  it("layers of one shape and other adapters, one batch (one shared metadata region), apply and encode: each y gets its own layer's deltas", async (ctx) => {
    const first = setupCase(rt, CASE, ctx)
    const second = setupCase(rt, { ...CASE, seed: 93 }, ctx)
    const { device, d } = first
    const xb = upload(device, d.x, FULL())
    const y1 = upload(device, d.y, FULL())
    const y2 = upload(device, d.y, FULL())
    const ids = d.ids.map((id) => (id >= 0 && second.d.adapters.has(id) ? id : -1))
    await first.layer.apply(xb, y1, ids)
    await second.layer.apply(xb, y2, ids)
    const enc = device.createCommandEncoder()
    second.layer.encode(enc, xb, y2, ids)
    first.layer.encode(enc, xb, y1, ids)
    device.queue.submit([enc.finish()])
    const want1 = new Float64Array(d.y.length)
    add(want1, sgmv(d.ref, d.x, ids), 2)
    const want2 = new Float64Array(d.y.length)
    add(want2, sgmv(second.d.ref, d.x, ids), 2)
    expectDelta((await download(device, y1)).subarray(0, d.y.length), d.y, want1, TOL, 'y of the first layer')
    expectDelta((await download(device, y2)).subarray(0, d.y.length), d.y, want2, TOL, 'y of the second layer')
    for (const buf of [xb, y1, y2]) buf.destroy()
    first.layer.dispose()
    second.layer.dispose()
  })
})

describe('the metadata ring', () => {
  /** A device that only creates buffers and records writes (the ring needs nothing else). */
  function fakeDevice(): GPUDevice {
    const queue = { writeBuffer: () => {} }
    return { queue, createBuffer: (d: GPUBufferDescriptor) => ({ size: d.size, destroy() {} }) } as unknown as GPUDevice
  }

  it('a region stays intact until the ring wraps onto it, and not past a replaced buffer', () => {
    const ring = new MetaRing(fakeDevice(), 1 << 30)
    const first = ring.region(ring.take(256, 1024))
    const second = ring.region(ring.take(256, 1024))
    expect(ring.intact(first) && ring.intact(second)).toBe(true)
    // fill the rest of the 4 MiB ring: the next lap starts over the first region
    let wrapped = 0
    let last = second
    for (let i = 0; i < 1 << 13 && !wrapped; i++) {
      const r = ring.region(ring.take(256, 1024))
      if (r.lap !== last.lap) wrapped = i
      last = r
    }
    expect(wrapped).toBeGreaterThan(0)
    expect(last.start).toBe(0) // the new lap's first region covers the first one
    expect(ring.intact(first)).toBe(false)
    expect(ring.intact(second)).toBe(true) // not reached yet
    ring.take(256, 1024)
    expect(ring.intact(second)).toBe(false)
    expect(ring.intact(last)).toBe(true)
    // metadata larger than the window replaces the buffer: every older region is gone
    ring.take(256, ring.window * 2)
    expect(ring.intact(last)).toBe(false)
  })

  it('place: equal words share one region (one write) while it is recent; other words, or half a ring later, a new one', () => {
    let writes = 0
    const device = fakeDevice()
    ;(device.queue as unknown as { writeBuffer: () => void }).writeBuffer = () => void writes++
    const ring = new MetaRing(device, 1 << 30)
    const stageWords = (seed: number): void => {
      const w = ring.stage(256, 64)
      w.fill(0, 0, 128)
      for (let i = 0; i < 80; i++) w[i] = seed * 1000 + i
    }
    stageWords(1)
    const a = ring.place(256, 64)
    stageWords(2)
    const b = ring.place(256, 64)
    stageWords(1)
    const a2 = ring.place(256, 64)
    expect(writes).toBe(2)
    expect([a2.params, a2.callMeta]).toEqual([a.params, a.callMeta])
    expect(b.params).not.toBe(a.params)
    // other head bytes over the same words: another region
    stageWords(1)
    expect(ring.place(512, 0).params).not.toBe(a.params)
    expect(writes).toBe(3)
    // past half the ring (4 MiB), equal words are written again
    for (let i = 0; i < 1 << 12; i++) ring.take(256, 512)
    stageWords(1)
    const a3 = ring.place(256, 64)
    expect(writes).toBe(4)
    expect(a3.params).not.toBe(a.params)
    expect(ring.intact(a3.region)).toBe(true)
  })
})
