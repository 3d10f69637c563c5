import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import type { Backend, BackendLayer } from '../src/backend.js'
import { calibrate } from '../src/dispatch/calibrate.js'
import { timeSwitch } from '../src/dispatch/calibrate-run.js'
import { machineOf, targetsOf } from '../src/dispatch/calibrate-cache.js'
import { type BackendRates, type CallFeatures, parallelSpeedup, predict, priorRates, weightRate, workOf } from '../src/dispatch/cost.js'
import { coldReadGBs, probeColdRead } from '../src/dispatch/cold-read.js'
import { checkProfile } from '../src/dispatch/profile.js'
import { DecisionMemo, Dispatcher, type ExplainRequest, featuresOf } from '../src/dispatch/dispatch.js'
import { createRuntime } from '../src/index.js'
import { fittingBackends } from '../src/backend.js'
import { backendsOf, lastBackendOf } from '../src/runtime.js'
import { LoraLayer } from '../src/layer.js'
import type { BackendName, LayerSpec } from '../src/types.js'
import { createWasmBackend } from '../src/wasm/backend.js'
import { createThreadedWasmBackend } from '../src/wasm/threads/backend.js'
import { createWebGpuBackend } from '../src/webgpu/index.js'
import { expectLoraError } from './compare.js'
import { all, BOTH, CPU, FAST_GPU, fakeBackend, profileOf, SLOW_GPU, traits } from './dispatch-fixtures.js'
import { has } from './needs.js'

const gpuHere = await has('webgpu')
const QKV = { rank: 16, inFeatures: 4096, outFeatures: [4096, 1024, 1024] }
const pick = (d: Dispatcher, r: ExplainRequest) => d.decide(featuresOf(r), BOTH)

describe('the cost formula, term by term', () => {
  // t = callMs + segments * segmentMs + max(W / weightGBs, F / gflops) / speedup + X / hostGBs
  const f: CallFeatures = {
    tokens: 10,
    entries: 12,
    distinct: 3,
    rankSum: 20,
    rankEntries: 70,
    inFeatures: 100,
    outFeatures: 50,
    slices: 2,
    weightDtype: 'bf16',
    resident: 'host',
    chunkSize: 3,
    adaptersPerToken: 2,
  }
  // per rank: in * S + out = 250 values
  it('work: weight bytes of the distinct adapters, flops of every entry, activations, segments', () => {
    expect(workOf(f)).toEqual({ weightBytes: 20 * 250 * 2, flops: 2 * 70 * 250, activationBytes: 10 * (100 + 2 * 50) * 4, segments: 3 * 2 })
    expect(workOf({ ...f, weightDtype: 'f32' }).weightBytes).toBe(20 * 250 * 4)
    expect(workOf({ ...f, weightDtype: 'f16' }).weightBytes).toBe(20 * 250 * 2)
    // 4 entries per adapter: one segment each with the default chunk of 64, two with a chunk of 3, four with 1
    expect(workOf({ ...f, chunkSize: undefined }).segments).toBe(3)
    expect(workOf({ ...f, chunkSize: 1 }).segments).toBe(12)
    expect(workOf({ ...f, entries: 0, distinct: 0, rankSum: 0, rankEntries: 0 })).toEqual({
      weightBytes: 0,
      flops: 0,
      activationBytes: 8000,
      segments: 0,
    })
  })

  const rates: BackendRates = {
    callMs: 0.5,
    segmentMs: 0.25,
    weightGBs: { f32: 1, bf16: 0.001, f16: 1 },
    gflops: { f32: 1, bf16: 0.0001, f16: 1 },
    hostGBs: 0.002,
  }
  it('predict: fixed cost, segments, the larger roofline term, transfers', () => {
    // weights 10000 B / 0.001 GB/s = 10 ms, flops 35000 / 0.0001 GFLOP/s = 350 ms, x and y 8000 B / 0.002 GB/s = 4 ms
    const p = predict(rates, f)
    expect(p.ms).toBeCloseTo(0.5 + 6 * 0.25 + 350 + 4, 9)
    expect(p.bound).toBe('arithmetic')
    expect(p.transferMs).toBeCloseTo(4, 12)
    const w = predict({ ...rates, gflops: all(1) }, f)
    expect(w.ms).toBeCloseTo(0.5 + 1.5 + 10 + 4, 9)
    expect(w.bound).toBe('weights')
    // the rates of the call's own dtype
    expect(predict(rates, { ...f, weightDtype: 'f32' }).ms).toBeCloseTo(0.5 + 1.5 + 0.035 + 4, 9)
    // nothing moved: only the caller's extra
    expect(predict(rates, f, false).transferMs).toBe(0)
    expect(predict(rates, f, false, 7)).toMatchObject({ transferMs: 7 })
    expect(predict(rates, f, false, 7).ms).toBeCloseTo(0.5 + 1.5 + 350 + 7, 9)
    expect(predict(rates, f, true, 7).transferMs).toBeCloseTo(11, 12)
    // equal terms count as weight-bound
    const work = workOf(f)
    const even = { ...rates, weightGBs: all(work.weightBytes), gflops: all(work.flops) }
    expect(predict(even, f).bound).toBe('weights')
  })

  it('threads: the roofline term is divided by the interpolated speed-up, nothing else', () => {
    const par = { ...rates, parallel: { threads: 4, speedup: 2.5 } }
    // 3 parts of 4 threads: 1 + 1.5 * 2 / 3 = 2
    expect(parallelSpeedup(par.parallel, 3)).toBe(2)
    expect(predict(par, f, true, 0, 3).ms).toBeCloseTo(0.5 + 1.5 + 350 / 2 + 4, 9)
    expect(predict(par, f, true, 0, 1).ms).toBeCloseTo(predict(rates, f).ms, 12)
    expect(predict(par, f).ms).toBeCloseTo(predict(rates, f).ms, 12) // one part by default
    expect(parallelSpeedup({ threads: 1, speedup: 5 }, 4)).toBe(1)
    expect(parallelSpeedup(par.parallel, 0)).toBe(1)
  })

  it('priors: wasm, a software GPU and a hardware GPU, each with every dtype rated', () => {
    const [wasm, sw, hw] = [priorRates('wasm', false), priorRates('webgpu', true), priorRates('webgpu', false)]
    for (const r of [wasm, sw, hw]) {
      for (const d of ['f32', 'bf16', 'f16'] as const) {
        expect(r.weightGBs[d]).toBeGreaterThan(0)
        expect(r.gflops[d]).toBeGreaterThan(0)
      }
      expect(r.callMs).toBeGreaterThan(0)
      expect(r.segmentMs).toBeGreaterThan(0)
      expect(r.hostGBs).toBeGreaterThan(0)
    }
    // a call costs least on wasm; a hardware GPU out-computes a software one
    expect(wasm.callMs).toBeLessThan(hw.callMs)
    expect(hw.callMs).toBeLessThan(sw.callMs)
    expect(hw.gflops.f32).toBeGreaterThan(sw.gflops.f32)
    expect(hw.weightGBs.f32).toBeGreaterThan(wasm.weightGBs.f32)
    expect(priorRates('wasm', true)).toEqual(wasm) // the software flag is the GPU's
  })
})

