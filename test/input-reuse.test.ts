/**
 * The input contract: once apply() has returned its promise the caller may overwrite x and ids
 * (host arrays are read before it returns; GPUBuffers by work queued before it returns), and y
 * holds the result when the promise resolves. Every test overwrites x and ids right after the
 * call, before awaiting it, and checks the result against the float64 reference on the original
 * inputs: on single-threaded wasm, threaded wasm (idle and with a busy queue), WebGPU on host
 * arrays and on GPU buffers (first call, which creates the pipelines, and a later one), and the
 * adapter pool's rt.apply.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Layer, type Runtime } from '../src/index.js'
import { expectDelta, TOLERANCE } from './compare.js'
import { FULL, download, upload } from './gpu-buffers.js'
import { has } from './needs.js'
import { writeSafetensors } from '../src/peft/safetensors.js'
import { peftConfig } from './peft-helpers.js'
import { Rng } from './random.js'
import { sgmv, type RefAdapter } from './reference.js'

const gpuHere = await has('webgpu', 'skipped its WebGPU part')

const IN = 96,
  OUT = [64, 40],
  SLOTS = 3,
  T = 21

interface Batch {
  x: Float32Array
  y0: Float32Array
  ids: Int32Array
  delta: Float64Array
}

function makeLayer(rt: Runtime, seed: number): { layer: Layer; batch: () => Batch } {
  const rng = new Rng(seed)
  const layer = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: SLOTS, maxRank: 8 })
  const adapters: RefAdapter[] = []
  for (let s = 0; s < SLOTS; s++) {
    const rank = 3 + 2 * s
    const a = { rank, scale: 0.5 + s, A: OUT.map(() => rng.array(rank * IN, 0.2)), B: OUT.map((n) => rng.array(n * rank, 0.2)) }
    layer.setAdapter(s, a)
    adapters.push(a)
  }
  const batch = (): Batch => {
    const x = rng.array(T * IN)
    const ids = Int32Array.from({ length: T }, (_, t) => (t % 5 === 4 ? -1 : (t * 7) % SLOTS))
    const y0 = rng.array(T * (OUT[0] + OUT[1]))
    return { x, y0, ids, delta: sgmv({ inFeatures: IN, sliceWidths: OUT, adapters }, x, ids) }
  }
  return { layer, batch }
}

/** What a caller reusing its buffers does: new values in x, other slots in ids. */
function overwrite(x: Float32Array, ids: Int32Array): void {
  x.fill(0)
  for (let t = 0; t < ids.length; t++) ids[t] = ids[t] < 0 ? 0 : -1
}

describe('host arrays may be reused once apply() has returned', () => {
  it('single-threaded wasm', async () => {
    const rt = await createRuntime({ backend: 'wasm' })
    try {
      const { layer, batch } = makeLayer(rt, 1)
      const b = batch()
      const y = b.y0.slice()
      const done = layer.apply(b.x, y, b.ids)
      overwrite(b.x, b.ids)
      await done
      expectDelta(y, b.y0, b.delta, TOLERANCE.f32, 'wasm')
    } finally {
      rt.dispose()
    }
  })

  it('threaded wasm, idle and with calls queued behind a running one', async () => {
    const rt = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
    try {
      if (process.env.CI === 'true') expect(rt.threads, `CI needs wasm threads: ${rt.threadsUnavailableReason}`).toBe(2)
      const { layer, batch } = makeLayer(rt, 2)
      const batches = [batch(), batch(), batch()]
      const ys = batches.map((b) => b.y0.slice())
      // the first call finds the queue idle, the next two wait behind it
      const calls = batches.map((b, i) => {
        const p = layer.apply(b.x, ys[i], b.ids)
        overwrite(b.x, b.ids)
        return p
      })
      await Promise.all(calls)
      batches.forEach((b, i) => expectDelta(ys[i], b.y0, b.delta, TOLERANCE.f32, `threaded call ${i}`))
    } finally {
      rt.dispose()
    }
  })

  it('the adapter pool (rt.apply uploading an evicted adapter first)', async () => {
    const rt = await createRuntime({ backend: 'wasm', adapterSlots: 1 })
    try {
      const rng = new Rng(3)
      const module = 'model.layers.0.self_attn.q_proj'
      const inF = 40,
        outF = 24,
        r = 4,
        n = 5
      const A = rng.array(r * inF, 0.3),
        B = rng.array(outF * r, 0.3)
      const weights = writeSafetensors(
        new Map([
          [`base_model.model.${module}.lora_A.weight`, { dtype: 'F32' as const, shape: [r, inF], data: A }],
          [`base_model.model.${module}.lora_B.weight`, { dtype: 'F32' as const, shape: [outF, r], data: B }],
        ]),
        { format: 'pt' },
      )
      const config = peftConfig({ r, lora_alpha: 8, target_modules: ['q_proj'] })
      await rt.loadAdapter('a', { config, weights })
      await rt.loadAdapter('b', { config, weights }) // takes the one slot: 'a' is uploaded again by the call
      const x = rng.array(n * inF)
      const y0 = rng.array(n * outF)
      const y = y0.slice()
      const names = ['a', null, 'a', 'a', null]
      const delta = sgmv(
        { inFeatures: inF, sliceWidths: [outF], adapters: [{ rank: r, scale: 2, A: [A], B: [B] }] },
        x,
        Int32Array.from(names, (s) => (s ? 0 : -1)),
      )
      expect(rt.stats().evictions).toBe(1)
      const done = rt.apply(module, x, y, names)
      x.fill(0)
      names.fill('a')
      await done
      expectDelta(y, y0, delta, TOLERANCE.f32, 'rt.apply')
    } finally {
      rt.dispose()
    }
  })
})

