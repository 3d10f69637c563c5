/**
 * The input contract: once apply() has returned its promise the caller may overwrite x, ids and
 * options.weights (host arrays are read before it returns; GPUBuffers by work queued before it
 * returns), and y holds the result when the promise resolves. Every test overwrites them right
 * after the call, before awaiting it, and checks the result against the float64 reference on the
 * original inputs: on single-threaded wasm, threaded wasm (idle and with a busy queue), WebGPU on
 * host arrays and on GPU buffers (first call, which creates the pipelines, and a later one), and
 * the adapter pool's rt.apply (names and { name, weight } tokens). Each backend runs one adapter
 * per token without weights and two per token with per-entry weights.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, type Layer, type Runtime, type TokenAdapters } from '../src/index.js'
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
  /** adaptersPerToken and the per-entry weights (undefined: K = 1, no weights). */
  K: number
  weights: Float32Array | undefined
  delta: Float64Array
  /** The apply options that pass K and the weights. */
  opts: { adaptersPerToken: number; weights?: Float32Array }
}

/** Both kinds of batch: one adapter per token, and two per token with per-entry weights. */
const KINDS = [
  { weighted: false, label: 'K = 1' },
  { weighted: true, label: 'K = 2, weights' },
] as const

function makeLayer(rt: Runtime, seed: number): { layer: Layer; batch: (weighted?: boolean) => Batch } {
  const rng = new Rng(seed)
  const layer = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: SLOTS, maxRank: 8 })
  const adapters: RefAdapter[] = []
  for (let s = 0; s < SLOTS; s++) {
    const rank = 3 + 2 * s
    const a = { rank, scale: 0.5 + s, A: OUT.map(() => rng.array(rank * IN, 0.2)), B: OUT.map((n) => rng.array(n * rank, 0.2)) }
    layer.setAdapter(s, a)
    adapters.push(a)
  }
  const batch = (weighted = false): Batch => {
    const K = weighted ? 2 : 1
    const x = rng.array(T * IN)
    const ids = Int32Array.from({ length: T * K }, (_, i) =>
      i % K === 0 ? (i % 5 === 4 ? -1 : (i * 7) % SLOTS) : i % 3 === 0 ? -1 : (i + 1) % SLOTS,
    )
    // weights away from 1 (and one negative): a kernel reading zeroed weights gives no delta
    const weights = weighted ? Float32Array.from(ids, (_, i) => (i % 4 === 3 ? -0.75 : 0.5 + (i % 7) * 0.25)) : undefined
    const y0 = rng.array(T * (OUT[0] + OUT[1]))
    const delta = sgmv({ inFeatures: IN, sliceWidths: OUT, adapters }, x, ids, K, weights)
    return { x, y0, ids, K, weights, delta, opts: weights ? { adaptersPerToken: K, weights } : { adaptersPerToken: K } }
  }
  return { layer, batch }
}

/** What a caller reusing its buffers does: new values in x and the weights, other slots in ids. */
function overwrite(b: Batch): void {
  b.x.fill(0)
  for (let t = 0; t < b.ids.length; t++) b.ids[t] = b.ids[t] < 0 ? 0 : -1
  b.weights?.fill(0)
}

