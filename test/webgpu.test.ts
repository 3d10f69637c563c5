import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LoraError } from '../src/errors.js'
import { buildSegments } from '../src/metadata.js'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import { LossWatch } from '../src/webgpu/device.js'
import { PipelineCache } from '../src/webgpu/pipelines.js'
import { planCall } from '../src/webgpu/call.js'
import { kernelLayout } from '../src/webgpu/shared.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import { materialise, type Case } from './grid.js'
import { expectDelta, expectUntouchedRows, TOLERANCE } from './compare.js'
import { has } from './needs.js'
import { sgmv } from './reference.js'

const gpuHere = await has('webgpu')
let backend: WebGpuBackend | undefined
beforeAll(async () => {
  if (gpuHere) backend = await createWebGpuBackend()
})
afterAll(() => backend?.dispose())

const gpu = (): WebGpuBackend => backend!
/** GPU instances kept referenced while their devices are used (a collected instance aborts inside Dawn, src/webgpu/device.ts). */
const instances: GPU[] = []

/**
 * A backend on a device with WebGPU's default limits: 128 MiB per storage binding and 256 MiB per
 * buffer on every adapter (createWebGpuBackend asks for the adapter's own, 2 GiB on some GPUs), so
 * the slot-group and binding-size tests mean the same on lavapipe and on a large GPU.
 */
async function defaultLimitsBackend(): Promise<{ backend: WebGpuBackend; device: GPUDevice }> {
  const { create } = (await import('webgpu')) as { create: (flags: string[]) => GPU }
  const instance = create([])
  instances.push(instance)
  const adapter = await instance.requestAdapter()
  const device = await adapter!.requestDevice() // no features, default limits
  expect(device.limits.maxStorageBufferBindingSize).toBe(128 * 2 ** 20)
  return { backend: await createWebGpuBackend({ device }), device }
}

async function runCase(c: Case, chunkSize = 64, on: WebGpuBackend = gpu()): Promise<void> {
  const d = materialise(c)
  const layer = on.createLayer(d.spec)
  try {
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    const plan = buildSegments(d.ids, c.adaptersPerToken, c.slots, chunkSize)
    const y = new Float32Array(d.y)
    await layer.apply(d.x, y, plan)
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids, c.adaptersPerToken), TOLERANCE[c.dtype], c.name)
    expectUntouchedRows(y, d.y, d.ids, c.adaptersPerToken, d.spec.outFeatures)
  } finally {
    layer.dispose()
  }
}