describe('cost model on synthetic profiles', () => {
  it('a slow (software) GPU never wins with host data', () => {
    const d = new Dispatcher(traits, profileOf(SLOW_GPU))
    for (const tokens of [1, 16, 256, 4096]) {
      const r = pick(d, { ...QKV, tokens, adapters: Math.min(tokens, 8) })
      expect(r.backend, `T=${tokens}`).toBe('wasm')
      expect(r.predictedMs.webgpu!).toBeGreaterThan(r.predictedMs.wasm!)
    }
  })

  it('a fast GPU loses at T=1 (launch + readback) and wins large batches', () => {
    const d = new Dispatcher(traits, profileOf(FAST_GPU))
    const small = pick(d, { ...QKV, tokens: 1 })
    expect(small.backend).toBe('wasm')
    expect(small.reason).toMatch(/^wasm predicted [\d.]+ ms vs webgpu [\d.]+ ms \(weights-bound on wasm/)
    const large = pick(d, { ...QKV, tokens: 4096, adapters: 8 })
    expect(large.backend).toBe('webgpu')
    // the crossover lies in between, and predictions grow with T on both backends
    const wasmMs = [1, 64, 1024].map((tokens) => pick(d, { ...QKV, tokens }).predictedMs.wasm!)
    expect(wasmMs[0]).toBeLessThan(wasmMs[1])
    expect(wasmMs[1]).toBeLessThan(wasmMs[2])
  })

  it('GPU-resident data stays on the GPU unless the CPU is far faster', () => {
    // with host data the CPU wins T=1 on the slow GPU; with GPU data it is faster, but not 2x
    const slowGpu = new Dispatcher(traits, profileOf(SLOW_GPU))
    expect(pick(slowGpu, { ...QKV, tokens: 1 }).backend).toBe('wasm')
    const r = pick(slowGpu, { ...QKV, tokens: 1, resident: 'gpu' })
    expect(r.backend).toBe('webgpu')
    expect(r.predictedMs.wasm!).toBeLessThan(r.predictedMs.webgpu!)
    expect(r.reason).toMatch(/stays there/)
    expect(pick(new Dispatcher(traits, profileOf(FAST_GPU)), { ...QKV, tokens: 1, resident: 'gpu' }).backend).toBe('webgpu')
    // a GPU 100x slower than the CPU: moving the data is worth it
    const crawl: BackendRates = { ...SLOW_GPU, gflops: all(0.25), weightGBs: all(0.1) }
    const slow = new Dispatcher(traits, profileOf(crawl))
    expect(pick(slow, { ...QKV, tokens: 256, adapters: 4, resident: 'gpu' }).backend).toBe('wasm')
  })

  it('bf16 halves the weight bytes of a weight-bound call', () => {
    const d = new Dispatcher(traits, profileOf(SLOW_GPU))
    const f32 = pick(d, { ...QKV, tokens: 8, adapters: 8, weightDtype: 'f32' }).predictedMs.wasm!
    const bf16 = pick(d, { ...QKV, tokens: 8, adapters: 8, weightDtype: 'bf16' }).predictedMs.wasm!
    expect(bf16).toBeLessThan(f32 * 0.6)
  })

  it('uncalibrated priors: a software adapter is predicted slower than a hardware one', () => {
    const sw = new Dispatcher([traits[0], { name: 'webgpu', isSoftware: true }], null)
    const hw = new Dispatcher(traits, null)
    const req = { ...QKV, tokens: 1024, adapters: 8 }
    expect(pick(sw, req).predictedMs.webgpu!).toBeGreaterThan(10 * pick(hw, req).predictedMs.webgpu!)
    expect(pick(sw, req).reason).toMatch(/uncalibrated priors/)
  })

  it('a multi-threaded wasm backend: the kernel term shrinks by the measured speed-up for the threads a call gets', () => {
    const threaded: BackendRates = { ...CPU, parallel: { threads: 4, speedup: 3.1 } }
    expect(parallelSpeedup(threaded.parallel, 1)).toBe(1)
    expect(parallelSpeedup(threaded.parallel, 4)).toBeCloseTo(3.1, 12)
    expect(parallelSpeedup(threaded.parallel, 2)).toBeCloseTo(1 + 2.1 / 3, 12)
    expect(parallelSpeedup(threaded.parallel, 9)).toBeCloseTo(3.1, 12) // never more than all threads
    expect(parallelSpeedup(undefined, 4)).toBe(1)
    const f = featuresOf({ tokens: 256, adapters: 4, ...QKV })
    const one = predict(threaded, f, true, 0, 1)
    const four = predict(threaded, f, true, 0, 4)
    // fixed costs and copies stay; only the roofline term is divided
    const fixed = one.ms - (one.ms - threaded.callMs - 4 * threaded.segmentMs - one.transferMs)
    expect(four.ms - fixed).toBeCloseTo((one.ms - fixed) / 3.1, 9)
    // the dispatcher asks the backend how many threads the call gets
    const seen: number[] = []
    const d = new Dispatcher(
      [
        { name: 'wasm', isSoftware: false, parts: (w) => (seen.push(w), w > 1e6 ? 4 : 1) },
        { name: 'webgpu', isSoftware: false },
      ],
      { ...profileOf(FAST_GPU), backends: { wasm: { ...threaded, measured: [] }, webgpu: { ...FAST_GPU, measured: [] } } },
    )
    expect(d.predictMs('wasm', f).ms).toBeCloseTo(four.ms, 9)
    expect(seen[0]).toBe(f.rankEntries * (4096 * 3 + 6144))
    const small = featuresOf({ tokens: 1, ...QKV, rank: 1, inFeatures: 64, outFeatures: 64 })
    expect(d.predictMs('wasm', small).ms).toBeCloseTo(predict(threaded, small).ms, 12)
  })

  it('x and y in host arrays (resident wasm): no copies on wasm, the same uploads and readback on the GPU', () => {
    const d = new Dispatcher(traits, profileOf(FAST_GPU))
    const host = featuresOf({ ...QKV, tokens: 256, adapters: 8 })
    const inWasm = featuresOf({ ...QKV, tokens: 256, adapters: 8, resident: 'wasm' })
    expect(d.predictMs('wasm', host).transferMs).toBeGreaterThan(0)
    expect(d.predictMs('wasm', inWasm).transferMs).toBe(0)
    expect(d.predictMs('wasm', inWasm).ms).toBeLessThan(d.predictMs('wasm', host).ms)
    expect(d.predictMs('webgpu', inWasm).ms).toBe(d.predictMs('webgpu', host).ms)
  })

  it('the GPU round trip (~11 ms under wgpu, which polls for completion) is paid by host data and by GPU data run on the CPU, not by calls on GPU buffers', () => {
    const dawn = new Dispatcher(traits, profileOf({ ...FAST_GPU, callMs: 0.05, roundTripMs: 0.03 }))
    const wgpu = new Dispatcher(traits, profileOf({ ...FAST_GPU, callMs: 0.05, roundTripMs: 11 }))
    const host = { ...QKV, tokens: 256, adapters: 8 }
    const ms = (d: Dispatcher, r: ExplainRequest, b: BackendName) => d.predictMs(b, featuresOf(r)).ms
    expect(ms(wgpu, host, 'webgpu') - ms(dawn, host, 'webgpu')).toBeCloseTo(10.97, 9)
    expect(pick(dawn, host).backend).toBe('webgpu')
    expect(pick(wgpu, host).backend).toBe('wasm')
    // a batch large enough that the GPU wins with the round trip included
    expect(pick(wgpu, { ...host, tokens: 4096 }).backend).toBe('webgpu')
    // GPU buffers: the GPU launches and returns; the CPU would have to wait for a readback first
    const resident = { ...QKV, tokens: 1, resident: 'gpu' as const }
    expect(ms(wgpu, resident, 'webgpu')).toBe(ms(dawn, resident, 'webgpu'))
    expect(ms(wgpu, resident, 'webgpu')).toBeLessThan(1)
    expect(ms(wgpu, resident, 'wasm') - ms(dawn, resident, 'wasm')).toBeCloseTo(10.97, 9)
    expect(pick(wgpu, resident).backend).toBe('webgpu')
  })

  it('explain requests are validated', () => {
    const d = new Dispatcher(traits, null)
    expect(() => pick(d, { ...QKV, tokens: -1 })).toThrow(/OUT_OF_RANGE.*tokens/)
    expect(() => pick(d, { ...QKV, tokens: 4, adapters: 2, rank: [4, 8, 16] })).toThrow(/SHAPE_MISMATCH.*rank/)
    expect(() => pick(d, { ...QKV, tokens: 4, resident: 'disk' as never })).toThrow(/INVALID_ARGUMENT.*resident/)
  })
})

/** A backend that computes nothing and records which one ran. */
function recorder(name: BackendName, ran: BackendName[]): Backend {
  return fakeBackend(name, () => void ran.push(name))
}

describe('the cost of switching backends between calls', () => {
  /** A call where the fast GPU is predicted faster than wasm (host data), and by how much (ms). */
  const near = (d: Dispatcher) => {
    for (let tokens = 1; tokens <= 65536; tokens *= 2) {
      const f = featuresOf({ ...QKV, tokens, adapters: 8 })
      const margin = d.predictMs('wasm', f).ms - d.predictMs('webgpu', f).ms
      if (margin > 0) return { f, margin }
    }
    throw new Error('no crossover on the grid')
  }

  it('after a wasm call, a GPU faster by less than its switching cost does not get the next call; faster by more, it does', () => {
    const { f, margin } = near(new Dispatcher(traits, profileOf(FAST_GPU)))
    for (const [switchMs, want] of [
      [margin * 2, 'wasm'],
      [margin / 2, 'webgpu'],
    ] as const) {
      const d = new Dispatcher(traits, profileOf({ ...FAST_GPU, switchMs }))
      expect(d.previous).toBeNull()
      expect(d.choose(f, BOTH), 'no previous call: nothing to switch from').toBe('webgpu')
      d.ran('wasm')
      expect(d.switchMs('webgpu')).toBe(switchMs)
      expect(d.switchMs('wasm')).toBe(0)
      expect(d.choose(f, BOTH), `switchMs ${switchMs} vs margin ${margin}`).toBe(want)
      const r = d.decide(f, BOTH)
      expect(r.backend).toBe(want)
      if (want === 'wasm') {
        expect(r.reason).toMatch(
          /^wasm ran the previous call and stays: webgpu \([\d.]+ ms\) is not faster by its switching cost \([\d.]+ ms; wasm [\d.]+ ms\)$/,
        )
      } else expect(r.reason).toMatch(/^webgpu predicted/)
      // the prediction of the backend switched to includes its cost
      expect(r.predictedMs.webgpu!).toBeCloseTo(d.predictMs('webgpu', f).ms + switchMs, 2)
      // after a GPU call the same call stays there: wasm (switchMs absent) is still slower
      d.ran('webgpu')
      expect(d.choose(f, BOTH)).toBe('webgpu')
    }
  })

  it("the cost is the switched-to backend's own, paid only when the previous call ran elsewhere", () => {
    const cpu = { ...CPU, switchMs: 0.4 }
    const p = profileOf(FAST_GPU)
    const d = new Dispatcher(traits, { ...p, backends: { ...p.backends, wasm: { ...cpu, measured: [] } } })
    const f = featuresOf({ ...QKV, tokens: 1 })
    const plain = d.predictMs('wasm', f).ms
    d.ran('wasm')
    expect(d.decide(f, BOTH).predictedMs.wasm!).toBeCloseTo(plain, 3)
    d.ran('webgpu')
    expect(d.decide(f, BOTH).predictedMs.wasm!).toBeCloseTo(plain + 0.4, 2)
    // without switchMs in the rates (older profiles), history changes no prediction
    const old = new Dispatcher(traits, profileOf(FAST_GPU))
    const before = old.decide(f, BOTH)
    old.ran('webgpu')
    expect(old.decide(f, BOTH)).toEqual(before)
  })

  it('priors: switching costs more towards a software GPU, which shares the CPU, than towards a hardware one', () => {
    expect(priorRates('webgpu', true).switchMs!).toBeGreaterThan(priorRates('webgpu', false).switchMs!)
    expect(priorRates('wasm', false).switchMs!).toBeGreaterThan(0)
  })

  it("calibration measures each backend's switching cost: a call right after one on the other backend against one after its own", async () => {
    // fake backends: a call on wasm right after a webgpu call busy-waits 3 ms (webgpu pays nothing)
    const shared = { last: null as BackendName | null }
    const switcher = (name: BackendName, costMs: number): Backend => {
      const layer: BackendLayer = {
        setAdapter() {},
        clearAdapter() {},
        dispose() {},
        apply: () => {
          const t0 = performance.now()
          if (shared.last !== null && shared.last !== name) while (performance.now() - t0 < costMs);
          shared.last = name
        },
      }
      return { ...recorder(name, []), createLayer: () => layer }
    }
    const wasm = switcher('wasm', 3)
    const gpu = switcher('webgpu', 0)
    const direct = await timeSwitch({ backend: wasm }, { backend: gpu }, 9, performance.now() + 60_000)
    const back = await timeSwitch({ backend: gpu }, { backend: wasm }, 9, performance.now() + 60_000)
    expect(direct!).toBeGreaterThanOrEqual(1.5)
    expect(back!).toBeLessThan(direct!)
    const targets = [
      { backend: wasm, isSoftware: false },
      { backend: gpu, isSoftware: false },
    ]
    const p = await calibrate(
      targets,
      { wasmVariant: 'simd', gpu: { description: 'fake', isSoftware: false } },
      { kind: 'short', budgetMs: 60_000 },
    )
    expect(p.backends.wasm!.measured).toContain('switchMs')
    expect(p.backends.webgpu!.measured).toContain('switchMs')
    expect(p.backends.wasm!.switchMs!).toBeGreaterThanOrEqual(1.5)
    expect(p.backends.webgpu!.switchMs!).toBeLessThan(p.backends.wasm!.switchMs!)
    // a spent budget starts no switching point: the priors stay
    const none = await calibrate(targets, p.machine, { kind: 'short', budgetMs: 0 })
    expect(none.backends.wasm!.measured).not.toContain('switchMs')
    expect(none.backends.wasm!.switchMs).toBe(priorRates('wasm', false).switchMs)
  })

  it('a runtime records forced and chosen calls alike', async () => {
    const rt = await createRuntime({ backend: 'wasm' })
    const dispatcher = (rt as unknown as { dispatcher: Dispatcher }).dispatcher
    expect(dispatcher.previous).toBeNull()
    const layer = rt.createLayer({ inFeatures: 8, outFeatures: 8, maxAdapters: 1, maxRank: 2 })
    layer.setAdapter(0, { rank: 2, scale: 1, A: [new Float32Array(16)], B: [new Float32Array(16)] })
    await layer.apply(new Float32Array(8), new Float32Array(8), Int32Array.of(0), { backend: 'wasm' })
    expect(dispatcher.previous).toBe('wasm')
    rt.dispose()
  })
})

describe('explain() is the auto decision', () => {
  it('a layer with two backends runs every call where explain says', async () => {
    const ran: BackendName[] = []
    const backends = [recorder('wasm', ran), recorder('webgpu', ran)]
    const d = new Dispatcher(traits, profileOf(FAST_GPU))
    const host = {
      defaultBackend: 'auto' as const,
      checkAlive() {},
      pick: (_: unknown, f: Parameters<Dispatcher['decide']>[0]) => backends.find((b) => b.name === d.decide(f, BOTH).backend)!,
    }
    const spec: LayerSpec = {
      inFeatures: 64,
      sliceWidths: [32, 32],
      sliceOffsets: [0, 32],
      outFeatures: 64,
      maxAdapters: 8,
      maxRank: 8,
      weightDtype: 'bf16',
    }
    const layer = new LoraLayer(host, spec, backends)
    for (let a = 0; a < 8; a++)
      layer.setAdapter(a, {
        rank: 8,
        scale: 1,
        A: [new Float32Array(8 * 64), new Float32Array(8 * 64)],
        B: [new Float32Array(32 * 8), new Float32Array(32 * 8)],
      })
    const seen = new Set<BackendName>()
    for (const tokens of [1, 8, 64, 512, 4096, 65536]) {
      for (const adapters of [1, 8]) {
        const ids = Int32Array.from({ length: tokens }, (_, t) => t % adapters)
        await layer.apply(new Float32Array(tokens * 64), new Float32Array(tokens * 64), ids)
        const want = pick(d, {
          tokens,
          adapters: Math.min(adapters, tokens),
          rank: 8,
          inFeatures: 64,
          outFeatures: [32, 32],
          weightDtype: 'bf16',
        }).backend
        expect(ran.pop(), `T=${tokens} D=${adapters}`).toBe(want)
        seen.add(want)
      }
    }
    expect(seen.size).toBe(2) // the grid crosses over, so the test compares both outcomes
  })
})

describe('profiles and calibration', () => {
  it('round-trips through JSON into createRuntime({ profile })', async () => {
    const rt = await createRuntime({ backend: 'auto' })
    const saved = JSON.parse(JSON.stringify(rt.profile))
    expect(saved.kind).toBe('short')
    const rt2 = await createRuntime({ backend: 'auto', profile: saved })
    expect(rt2.profile).toEqual(saved)
    const req = { ...QKV, tokens: 64, adapters: 4, weightDtype: 'bf16' as const }
    expect(rt2.explain(req)).toEqual(rt.explain(req))
    rt.dispose()
    rt2.dispose()
  })

  it('a malformed profile is refused with the offending field', async () => {
    await expectLoraError(() => createRuntime({ profile: { version: 2 } as never }), 'INVALID_ARGUMENT', ['profile.version'])
    const p = profileOf(SLOW_GPU)
    const bad = { ...p, backends: { wasm: { ...p.backends.wasm, gflops: { f32: -1, bf16: 1, f16: 1 } } } }
    await expectLoraError(() => createRuntime({ profile: bad as never }), 'INVALID_ARGUMENT', ['profile.backends.wasm.gflops.f32'])
    const badPar = { ...p, backends: { wasm: { ...p.backends.wasm, parallel: { threads: 2.5, speedup: 1.5 } } } }
    await expectLoraError(() => createRuntime({ profile: badPar as never }), 'INVALID_ARGUMENT', ['profile.backends.wasm.parallel.threads'])
    const badSwitch = { ...p, backends: { wasm: { ...p.backends.wasm, switchMs: -0.1 } } }
    await expectLoraError(() => createRuntime({ profile: badSwitch as never }), 'INVALID_ARGUMENT', ['profile.backends.wasm.switchMs'])
    const badSpeed = { ...p, backends: { wasm: { ...p.backends.wasm, parallel: { threads: 2, speedup: 0 } } } }
    await expectLoraError(() => createRuntime({ profile: badSpeed as never }), 'INVALID_ARGUMENT', [
      'profile.backends.wasm.parallel.speedup',
    ])
  })

  it('a multi-threaded wasm backend: calibration measures its speed-up on every thread, then gives the calls back their own thread counts', async () => {
    // two threads on any machine (on one core they share it: the speed-up measured is then below 1)
    const wasm = await createThreadedWasmBackend(2)
    try {
      expect(wasm.threads, `${wasm.threadsUnavailableReason}`).toBe(2)
      // a budget no loaded machine exhausts: every point runs, whatever the load
      const p = await calibrate(targetsOf([wasm]), machineOf([wasm], wasm.variant), { kind: 'short', budgetMs: 60_000 })
      expect(p.machine.threads).toBe(wasm.threads)
      const par = p.backends.wasm!.parallel!
      expect(p.backends.wasm!.measured).toContain('parallel')
      expect(par.threads).toBe(wasm.threads)
      expect(par.speedup).toBeGreaterThanOrEqual(0.25)
      expect(par.speedup).toBeLessThanOrEqual(wasm.threads)
      // the calibration forced its thread counts only while it ran
      expect(wasm.partsFor(1)).toBe(1)
      expect(wasm.partsFor(1e12, 1024)).toBe(Math.min(wasm.threads, availableParallelism()))
    } finally {
      wasm.dispose()
    }
  })

  it('the short calibration starts no point past its budget, and is cached per process', async () => {
    const wasm = await createWasmBackend()
    const target = [{ backend: wasm, isSoftware: false }]
    const machine = { wasmVariant: wasm.variant, gpu: null }
    // a spent budget: no point runs, the priors stay (the deadline check, without timing the machine)
    const none = await calibrate(target, machine, { kind: 'short', budgetMs: 0 })
    expect(none.backends.wasm!.measured).toEqual([])
    expect({ ...none.backends.wasm, measured: undefined }).toEqual({ ...priorRates('wasm', false), measured: undefined })
    // a budget no loaded machine exhausts: the call overhead and f32 rate are measured
    const p = await calibrate(target, machine, { kind: 'short', budgetMs: 60_000 })
    expect(p.backends.wasm!.measured).toEqual(expect.arrayContaining(['callMs', 'gflops.f32']))
    for (const v of Object.values(p.backends.wasm!.gflops)) expect(v).toBeGreaterThan(0)
    wasm.dispose()
    // the same profile object: the second runtime did not calibrate again
    const a = await createRuntime({ backend: 'auto' })
    const b = await createRuntime({ backend: 'auto' })
    expect(b.profile).not.toBeNull()
    expect(b.profile).toBe(a.profile)
    a.dispose()
    b.dispose()
  })

  it.runIf(gpuHere)('a GPU calibration splits the launch (callMs) from the round trip a host call adds (roundTripMs)', async () => {
    const gpu = await createWebGpuBackend()
    try {
      const p = await calibrate(targetsOf([gpu]), machineOf([gpu], null), { kind: 'short', budgetMs: 60_000 })
      const r = p.backends.webgpu!
      expect(r.measured).toEqual(expect.arrayContaining(['callMs', 'roundTripMs']))
      expect(r.callMs).toBeGreaterThan(0)
      expect(r.roundTripMs).toBeGreaterThan(0)
      // and a profile keeps it through JSON
      const rt = await createRuntime({ backend: 'auto', profile: JSON.parse(JSON.stringify(p)) })
      expect(rt.profile!.backends.webgpu!.roundTripMs).toBe(r.roundTripMs)
      rt.dispose()
    } finally {
      gpu.dispose()
    }
  })

  it.runIf(gpuHere)(
    "the GPU's pipeline compilation is outside a short budget: a first call slower than the budget still leaves its launch measured",
    async () => {
      const gpu = await createWebGpuBackend()
      try {
        // the backend's own pipelines compiled first (a cold shader cache under load takes seconds on
        // lavapipe), so that the only slow first call is the one played below
        await calibrate(targetsOf([gpu]), machineOf([gpu], null), { kind: 'short', budgetMs: 60_000 })
        // a compilation longer than the whole budget: the first call on the next layer waits 2.5 s
        const createLayer = gpu.createLayer.bind(gpu)
        let first = true
        gpu.createLayer = (spec) => {
          const layer = createLayer(spec)
          if (!first) return layer
          first = false
          const apply = layer.apply.bind(layer)
          layer.apply = async (x, y, plan) => {
            await new Promise((resolve) => setTimeout(resolve, 2500))
            return apply(x, y, plan)
          }
          return layer
        }
        const t0 = performance.now()
        const p = await calibrate(targetsOf([gpu]), machineOf([gpu], null), { kind: 'short', budgetMs: 1500 })
        expect(first).toBe(false)
        expect(performance.now() - t0).toBeGreaterThan(2500)
        // with the first call inside the budget nothing would fit; outside it, the launch is measured
        expect(p.backends.webgpu!.measured).toEqual(expect.arrayContaining(['callMs']))
        expect(p.backends.webgpu!.callMs).toBeGreaterThan(0)
      } finally {
        gpu.dispose()
      }
    },
  )

  it('a forced-backend runtime has no calibration but explains with priors', async () => {
    const rt = await createRuntime({ backend: 'wasm' })
    expect(rt.profile).toBeNull()
    const r = rt.explain({ ...QKV, tokens: 1 })
    expect(r.backend).toBe('wasm')
    expect(r.predictedMs.wasm).toBeCloseTo(rt.explain({ ...QKV, tokens: 1 }).predictedMs.wasm!)
    expect(priorRates('wasm', false).callMs).toBeGreaterThan(0)
    rt.dispose()
  })
})

describe("a layer's memo of its last 'auto' decisions", () => {
  /** A call the slow GPU loses and the fast GPU wins (host data, qkv, 64 tokens over 8 adapters). */
  const f = featuresOf({ ...QKV, tokens: 64, adapters: 8 })
  /** Plant a decision the dispatcher would not make: only a reused memo returns it. */
  const plant = (d: Dispatcher, memo: DecisionMemo, g: CallFeatures = f) => memo.store(g, BOTH, d.previous, d.ratesVersion, 'webgpu')

  it('holds while nothing changes, is not consulted after the rates change', () => {
    const d = new Dispatcher(traits, profileOf(SLOW_GPU))
    const memo = new DecisionMemo()
    expect(d.choose(f, BOTH, memo)).toBe('wasm')
    expect(memo.lookup(f, BOTH, null, d.ratesVersion)).toBe('wasm')
    expect(d.choose(f, BOTH, memo)).toBe('wasm')
    d.setProfile(profileOf(FAST_GPU))
    expect(memo.lookup(f, BOTH, null, d.ratesVersion)).toBeNull()
    expect(d.choose(f, BOTH, memo), 'a stale memo after setProfile').toBe('webgpu')
  })

  it('returns its decision without predicting while the features match', () => {
    const d = new Dispatcher(traits, profileOf(SLOW_GPU))
    const memo = new DecisionMemo()
    d.choose(f, BOTH, memo)
    plant(d, memo)
    expect(d.choose(f, BOTH, memo)).toBe('webgpu')
    expect(d.choose(f, BOTH), 'without the memo').toBe('wasm')
  })

  it('keeps one decision per previous backend, all dropped when the features change', () => {
    const d = new Dispatcher(traits, profileOf(SLOW_GPU))
    const memo = new DecisionMemo()
    d.ran('wasm')
    plant(d, memo)
    d.ran('webgpu')
    expect(d.choose(f, BOTH, memo), 'nothing stored after a webgpu call: predicted').toBe('wasm')
    d.ran('wasm')
    expect(d.choose(f, BOTH, memo), 'the planted decision after a wasm call is kept').toBe('webgpu')
    const g = { ...f, tokens: f.tokens + 1 }
    expect(d.choose(g, BOTH, memo)).toBe('wasm')
    expect(memo.lookup(f, BOTH, 'wasm', d.ratesVersion), 'dropped with the old features').toBeNull()
  })

  it('is not reused for other features or another usable list', () => {
    const d = new Dispatcher(traits, profileOf(SLOW_GPU))
    const memo = new DecisionMemo()
    // one change per field of CallFeatures: a field added there fails to compile here until it is
    // listed, and then this fails until the memo compares it
    const changes: Record<keyof CallFeatures, Partial<CallFeatures>> = {
      tokens: { tokens: f.tokens + 1 },
      entries: { entries: f.entries + 1 },
      distinct: { distinct: f.distinct + 1 },
      rankSum: { rankSum: f.rankSum + 1 },
      rankEntries: { rankEntries: f.rankEntries + 1 },
      inFeatures: { inFeatures: f.inFeatures + 1 },
      outFeatures: { outFeatures: f.outFeatures + 1 },
      slices: { slices: f.slices + 1 },
      weightDtype: { weightDtype: 'f16' },
      resident: { resident: 'wasm' },
      chunkSize: { chunkSize: 64 },
      adaptersPerToken: { adaptersPerToken: 2 },
    }
    for (const other of Object.values(changes)) {
      plant(d, memo)
      expect(d.choose(f, BOTH, memo)).toBe('webgpu')
      expect(d.choose({ ...f, ...other }, BOTH, memo), JSON.stringify(other)).toBe('wasm')
    }
    plant(d, memo)
    expect(d.choose(f, [...BOTH], memo), 'another usable array').toBe('wasm')
  })
})

describe('cold weights: the cold read rate bounds the weight rates', () => {
  /** The rates the short calibration measured on the H200 host (a regret run of 2026-12-04, rounded). */
  const H200_CPU: BackendRates = {
    callMs: 0.0043,
    segmentMs: 0.0005,
    weightGBs: { f32: 12, bf16: 5.6, f16: 12 },
    gflops: { f32: 17, bf16: 15, f16: 8.6 },
    hostGBs: 12,
    switchMs: 0.005,
  }
  const H200_GPU: BackendRates = {
    callMs: 0.157,
    roundTripMs: 0.171,
    segmentMs: 0,
    weightGBs: all(200),
    gflops: all(2000),
    hostGBs: 4.6,
    switchMs: 0.001,
  }
  const h200 = (cpu: BackendRates): Dispatcher =>
    new Dispatcher(traits, {
      ...profileOf(H200_GPU),
      backends: { wasm: { ...cpu, measured: [] }, webgpu: { ...H200_GPU, measured: [] } },
    })
  const O_R64 = { rank: 64, inFeatures: 4096, outFeatures: 4096, tokens: 1 }

  it('weightRate: the lower of the dtype rate and the cold read rate; the weight term of predict follows it', () => {
    expect(weightRate(CPU, 'f32')).toBe(15)
    expect(weightRate({ ...CPU, coldReadGBs: 4 }, 'f32')).toBe(4)
    expect(weightRate({ ...CPU, coldReadGBs: 40 }, 'bf16')).toBe(15)
    const f = featuresOf({ ...O_R64 })
    const warm = predict(CPU, f, false).ms
    const cold = predict({ ...CPU, coldReadGBs: 5 }, f, false).ms
    const bytes = workOf(f).weightBytes
    expect(cold - warm).toBeCloseTo(bytes / 5 / 1e6 - bytes / 15 / 1e6, 6)
  })

  it('H200 rates: a T = 1 call of an f32 r64 layer goes to the GPU once wasm reads its 2 MiB cold (it ran 1.6x slower there)', () => {
    // (bf16, 1 MiB, ran 1.3x slower on wasm too, but that GPU call ran 0.22 ms against 0.33 predicted for its launch alone)
    const f = featuresOf({ ...O_R64 })
    expect(h200(H200_CPU).choose(f, BOTH), 'warm').toBe('wasm')
    expect(h200({ ...H200_CPU, coldReadGBs: 3.5 }).choose(f, BOTH), 'cold').toBe('webgpu')
    expect(h200({ ...H200_CPU, coldReadGBs: 30 }).choose(f, BOTH), 'a cold rate above the warm one changes nothing').toBe('wasm')
  })

  it('H200 rates, cold: small layers at T = 1 stay on wasm, and so does a slow cold read at T = 1 of an r16 o_proj', () => {
    const d = h200({ ...H200_CPU, coldReadGBs: 3.5 })
    for (const weightDtype of ['f32', 'bf16'] as const) {
      expect(d.choose(featuresOf({ rank: 16, inFeatures: 4096, outFeatures: 4096, tokens: 1, weightDtype }), BOTH)).toBe('wasm')
      expect(d.choose(featuresOf({ ...QKV, tokens: 1, weightDtype: 'bf16' }), BOTH)).toBe('wasm')
    }
  })

  it('a profile keeps a valid cold read rate and refuses a bad one', async () => {
    const p = profileOf(SLOW_GPU)
    const withCold = { ...p, backends: { ...p.backends, wasm: { ...p.backends.wasm, coldReadGBs: 4.5 } } }
    expect(checkProfile(withCold).backends.wasm?.coldReadGBs).toBe(4.5)
    expect(checkProfile(p).backends.wasm?.coldReadGBs).toBeUndefined()
    for (const bad of [0, -1, Number.NaN, '4']) {
      const q = { ...p, backends: { wasm: { ...p.backends.wasm, coldReadGBs: bad } } }
      await expectLoraError(() => createRuntime({ profile: q as never }), 'INVALID_ARGUMENT', ['profile.backends.wasm.coldReadGBs'])
    }
  })

  it('the probe: null past its deadline or below its minimum size, else a positive finite rate', () => {
    expect(probeColdRead(performance.now() - 1)).toBeNull()
    expect(coldReadGBs(8 << 20, 16 << 20, Number.POSITIVE_INFINITY), '8 MiB allocated, 16 needed').toBeNull()
    const r = coldReadGBs(8 << 20, 4 << 20, Number.POSITIVE_INFINITY)
    expect(r).not.toBeNull()
    expect(Number.isFinite(r) && r! > 0).toBe(true)
  })
})

describe("'auto' leaves out a backend that cannot hold a call's host data", () => {
  const usable: BackendName[] = ['wasm', 'webgpu']
  const small = { ...recorder('webgpu', []), maxCallBuffer: 1 << 20 }
  const featuresAt = (tokens: number, resident: CallFeatures['resident'] = 'host') => ({ ...featuresOf({ ...QKV, tokens }), resident })
  // y of T x 6144 f32: 1 MiB holds 42 tokens
  it('keeps the usable array while every backend can hold the call', () => {
    expect(fittingBackends([recorder('wasm', []), small], featuresAt(42), usable)).toBe(usable)
  })
  it('leaves out the one that cannot, and none where none can or the data is on the GPU', () => {
    expect(fittingBackends([recorder('wasm', []), small], featuresAt(43), usable)).toEqual(['wasm'])
    expect(fittingBackends([recorder('wasm', []), small], featuresAt(4096, 'gpu'), usable)).toBe(usable)
    const tiny = { ...recorder('wasm', []), maxCallBuffer: 1024 }
    expect(fittingBackends([tiny, small], featuresAt(4096), usable)).toBe(usable)
  })
  it.runIf(gpuHere)('a runtime whose GPU is predicted far faster runs a call too big for its buffers on wasm', async () => {
    const rt = await createRuntime({ backend: 'auto', profile: profileOf(FAST_GPU) })
    try {
      const gpu = backendsOf(rt).find((b) => b.name === 'webgpu')!
      const layer = rt.createLayer({ inFeatures: 256, outFeatures: 256, maxAdapters: 1, maxRank: 4 })
      layer.setAdapter(0, { rank: 4, scale: 1, A: [new Float32Array(4 * 256).fill(0.5)], B: [new Float32Array(256 * 4).fill(0.5)] })
      const T = 2048
      const call = () => layer.apply(new Float32Array(T * 256).fill(1), new Float32Array(T * 256), new Int32Array(T))
      await call()
      expect(lastBackendOf(rt), 'the GPU is the prediction at this size').toBe('webgpu')
      // the same call with the GPU's buffers made smaller than its x and y (2 MiB each)
      Object.defineProperty(gpu, 'maxCallBuffer', { value: 1 << 20 })
      const y = new Float32Array(T * 256)
      await layer.apply(new Float32Array(T * 256).fill(1), y, new Int32Array(T))
      expect(lastBackendOf(rt)).toBe('wasm')
      expect(y[0]).toBeCloseTo(256 * 0.5 * 0.5 * 4, 3)
    } finally {
      rt.dispose()
    }
  })
})