describe('host arrays may be reused once apply() has returned', () => {
  it('single-threaded wasm', async () => {
    const rt = await createRuntime({ backend: 'wasm' })
    try {
      const { layer, batch } = makeLayer(rt, 1)
      for (const { weighted, label } of KINDS) {
        const b = batch(weighted)
        const y = b.y0.slice()
        const done = layer.apply(b.x, y, b.ids, b.opts)
        overwrite(b)
        await done
        expectDelta(y, b.y0, b.delta, TOLERANCE.f32, `wasm ${label}`)
      }
    } finally {
      rt.dispose()
    }
  })

  it('threaded wasm, idle and with calls queued behind a running one', async () => {
    const rt = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
    try {
      // Node has workers, SharedArrayBuffer and Atomics: the threads are there, here and in CI
      expect(rt.threads, `${rt.threadsUnavailableReason}`).toBe(2)
      const { layer, batch } = makeLayer(rt, 2)
      for (const { weighted, label } of KINDS) {
        const batches = [batch(weighted), batch(weighted), batch(weighted)]
        const ys = batches.map((b) => b.y0.slice())
        // the first call finds the queue idle, the next two wait behind it
        const calls = batches.map((b, i) => {
          const p = layer.apply(b.x, ys[i], b.ids, b.opts)
          overwrite(b)
          return p
        })
        await Promise.all(calls)
        batches.forEach((b, i) => expectDelta(ys[i], b.y0, b.delta, TOLERANCE.f32, `threaded ${label} call ${i}`))
      }
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
      expect(rt.stats().evictions).toBe(1)
      const ref = { inFeatures: inF, sliceWidths: [outF], adapters: [{ rank: r, scale: 2, A: [A], B: [B] }] }
      // names, then { name, weight } tokens (weights away from 1, one negative)
      const lists: TokenAdapters[][] = [
        ['a', null, 'a', 'a', null],
        [{ name: 'a', weight: 0.5 }, null, 'a', { name: 'a', weight: -1.25 }, [{ name: 'a', weight: 3 }]],
      ]
      for (const [i, tokens] of lists.entries()) {
        if (i > 0) await rt.loadAdapter('b', { config, weights }) // 'a' evicted again
        expect(rt.stats().evictions).toBe(2 * i + 1)
        const ids = Int32Array.from(tokens, (s) => (s ? 0 : -1))
        const w = Float32Array.from(tokens, (s) => {
          const one = Array.isArray(s) ? s[0] : s
          return one && typeof one === 'object' ? one.weight : 1
        })
        const x = rng.array(n * inF)
        const y0 = rng.array(n * outF)
        const y = y0.slice()
        const delta = sgmv(ref, x, ids, 1, w)
        const done = rt.apply(module, x, y, tokens)
        x.fill(0)
        for (const s of tokens) for (const one of Array.isArray(s) ? s : [s]) if (one && typeof one === 'object') one.weight = 0
        tokens.fill('b')
        await done
        expectDelta(y, y0, delta, TOLERANCE.f32, `rt.apply, tokens ${i}`)
      }
    } finally {
      rt.dispose()
    }
  })
})

describe.runIf(gpuHere)('WebGPU: inputs may be reused once apply() has returned', () => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend: 'webgpu' })
    expect(rt.backends).toEqual(['webgpu'])
  })
  afterAll(() => rt?.dispose())

  it('host x, ids and weights: the first call (pipelines created) and a later one', async () => {
    const { layer, batch } = makeLayer(rt, 5)
    for (const { weighted, label: kind } of KINDS) {
      // the first weighted call creates the weighting pipeline
      for (const label of ['first call', 'second call']) {
        const b = batch(weighted)
        const y = b.y0.slice()
        const done = layer.apply(b.x, y, b.ids, { ...b.opts, backend: 'webgpu' })
        overwrite(b)
        await done
        expectDelta(y, b.y0, b.delta, TOLERANCE.f32, `webgpu ${kind} ${label}`)
      }
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
    for (const { weighted, label: kind } of KINDS) {
      for (const label of ['first call', 'second call']) {
        const b = batch(weighted)
        const delta = sgmv({ inFeatures: IN, sliceWidths: OUT, adapters }, b.x, b.ids, b.K, b.weights)
        const xBuf = upload(device, b.x, FULL())
        const yBuf = upload(device, b.y0, FULL())
        const done = layer.apply(xBuf, yBuf, b.ids, { ...b.opts, backend: 'webgpu' })
        device.queue.writeBuffer(xBuf, 0, new Float32Array(T * IN))
        overwrite(b)
        await done
        expectDelta(await download(device, yBuf), b.y0, delta, TOLERANCE.f16, `GPU-resident ${kind} ${label}`)
        xBuf.destroy()
        yBuf.destroy()
      }
    }
  })

  it('ids as a GPUBuffer with host x and weights, all rewritten right after the call', async () => {
    const device = rt.device!
    const { layer, batch } = makeLayer(rt, 8)
    for (const { weighted, label } of KINDS) {
      const b = batch(weighted)
      const y = b.y0.slice()
      const idsBuf = upload(device, b.ids, FULL())
      const done = layer.apply(b.x, y, idsBuf, { ...b.opts, tokens: T, backend: 'webgpu' })
      device.queue.writeBuffer(idsBuf, 0, new Int32Array(T * b.K).fill(-1))
      overwrite(b)
      await done
      expectDelta(y, b.y0, b.delta, TOLERANCE.f32, `GPU ids ${label}`)
      idsBuf.destroy()
    }
  })

  it('encode: ids and weights rewritten after encode returns, before the submit', async () => {
    const device = rt.device!
    const { layer, batch } = makeLayer(rt, 9)
    for (const { weighted, label } of KINDS) {
      const b = batch(weighted)
      const xBuf = upload(device, b.x, FULL())
      const yBuf = upload(device, b.y0, FULL())
      const enc = device.createCommandEncoder()
      layer.encode(enc, xBuf, yBuf, b.ids, b.opts)
      overwrite(b)
      device.queue.submit([enc.finish()])
      expectDelta(await download(device, yBuf), b.y0, b.delta, TOLERANCE.f32, `encode ${label}`)
      xBuf.destroy()
      yBuf.destroy()
    }
  })
})
