/**
 * WebGPU device loss in the middle of a stream of calls (device.destroy()): 'auto' calls go on
 * on wasm, explicit 'webgpu' calls fail with DEVICE_LOST and leave y untouched, no call returns
 * wrong numbers, no call hangs; slot writes and adapter loads go on during the loss; and
 * rt.recoverGpu() brings WebGPU back with every layer's weights. Needs a WebGPU adapter
 * (test/needs.ts; lavapipe in CI).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, LoraError, type BackendChoice, type Layer, type Runtime } from '../src/index.js'
import type { Profile } from '../src/dispatch/profile.js'
import { expectDelta } from './compare.js'
import { has } from './needs.js'
import { makeWeights, peftConfig, toyModules, weightValues } from './peft-helpers.js'
import { Rng } from './random.js'
import { sgmv, type RefAdapter } from './reference.js'
import { backendsOf } from '../src/runtime.js'
import { RETRY_COPY_MAX } from '../src/layer.js'

const gpuHere = await has('webgpu')

/** A profile in which wasm looks slow, so that 'auto' really runs on the GPU before the loss. */
let gpuProfile: Profile
beforeAll(async () => {
  if (!gpuHere) return
  const probe = await createRuntime({ backend: 'auto' })
  try {
    expect(probe.backends, `${probe.webgpuUnavailableReason}`).toContain('webgpu')
    gpuProfile = JSON.parse(JSON.stringify(probe.profile)) as Profile
    gpuProfile.backends.wasm!.callMs = 1000
  } finally {
    probe.dispose()
  }
})

/** The runtime's own device (tests reach into it: the public API never hands it out). */
function deviceOf(rt: Runtime): GPUDevice {
  return backendsOf(rt).find((b) => b.name === 'webgpu')!.device!
}

const IN = 32
const OUT = [24, 8]
function adapter(rng: Rng, rank: number): RefAdapter {
  return { rank, scale: 0.5 + rng.next(), A: OUT.map(() => rng.array(rank * IN, 0.2)), B: OUT.map((n) => rng.array(n * rank, 0.2)) }
}

interface Model {
  layer: Layer
  slots: (RefAdapter | undefined)[]
}

/** Settles within `ms` or fails: a hang is a failure, not a stuck test run. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const t = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms)),
  )
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

/**
 * A stream of calls over two layers with mixed backends; `atCall(i)` runs before call i is made.
 * Returns counts of outcomes; every success is checked against the reference of the slots at
 * call time, every failure must be DEVICE_LOST of an explicit 'webgpu' call with y untouched.
 */
async function stream(models: Model[], n: number, rng: Rng, atCall: (i: number) => void | Promise<void>): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {}
  const calls: Promise<void>[] = []
  for (let i = 0; i < n; i++) {
    await atCall(i)
    const m = rng.pick(models)
    const T = 1 + rng.int(8)
    const filled = m.slots.flatMap((a, s) => (a ? [s] : []))
    const ids = Int32Array.from({ length: T }, () => (rng.next() < 0.2 ? -1 : rng.pick(filled)))
    const backend: BackendChoice = rng.pick(['auto', 'auto', 'webgpu', 'wasm'] as const)
    const x = rng.array(T * IN)
    const y0 = rng.array(T * 32)
    const y = new Float32Array(y0)
    const snapshot = [...m.slots]
    const label = `call ${i}: ${backend} ids [${ids.join(', ')}]`
    const p = m.layer.apply(x, y, ids, { backend }).then(
      () => {
        expectDelta(y, y0, sgmv({ inFeatures: IN, sliceWidths: OUT, adapters: snapshot }, x, ids), 1e-5, label)
        outcomes[`${backend} ok`] = (outcomes[`${backend} ok`] ?? 0) + 1
      },
      (e: unknown) => {
        expect(e, label).toBeInstanceOf(LoraError)
        expect(`${backend} ${(e as LoraError).code}`, `${label}: ${(e as Error).message}`).toBe('webgpu DEVICE_LOST')
        expect(y, `${label}: y changed by a failed call`).toEqual(y0)
        outcomes[`${backend} DEVICE_LOST`] = (outcomes[`${backend} DEVICE_LOST`] ?? 0) + 1
      },
    )
    calls.push(p)
    if (i % 8 === 7) await within(Promise.all(calls), 30_000, `calls up to ${i}`)
  }
  await within(Promise.all(calls), 30_000, 'the stream')
  return outcomes
}