describe.runIf(gpuHere)('WebGPU: inputs may be reused once apply() has returned', () => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'webgpu' })
  })
  afterAll(() => rt?.dispose())

  it('host x and ids: the first call (pipelines created) and a later one', async () => {
    const { layer, batch } = makeLayer(rt, 5)
    for (const label of ['first call', 'second call']) {
      const b = batch()
      const y = b.y0.slice()
      const done = layer.apply(b.x, y, b.ids, { backend: 'webgpu' })
      overwrite(b.x, b.ids)
      await done
      expectDelta(y, b.y0, b.delta, TOLERANCE.f32, `webgpu ${label}`)
    }
  })

  it('x and y as GPUBuffers, x rewritten on the queue right after the call', async () => {
    const device = rt.device!
    // f16 weights: pipelines no other test of this file created, so the first call creates them
    const { layer: f32Layer, batch } = makeLayer(rt, 6)
    f32Layer.dispose()
    const layer = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: SLOTS, maxRank: 8, weightDtype: 'f16' })
    const rng = new Rng(7)
    const adapters: RefAdapter[] = []
    for (let s = 0; s < SLOTS; s++) {
      // values exact in f16 (multiples of 2^-8 below 1): the reference needs no rounding
      const q = (n: number) => Float32Array.from(rng.array(n, 0.5), (v) => Math.round(v * 256) / 256)
      const a = { rank: 2 + s, scale: 1.5, A: OUT.map(() => q((2 + s) * IN)), B: OUT.map((n) => q(n * (2 + s))) }
      layer.setAdapter(s, a)
      adapters.push(a)
    }
    for (const label of ['first call', 'second call']) {
      const b = batch()
      const delta = sgmv({ inFeatures: IN, sliceWidths: OUT, adapters }, b.x, b.ids)
      const xBuf = upload(device, b.x, FULL())
      const yBuf = upload(device, b.y0, FULL())
      const done = layer.apply(xBuf, yBuf, b.ids, { backend: 'webgpu' })
      device.queue.writeBuffer(xBuf, 0, new Float32Array(T * IN))
      overwrite(b.x, b.ids)
      await done
      expectDelta(await download(device, yBuf), b.y0, delta, TOLERANCE.f16, `GPU-resident ${label}`)
      xBuf.destroy()
      yBuf.destroy()
    }
  })

  it('ids as a GPUBuffer with host x, both rewritten right after the call', async () => {
    const device = rt.device!
    const { layer, batch } = makeLayer(rt, 8)
    const b = batch()
    const y = b.y0.slice()
    const idsBuf = upload(device, b.ids, FULL())
    const done = layer.apply(b.x, y, idsBuf, { tokens: T, backend: 'webgpu' })
    device.queue.writeBuffer(idsBuf, 0, new Int32Array(T).fill(-1))
    overwrite(b.x, b.ids)
    await done
    expectDelta(y, b.y0, b.delta, TOLERANCE.f32, 'GPU ids')
    idsBuf.destroy()
  })
})