describe.runIf(gpuHere)('webgpu backend', () => {
  it('finds an adapter', () => {
    expect(gpu().name).toBe('webgpu')
    expect(gpu().lost).toBe(false)
    expect(typeof gpu().isSoftware).toBe('boolean')
  })

  // The shared grid (test/grid.ts) runs through the public API in test/sgmv-webgpu.test.ts.

  it('short chunks: one slot cut into many segments', async () => {
    await runCase(
      {
        name: 'chunk 3',
        seed: 7,
        inFeatures: 65,
        sliceWidths: [33, 9],
        rank: 5,
        tokens: 40,
        slots: 3,
        pattern: 'skewed',
        dtype: 'f32',
        adaptersPerToken: 2,
      },
      3,
    )
    await runCase(
      {
        name: 'chunk 5',
        seed: 8,
        inFeatures: 130,
        sliceWidths: [70],
        rank: 17,
        tokens: 64,
        slots: 2,
        pattern: 'identical',
        dtype: 'bf16',
        adaptersPerToken: 1,
      },
      5,
    )
  })

  it('segment-major expand: vec4 kernel when every slice width % 4 == 0, pairs otherwise, both tile sizes', async () => {
    const cases: [Case, string][] = [
      // 16-entry tiles (segments of 40 = 16 + 16 + 8), unequal slices
      [
        {
          name: 'quads, long segments',
          seed: 31,
          inFeatures: 37,
          sliceWidths: [48, 16, 20],
          rank: 16,
          tokens: 40,
          slots: 2,
          pattern: 'identical',
          dtype: 'f32',
          adaptersPerToken: 1,
        },
        'expand_vec4',
      ],
      [
        {
          name: 'quads, long segments, -1 tokens, bf16',
          seed: 32,
          inFeatures: 64,
          sliceWidths: [132],
          rank: 7,
          tokens: 70,
          slots: 3,
          pattern: 'some-none',
          dtype: 'bf16',
          adaptersPerToken: 1,
        },
        'expand_vec4',
      ],
      [
        {
          name: 'pairs, long segments',
          seed: 33,
          inFeatures: 37,
          sliceWidths: [50, 6],
          rank: 16,
          tokens: 40,
          slots: 2,
          pattern: 'identical',
          dtype: 'f32',
          adaptersPerToken: 1,
        },
        'expand',
      ],
      [
        {
          name: 'pairs, long segments, odd width, f16',
          seed: 34,
          inFeatures: 9,
          sliceWidths: [44, 13],
          rank: 1,
          tokens: 33,
          slots: 1,
          pattern: 'identical',
          dtype: 'f16',
          adaptersPerToken: 1,
        },
        'expand',
      ],
      // decode tiles (one entry per segment)
      [
        {
          name: 'quads, decode',
          seed: 35,
          inFeatures: 64,
          sliceWidths: [1024, 4],
          rank: 16,
          tokens: 4,
          slots: 4,
          pattern: 'distinct',
          dtype: 'f32',
          adaptersPerToken: 1,
        },
        'expand_vec4',
      ],
      [
        {
          name: 'pairs, decode',
          seed: 36,
          inFeatures: 64,
          sliceWidths: [1022],
          rank: 16,
          tokens: 4,
          slots: 4,
          pattern: 'distinct',
          dtype: 'f32',
          adaptersPerToken: 1,
        },
        'expand',
      ],
    ]
    for (const [c, shader] of cases) {
      const d = materialise(c)
      const layer = gpu().createLayer(d.spec) as GpuLayer
      d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
      const cp = planCall(layer.ctx, buildSegments(d.ids, 1, c.slots, 64))
      layer.dispose()
      expect(cp.specs[1].shader, c.name).toBe(shader)
      await runCase(c)
    }
  })

  it('a device passed in, without shader-f16: f16 weights packed two per u32', async () => {
    const { backend: other, device } = await defaultLimitsBackend() // no features: f16 goes through unpack2x16float
    expect(device.features.has('shader-f16')).toBe(false)
    expect(other.device).toBe(device)
    const base = { seed: 21, inFeatures: 129, sliceWidths: [70, 17, 20], rank: 9, tokens: 12, slots: 4, pattern: 'zipf' as const }
    await runCase({ ...base, name: 'f16 packed', dtype: 'f16', adaptersPerToken: 1 }, 64, other)
    await runCase({ ...base, name: 'f16 packed K2', dtype: 'f16', adaptersPerToken: 2 }, 64, other)
    other.dispose()
    expect(other.lost).toBe(false) // a device passed in is not destroyed by dispose()
    device.destroy()
  })

  it('concurrent applies on one layer each get their own result', async () => {
    const c: Case = {
      name: 'concurrent',
      seed: 31,
      inFeatures: 200,
      sliceWidths: [96],
      rank: 12,
      tokens: 7,
      slots: 5,
      pattern: 'uniform',
      dtype: 'bf16',
      adaptersPerToken: 1,
    }
    const d = materialise(c)
    const layer = gpu().createLayer(d.spec)
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    const runs = Array.from({ length: 8 }, (_, i) => {
      const ids = d.ids.map((v) => (v + i) % c.slots)
      return { ids, y: new Float32Array(d.y), plan: buildSegments(ids, 1, c.slots) }
    })
    await Promise.all(runs.map((r) => layer.apply(d.x, r.y, r.plan)))
    for (const r of runs) expectDelta(r.y, d.y, sgmv(d.ref, d.x, r.ids), TOLERANCE.bf16, 'concurrent')
    layer.dispose()
  })

  it("x and y in a SharedArrayBuffer (a threaded runtime's host arrays) are uploaded from a copy", async () => {
    const c: Case = {
      name: 'shared',
      seed: 32,
      inFeatures: 64,
      sliceWidths: [40, 24],
      rank: 4,
      tokens: 5,
      slots: 2,
      pattern: 'uniform',
      dtype: 'f32',
      adaptersPerToken: 1,
    }
    const d = materialise(c)
    const layer = gpu().createLayer(d.spec)
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    const shared = (v: Float32Array) => {
      const s = new Float32Array(new SharedArrayBuffer(v.byteLength + 64), 32, v.length)
      s.set(v)
      return s
    }
    const x = shared(d.x),
      y = shared(d.y)
    await layer.apply(x, y, buildSegments(d.ids, 1, c.slots))
    expectDelta(y, d.y, sgmv(d.ref, d.x, d.ids), TOLERANCE.f32, 'shared')
    layer.dispose()
  })

  it('all ids -1 and cleared slots leave y untouched', async () => {
    const c: Case = {
      name: 'all -1',
      seed: 3,
      inFeatures: 64,
      sliceWidths: [32],
      rank: 8,
      tokens: 5,
      slots: 2,
      pattern: 'uniform',
      dtype: 'f32',
      adaptersPerToken: 1,
    }
    const d = materialise(c)
    const layer = gpu().createLayer(d.spec)
    layer.setAdapter(0, d.adapters[0])
    const y = new Float32Array(d.y)
    await layer.apply(d.x, y, buildSegments(new Int32Array(5).fill(-1), 1, 2))
    expect(y).toEqual(d.y)
    // replacing a slot's adapter by one of lower rank uses the new rank only (the old rows past
    // it stay in the buffer: a kernel reading maxRank or the old rank rows would add them)
    expect(d.adapters[1].rank).toBeLessThan(d.adapters[0].rank)
    layer.setAdapter(0, d.adapters[1])
    const ids = new Int32Array(5).fill(0)
    await layer.apply(d.x, y, buildSegments(ids, 1, 2))
    expectDelta(y, d.y, sgmv({ ...d.ref, adapters: [d.adapters[1]] }, d.x, ids), TOLERANCE.f32, 'replaced')
    layer.dispose()
  })

  it('GPU-resident x and y: updated on the GPU in queue order, no readback', async () => {
    const c: Case = {
      name: 'resident',
      seed: 11,
      inFeatures: 96,
      sliceWidths: [40, 12, 15],
      rank: 16,
      tokens: 9,
      slots: 4,
      pattern: 'some-none',
      dtype: 'bf16',
      adaptersPerToken: 2,
    }
    const d = materialise(c)
    const device = gpu().device
    const layer = gpu().createLayer(d.spec)
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC
    const xb = device.createBuffer({ size: d.x.byteLength, usage })
    const yb = device.createBuffer({ size: d.y.byteLength, usage })
    device.queue.writeBuffer(xb, 0, d.x as Float32Array<ArrayBuffer>)
    device.queue.writeBuffer(yb, 0, d.y as Float32Array<ArrayBuffer>)
    const plan = buildSegments(d.ids, 2, c.slots)
    await layer.apply(xb, yb, plan)
    await layer.apply(xb, yb, plan) // twice: the second sees the first's result (queue order)
    const read = device.createBuffer({ size: d.y.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    const enc = device.createCommandEncoder()
    enc.copyBufferToBuffer(yb, 0, read, 0, d.y.byteLength)
    device.queue.submit([enc.finish()])
    await read.mapAsync(GPUMapMode.READ)
    const y = new Float32Array(read.getMappedRange().slice(0))
    read.unmap()
    const delta = sgmv(d.ref, d.x, d.ids, 2).map((v) => 2 * v)
    expectDelta(y, d.y, delta, TOLERANCE.bf16, 'resident x2')
    expectUntouchedRows(y, d.y, d.ids, 2, d.spec.outFeatures)
    await expect(layer.apply(xb, device.createBuffer({ size: 16, usage }), plan)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' })
    for (const b of [xb, yb, read]) b.destroy()
    layer.dispose()
  })

  it('a shader that does not compile is GPU_ERROR, with the compiler message', async () => {
    const sources = {
      shrink: 'fn main( {',
      shrink_tile: '',
      shrink_gemm: '',
      fused_tile: '',
      expand: '',
      expand_vec4: '',
      expand_tile: '',
      expand_gemm: '',
      expand_multi: '',
      weigh: '',
      fold: '',
      gather: '',
      params: '',
    }
    const cache = new PipelineCache(gpu().device, sources, new LossWatch(gpu().device), kernelLayout(gpu().device).pipeline)
    const err = await cache.get({ shader: 'shrink', storage: 'f32', overrides: {} }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LoraError)
    expect(err).toMatchObject({ code: 'GPU_ERROR', message: expect.stringContaining('line 1') })
  })

  it('a slot too large for one storage binding is OUT_OF_MEMORY, not a GPU crash', async () => {
    const { backend: limited, device } = await defaultLimitsBackend()
    try {
      // one slot's A: 256 x 2^17 f32 = 128 MiB + its padding, past the 128 MiB binding
      const big = {
        inFeatures: (1 << 17) + 4,
        sliceWidths: [8],
        sliceOffsets: [0],
        outFeatures: 8,
        maxAdapters: 2,
        maxRank: 256,
        weightDtype: 'f32' as const,
      }
      expect(() => limited.createLayer(big)).toThrow(
        expect.objectContaining({ code: 'OUT_OF_MEMORY', message: expect.stringContaining(String(128 * 2 ** 20)) }),
      )
      // half of it fits
      const half = { ...big, maxRank: 128 }
      limited.createLayer(half).dispose()
    } finally {
      limited.dispose()
      device.destroy()
    }
  })

  it('slot groups: a stack larger than one binding is split, one dispatch per group used', async () => {
    const { backend: limited, device } = await defaultLimitsBackend()
    // one slot of A: 2 slices x 256 x 4096 f32 = 8 MiB, so 16 slots per 128 MiB binding; 17 slots
    // make two groups, slot 3 in the first (16 slots) and slot 16 alone in the second
    const c: Case = {
      name: 'groups',
      seed: 41,
      inFeatures: 4096,
      sliceWidths: [48, 20],
      rank: 6,
      tokens: 10,
      slots: 2,
      pattern: 'uniform',
      dtype: 'f32',
      adaptersPerToken: 1,
    }
    const d = materialise(c)
    const spec = { ...d.spec, maxAdapters: 17, maxRank: 256 }
    const layer = limited.createLayer(spec) as GpuLayer
    try {
      expect(layer.ctx.weights.groupSize).toBe(16)
      const [lo, hi] = [3, 16]
      const adapters: ((typeof d.adapters)[0] | undefined)[] = []
      adapters[lo] = d.adapters[0]
      adapters[hi] = d.adapters[1]
      layer.setAdapter(lo, d.adapters[0])
      layer.setAdapter(hi, d.adapters[1])
      expect(layer.ctx.weights.group(lo)).not.toBe(layer.ctx.weights.group(hi))
      const ref = { ...d.ref, adapters }
      for (const K of [1, 2]) {
        // K = 1: tokens alternate between the groups; K = 2: a token may use both, or one and -1
        const ids = new Int32Array(c.tokens * K).map((_, i) =>
          i % K === 0 ? (i % 3 === 0 ? hi : lo) : i % 4 === 1 ? -1 : i % 3 === 0 ? lo : hi,
        )
        for (let t = 0; t < c.tokens; t++) if (K === 2 && ids[2 * t] === ids[2 * t + 1]) ids[2 * t + 1] = -1
        expect(new Set(ids).has(lo) && new Set(ids).has(hi)).toBe(true)
        const y = new Float32Array(d.y)
        await layer.apply(d.x, y, buildSegments(ids, K, spec.maxAdapters))
        expectDelta(y, d.y, sgmv(ref, d.x, ids, K), TOLERANCE.f32, `groups K${K}`)
        expectUntouchedRows(y, d.y, ids, K, spec.outFeatures)
      }
    } finally {
      layer.dispose()
      limited.dispose()
      device.destroy()
    }
  })

  // last: destroys the device
  it('device loss: later calls throw DEVICE_LOST', async () => {
    const c: Case = {
      name: 'lost',
      seed: 5,
      inFeatures: 64,
      sliceWidths: [64],
      rank: 4,
      tokens: 4,
      slots: 2,
      pattern: 'uniform',
      dtype: 'f32',
      adaptersPerToken: 1,
    }
    const d = materialise(c)
    const layer = gpu().createLayer(d.spec)
    d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
    const plan = buildSegments(d.ids, 1, 2)
    const y = new Float32Array(d.y)
    const inFlight = layer.apply(d.x, y, plan).catch((e: unknown) => e)
    gpu().device.destroy()
    const first = await inFlight // either finished before the loss or failed with DEVICE_LOST
    if (first !== undefined) expect(first).toMatchObject({ code: 'DEVICE_LOST' })
    await new Promise((r) => setTimeout(r, 50))
    expect(gpu().lost).toBe(true)
    const err = await layer.apply(d.x, y, plan).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LoraError)
    expect((err as LoraError).code).toBe('DEVICE_LOST')
    expect(() => layer.setAdapter(0, d.adapters[0])).toThrow(expect.objectContaining({ code: 'DEVICE_LOST' }))
    expect(() => gpu().createLayer(d.spec)).toThrow(expect.objectContaining({ code: 'DEVICE_LOST' }))
  })
})