function models(rt: Runtime, rng: Rng): Model[] {
  return [0, 1].map(() => {
    const layer = rt.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: 4, maxRank: 8 })
    const slots = [adapter(rng, 8), adapter(rng, 3), adapter(rng, 1), adapter(rng, 5)]
    slots.forEach((a, s) => layer.setAdapter(s, a))
    return { layer, slots }
  })
}

describe.runIf(gpuHere)('WebGPU device lost mid-stream', () => {
  let rt: Runtime | undefined
  afterAll(() => rt?.dispose())

  it('auto goes on on wasm, webgpu calls fail with DEVICE_LOST, no wrong number, no hang; writes go on; recoverGpu brings WebGPU back', async () => {
    rt = await createRuntime({ backend: 'auto', profile: gpuProfile })
    const r = rt
    expect(r.explain({ tokens: 4, inFeatures: IN, outFeatures: OUT, rank: 8 }).backend).toBe('webgpu')
    const rng = new Rng(3)
    const ms = models(r, rng)
    const device = deviceOf(r)

    // 1. the loss, with calls in flight; slot writes keep coming during the loss
    const out1 = await stream(ms, 160, rng, (i) => {
      if (i === 40) device.destroy()
      if (i > 40 && i % 10 === 0) {
        const m = rng.pick(ms)
        const slot = rng.int(4)
        m.slots[slot] = adapter(rng, 1 + rng.int(8))
        m.layer.setAdapter(slot, m.slots[slot]!)
      }
    })
    expect(out1['auto ok'], JSON.stringify(out1)).toBeGreaterThan(50) // no 'auto' call failed (checked in stream)
    expect(out1['webgpu DEVICE_LOST'], JSON.stringify(out1)).toBeGreaterThan(10)
    expect(out1['webgpu ok'] ?? 0, JSON.stringify(out1)).toBeGreaterThan(0) // before the loss
    expect(r.backends).toEqual(['wasm'])
    // a new layer and a slot cleared while the device is gone
    const late = r.createLayer({ inFeatures: IN, outFeatures: OUT, maxAdapters: 4, maxRank: 8 })
    const lateModel: Model = { layer: late, slots: [adapter(rng, 2), undefined, adapter(rng, 7), undefined] }
    lateModel.slots.forEach((a, s) => a && late.setAdapter(s, a))
    ms[0].layer.clearAdapter(3)
    ms[0].slots[3] = undefined
    // the late layer works on wasm during the loss; webgpu calls are refused at once
    const out2 = await stream([lateModel, ms[0]], 24, rng, () => {})
    expect(out2['auto ok'] ?? 0, JSON.stringify(out2)).toBeGreaterThan(0)
    const y = new Float32Array(32)
    await expect(ms[1].layer.apply(new Float32Array(IN), y, Int32Array.of(0), { backend: 'webgpu' })).rejects.toMatchObject({
      code: 'DEVICE_LOST',
    })

    // 2. recovery: a new device, every layer rebuilt from the weights as they are now
    expect(await within(r.recoverGpu(), 30_000, 'recoverGpu')).toBe(true)
    expect(r.backends).toEqual(['wasm', 'webgpu'])
    expect(await r.recoverGpu()).toBe(false) // nothing lost any more
    for (const m of [ms[0], ms[1], lateModel]) {
      for (const backend of ['webgpu', 'wasm', 'auto'] as const) {
        const filledSlots = m.slots.flatMap((a, s) => (a ? [s] : []))
        const ids = Int32Array.from({ length: 6 }, (_, t) => (t === 5 ? -1 : filledSlots[t % filledSlots.length]))
        const x = rng.array(6 * IN)
        const y0 = rng.array(6 * 32)
        const yy = new Float32Array(y0)
        await within(m.layer.apply(x, yy, ids, { backend }), 30_000, 'apply after recovery')
        expectDelta(yy, y0, sgmv({ inFeatures: IN, sliceWidths: OUT, adapters: m.slots }, x, ids), 1e-5, `after recovery, ${backend}`)
      }
    }
    // the stream runs on the new device, and the new device can be lost and recovered again
    const out3 = await stream([ms[1], lateModel], 40, rng, (i) => {
      if (i === 20) deviceOf(r).destroy()
    })
    expect(out3['webgpu ok'] ?? 0, JSON.stringify(out3)).toBeGreaterThan(0)
    expect(await within(r.recoverGpu(), 30_000, 'second recoverGpu')).toBe(true)
    expect(r.backends).toContain('webgpu')
  })

  it('PEFT adapters: rt.apply and loadAdapter during the loss, and after recovery', async () => {
    const r = await createRuntime({ backend: 'auto', profile: gpuProfile, adapterSlots: 2 })
    try {
      const srcs = [1, 2, 3].map((seed) => ({ config: peftConfig({ r: 4, lora_alpha: 8 }), weights: makeWeights(toyModules(4), seed) }))
      // the generated weights; scale lora_alpha / r = 2
      const parsed = [1, 2, 3].map((seed) => weightValues(toyModules(4), seed))
      await r.loadAdapter('p0', srcs[0])
      await r.loadAdapter('p1', srcs[1])
      const Q = 'model.layers.0.self_attn.q_proj'
      const check = async (names: string[], backend: BackendChoice): Promise<void> => {
        const rng = new Rng(names.length)
        const x = rng.array(names.length * 12)
        const y0 = rng.array(names.length * 12)
        const y = new Float32Array(y0)
        await within(r.apply(Q, x, y, names, { backend }), 30_000, 'rt.apply')
        const mods = names.map((n) => parsed[Number(n.slice(1))].get(Q)!)
        const ref = sgmv(
          { inFeatures: 12, sliceWidths: [12], adapters: mods.map((m) => ({ rank: m.rank, scale: 2, A: [m.A], B: [m.B] })) },
          x,
          Int32Array.from(names, (_, i) => i),
        )
        expectDelta(y, y0, ref, 1e-5, `${backend} ${names}`)
      }
      await check(['p0', 'p1'], 'webgpu')
      const inflight = check(['p1', 'p0'], 'auto')
      deviceOf(r).destroy()
      await inflight
      await r.loadAdapter('p2', srcs[2]) // evicts (2 slots), uploads while the GPU is gone
      await check(['p2', 'p0'], 'auto')
      await expect(r.apply(Q, new Float32Array(12), new Float32Array(12), ['p2'], { backend: 'webgpu' })).rejects.toMatchObject({
        code: 'DEVICE_LOST',
      })
      expect(await r.recoverGpu()).toBe(true)
      await check(['p2', 'p0'], 'webgpu')
      await check(['p1'], 'webgpu')
    } finally {
      r.dispose()
    }
  })

  it("an 'auto' call over RETRY_COPY_MAX inputs lost with its device fails with DEVICE_LOST, y untouched; one at the limit runs again on wasm", async () => {
    const r = await createRuntime({ backend: 'auto', profile: gpuProfile })
    try {
      const inF = 64
      const rng = new Rng(17)
      const a = { rank: 4, scale: 0.5, A: [rng.array(4 * inF, 0.2)], B: [rng.array(8 * 4, 0.2)] }
      const layer = r.createLayer({ inFeatures: inF, outFeatures: 8, maxAdapters: 1, maxRank: 4 })
      layer.setAdapter(0, a)
      const call = (T: number) => {
        const x = rng.array(T * inF)
        const y0 = rng.array(T * 8)
        const y = new Float32Array(y0)
        const ids = new Int32Array(T)
        const ref = sgmv({ inFeatures: inF, sliceWidths: [8], adapters: [a] }, x, ids)
        return { x, y, y0, ids, ref }
      }
      expect(r.explain({ tokens: RETRY_COPY_MAX / inF + 1, inFeatures: inF, outFeatures: 8, rank: 4 }).backend).toBe('webgpu')
      const small = call(RETRY_COPY_MAX / inF)
      const big = call(RETRY_COPY_MAX / inF + 1)
      const p1 = layer.apply(small.x, small.y, small.ids)
      const p2 = layer.apply(big.x, big.y, big.ids)
      small.x.fill(0) // the caller's arrays are its own again: the retry must not read them
      deviceOf(r).destroy()
      await within(p1, 60_000, 'apply at the limit')
      expectDelta(small.y, small.y0, small.ref, 1e-5, 'at the limit, run again on wasm')
      await expect(within(p2, 60_000, 'apply over the limit')).rejects.toMatchObject({ code: 'DEVICE_LOST' })
      expect(big.y).toEqual(big.y0)
      await within(layer.apply(big.x, big.y, big.ids), 60_000, 'the same call again') // now on wasm
      expectDelta(big.y, big.y0, big.ref, 1e-5, 'over the limit, called again')
    } finally {
      r.dispose()
    }
  })

  it('a runtime without WebGPU cannot recover it: BACKEND_UNAVAILABLE', async () => {
    const r = await createRuntime({ backend: 'wasm' })
    await expect(r.recoverGpu()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' })
    r.dispose()
    await expect(r.recoverGpu()).rejects.toMatchObject({ code: 'DISPOSED' })
  })
})
