import { describe, expect, it } from 'vitest'
import type { Backend } from '../src/backend.js'
import type { CallFeatures } from '../src/dispatch/cost.js'
import { DecisionMemo, Dispatcher, featuresOf, PREDICTION_MARGIN } from '../src/dispatch/dispatch.js'
import { EXPLORE_RATIO, MEASURED_WEIGHT, PATIENCE, PAUSE_MS, RETRY_CALLS, SPIKE } from '../src/dispatch/memo.js'
import { LoraLayer } from '../src/layer.js'
import type { BackendName, LayerSpec } from '../src/types.js'
import { BOTH, FAST_GPU, fakeBackend, profileOf, traits } from './dispatch-fixtures.js'

const profile = profileOf(FAST_GPU)
/** One token, one adapter: wasm is predicted faster (no GPU call and round trip to pay). */
const f: CallFeatures = featuresOf({ tokens: 1, rank: 16, inFeatures: 1024, outFeatures: 1024 })

describe("'auto' decides on measured times where a layer has them", () => {
  const setup = () => {
    const d = new Dispatcher(traits, profile)
    const memo = new DecisionMemo()
    const wasm = d.predictMs('wasm', f).ms
    const gpu = d.predictMs('webgpu', f).ms
    expect(wasm * 3, 'the call this test needs: wasm predicted well ahead').toBeLessThan(gpu)
    return { d, memo, wasm, gpu }
  }

  it('moves to the other backend once the chosen one measures slower than its prediction, and back', () => {
    const { d, memo, gpu } = setup()
    expect(d.choose(f, BOTH, memo)).toBe('wasm')
    memo.observe(f, 'wasm', 10 * gpu) // a backend's first call is not counted
    expect(d.choose(f, BOTH, memo)).toBe('wasm')
    memo.observe(f, 'wasm', 2 * gpu)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBe(2 * gpu)
    expect(d.choose(f, BOTH, memo), 'wasm measured 2x the predicted GPU time').toBe('webgpu')
    memo.observe(f, 'webgpu', 100 * gpu) // first: not counted
    expect(d.choose(f, BOTH, memo), 'the GPU has no measured time yet: its prediction').toBe('webgpu')
    memo.observe(f, 'webgpu', 3 * gpu)
    expect(d.choose(f, BOTH, memo), 'the GPU measured slower than wasm did').toBe('wasm')
    // without the memo (and in explain) the predictions alone decide
    expect(d.choose(f, BOTH)).toBe('wasm')
    // an average: a few fast GPU calls bring it under wasm's 2x again
    memo.observe(f, 'webgpu', 0.1 * gpu)
    expect(d.choose(f, BOTH, memo), 'one fast call: 2.13x').toBe('wasm')
    for (let i = 0; i < 3; i++) memo.observe(f, 'webgpu', 0.1 * gpu)
    expect(d.choose(f, BOTH, memo)).toBe('webgpu')
    expect(d.decide(f, BOTH).backend).toBe('wasm')
  })

  it('averages the times, a pause counted as at most SPIKE x the average, and ignores other features', () => {
    const { d, memo, gpu } = setup()
    d.choose(f, BOTH, memo)
    memo.observe(f, 'wasm', 1)
    memo.observe(f, 'wasm', gpu)
    memo.observe(f, 'wasm', 1000 * gpu)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBeCloseTo(
      (1 - MEASURED_WEIGHT) * gpu + MEASURED_WEIGHT * (SPIKE * gpu + PAUSE_MS),
      12,
    )
    memo.observe({ ...f, tokens: 2 }, 'wasm', 0)
    memo.observe(f, 'wasm', Number.NaN)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm'), 'a call of other features, a NaN: not counted').toBeCloseTo(
      (1 - MEASURED_WEIGHT) * gpu + MEASURED_WEIGHT * (SPIKE * gpu + PAUSE_MS),
      12,
    )
    expect(memo.measuredMs({ ...f, tokens: 2 }, BOTH, d.ratesVersion, 'wasm')).toBeNaN()
    // an average of 0 (a coarse clock) still moves
    const coarse = new DecisionMemo()
    d.choose(f, BOTH, coarse)
    for (const ms of [0, 0, 1]) coarse.observe(f, 'wasm', ms)
    expect(coarse.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBeCloseTo(MEASURED_WEIGHT * PAUSE_MS, 12)
    // new features drop the times: they were of another call
    d.choose({ ...f, tokens: 2 }, BOTH, memo)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBeNaN()
    // and so do new rates
    d.choose(f, BOTH, memo)
    memo.observe(f, 'wasm', 1)
    memo.observe(f, 'wasm', 5)
    d.setProfile(profile)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBeNaN()
  })

  it('tries a backend that sat out PATIENCE calls (then 2x, 4x) once more', () => {
    const { d, memo, gpu } = setup()
    // the truth: wasm takes 2x the GPU's predicted time, the GPU its prediction
    const truth = { wasm: 2 * gpu, webgpu: gpu }
    const ran: BackendName[] = []
    const serve = (calls: number, slowGpu = false) => {
      for (let c = 0; c < calls; c++) {
        const b = d.choose(f, BOTH, memo)
        ran.push(b)
        memo.observe(f, b, b === 'webgpu' && slowGpu ? 10 * gpu : truth[b])
      }
    }
    serve(2) // wasm's first call (not counted), its second: 2x the GPU
    serve(2, true) // the GPU's first call, then one slow call: 10x
    expect(ran.splice(0)).toEqual(['wasm', 'wasm', 'webgpu', 'webgpu'])
    serve(PATIENCE + 2)
    // wasm again until the GPU sat out PATIENCE calls, then the GPU, and there it stays
    expect(ran.splice(0)).toEqual([...new Array(PATIENCE).fill('wasm'), 'webgpu', 'webgpu'])
    // wasm sat out PATIENCE calls too: tried once more (RETRY_CALLS calls in a row), then twice as long between tries
    serve(4 * PATIENCE)
    const tries = ran.flatMap((b, i) => (b === 'wasm' && ran[i - 1] !== 'wasm' ? [i] : []))
    expect(ran.filter((b) => b === 'wasm').length).toBe(2 * RETRY_CALLS)
    expect(tries.length).toBe(2)
    expect(tries[1] - tries[0]).toBeGreaterThanOrEqual(2 * PATIENCE)
  })

  it('keeps its stored decision while the average moves less than half the margin between the backends', () => {
    const { d, memo, wasm, gpu } = setup()
    d.choose(f, BOTH, memo)
    memo.observe(f, 'wasm', wasm)
    expect(memo.lookup(f, BOTH, d.previous, d.ratesVersion), 'kept: not measured yet').toBe('wasm')
    memo.observe(f, 'wasm', wasm)
    expect(memo.lookup(f, BOTH, d.previous, d.ratesVersion), 'dropped at the first measured time').toBeNull()
    expect(d.choose(f, BOTH, memo)).toBe('wasm')
    const margin = gpu - wasm
    // a slow call moves the average by 0.3 x 0.5 margin: kept
    memo.observe(f, 'wasm', wasm + 0.5 * margin)
    expect(memo.lookup(f, BOTH, d.previous, d.ratesVersion), 'kept').toBe('wasm')
    // slower calls: kept until the average has moved over half the margin
    let calls = 0
    for (; calls < 20; calls++) {
      const moved = memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm') - wasm
      expect(memo.lookup(f, BOTH, d.previous, d.ratesVersion), `moved ${moved} of a margin of ${margin}`).toBe(
        moved > 0.5 * margin ? null : 'wasm',
      )
      if (moved > 0.5 * margin) break
      memo.observe(f, 'wasm', wasm + 2 * margin)
    }
    expect(calls, 'decided again').toBeGreaterThan(0)
    expect(calls).toBeLessThan(20)
  })

  it('tries a forgotten backend by running it, not by its prediction', () => {
    // the GPU predicted faster than wasm, and faster still in truth; wasm faster than predicted
    const big = featuresOf({ tokens: 256, rank: 16, inFeatures: 4096, outFeatures: 4096 })
    const d = new Dispatcher(traits, profile)
    const memo = new DecisionMemo()
    const predicted = { wasm: d.predictMs('wasm', big).ms, webgpu: d.predictMs('webgpu', big).ms }
    expect(predicted.webgpu * 2, 'the call this test needs: the GPU predicted well ahead').toBeLessThan(predicted.wasm)
    const truth = { wasm: 0.8 * predicted.webgpu, webgpu: 0.5 * predicted.webgpu }
    const ran: BackendName[] = []
    const serve = (calls: number, gpuMs?: number) => {
      for (let c = 0; c < calls; c++) {
        const b = d.choose(big, BOTH, memo)
        ran.push(b)
        memo.observe(big, b, b === 'webgpu' && gpuMs !== undefined ? gpuMs : truth[b])
      }
    }
    serve(2)
    expect(ran.splice(0)).toEqual(['webgpu', 'webgpu'])
    // GPU calls slowed by something else (a pause, another process) until wasm runs (its
    // prediction wins, or it is tried as the GPU slows)
    for (let i = 0; i < 20 && !ran.includes('wasm'); i++) serve(1, 20 * predicted.wasm)
    expect(ran, 'wasm ran once the GPU had slowed').toContain('wasm')
    ran.length = 0
    serve(2) // wasm's calls, measured: faster than the GPU's prediction
    expect(memo.measuredMs(big, BOTH, d.ratesVersion, 'wasm')).toBeLessThan(predicted.webgpu)
    // the GPU's slow time is forgotten after PATIENCE calls: it runs once, measures its truth, and stays
    serve(3 * PATIENCE)
    const firstGpu = ran.indexOf('webgpu')
    expect(firstGpu, `${ran}`).toBeGreaterThan(0)
    expect(firstGpu).toBeLessThanOrEqual(PATIENCE + 2)
    // there it stays (wasm's own time forgotten in turn after PATIENCE GPU calls: tried once)
    const after = ran.slice(firstGpu)
    expect(after.slice(0, PATIENCE).join(), 'on the GPU from then on').toBe(new Array(PATIENCE).fill('webgpu').join())
    expect(after.filter((b) => b === 'wasm').length).toBeLessThanOrEqual(RETRY_CALLS)
  })

  it('times a backend on its calls that follow its own, not on the first after a switch', () => {
    // as the H100 host's T = 1 calls: the GPU 25% faster than wasm call after call, but a GPU call
    // right after wasm calls (an idle GPU) far slower than wasm; so is a wasm call right after GPU calls
    const big = featuresOf({ tokens: 256, rank: 16, inFeatures: 4096, outFeatures: 4096 })
    const d = new Dispatcher(traits, profile)
    const memo = new DecisionMemo()
    const p = d.predictMs('webgpu', big).ms
    expect(p * 2, 'the call this test needs: the GPU predicted well ahead').toBeLessThan(d.predictMs('wasm', big).ms)
    const steady = { wasm: 0.5 * p, webgpu: 0.375 * p }
    const ran: BackendName[] = []
    const serve = (calls: number, gpuMs?: number) => {
      for (let c = 0; c < calls; c++) {
        const b = d.choose(big, BOTH, memo)
        const switched = ran.length > 0 && ran[ran.length - 1] !== b
        ran.push(b)
        memo.observe(big, b, b === 'webgpu' && gpuMs !== undefined ? gpuMs : switched ? 3 * steady[b] : steady[b])
      }
    }
    // a slow GPU phase (another process) hands the calls to wasm
    serve(2)
    for (let i = 0; i < 20 && d.choose(big, BOTH, memo) === 'webgpu'; i++) serve(1, 20 * p)
    expect(d.choose(big, BOTH, memo)).toBe('wasm')
    ran.length = 0
    serve(8 * PATIENCE)
    // the GPU is tried again after PATIENCE calls: its second call in a row is the one timed, and
    // it stays (wasm re-tried now and then)
    expect(ran.slice(-4 * PATIENCE).filter((b) => b === 'wasm').length, `${ran}`).toBeLessThanOrEqual(RETRY_CALLS)
  })

  it('tries a backend never run, predicted within EXPLORE_RATIO of the measured one, and only such', () => {
    const big = featuresOf({ tokens: 256, rank: 16, inFeatures: 4096, outFeatures: 4096 })
    const run = (gpuOverWasmPrediction: number) => {
      const d = new Dispatcher(traits, profile)
      const memo = new DecisionMemo()
      const pw = d.predictMs('wasm', big).ms
      expect(d.predictMs('webgpu', big).ms * 2, 'the call this test needs: the GPU predicted well ahead').toBeLessThan(pw)
      // the GPU slower than predicted, wasm twice as fast as predicted
      const truth = { wasm: 0.5 * pw, webgpu: gpuOverWasmPrediction * pw }
      const ran: BackendName[] = []
      for (let c = 0; c < 8 * PATIENCE; c++) {
        const b = d.choose(big, BOTH, memo)
        ran.push(b)
        memo.observe(big, b, truth[b])
      }
      return ran
    }
    // wasm predicted at the GPU's measured time (not the 10% below it that would make it win):
    // tried after PATIENCE GPU calls, and kept
    const near = run(1)
    expect(near.indexOf('wasm'), `${near}`).toBe(PATIENCE)
    expect(near.slice(-4 * PATIENCE).filter((b) => b === 'webgpu').length, `${near}`).toBeLessThanOrEqual(RETRY_CALLS)
    // predicted at 1.6x the GPU's measured time: never tried
    expect(run(1 / (EXPLORE_RATIO + 0.1)).includes('wasm')).toBe(false)
  })

  it('does not leave a backend 20% ahead for one slow call, but for a few', () => {
    const { d, memo } = setup()
    d.choose(f, BOTH, memo)
    for (const [b, ms] of [
      ['wasm', 1],
      ['wasm', 1],
      ['webgpu', 0.8],
      ['webgpu', 0.8],
    ] as const)
      memo.observe(f, b, ms)
    expect(d.choose(f, BOTH, memo)).toBe('webgpu')
    memo.observe(f, 'webgpu', 3) // a pause: 3.75x the GPU's time
    expect(d.choose(f, BOTH, memo), 'one slow call').toBe('webgpu')
    let calls = 1
    for (; calls < 10 && d.choose(f, BOTH, memo) === 'webgpu'; calls++) memo.observe(f, 'webgpu', 3)
    expect(d.choose(f, BOTH, memo), 'a GPU slowed down for good').toBe('wasm')
    expect(calls).toBeLessThanOrEqual(4)
  })

  it('leaves a measured backend only for a prediction PREDICTION_MARGIN lower', () => {
    const { d, memo, gpu } = setup()
    expect(d.choose(f, BOTH, memo)).toBe('wasm')
    memo.observe(f, 'wasm', gpu) // first: not counted
    // measured a little slower than the GPU's prediction, within the margin: stays
    const within = gpu * 1.05
    memo.observe(f, 'wasm', within)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBe(within)
    expect(d.choose(f, BOTH, memo), 'the GPU predicted 5% faster than wasm measured').toBe('wasm')
    // past the margin: the GPU
    for (let i = 0; i < 10 && d.choose(f, BOTH, memo) === 'wasm'; i++) memo.observe(f, 'wasm', 2 * gpu)
    expect(memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')).toBeGreaterThan(gpu * (1 + PREDICTION_MARGIN))
    expect(d.choose(f, BOTH, memo)).toBe('webgpu')
    // with both measured, the times alone decide, however close
    memo.observe(f, 'webgpu', gpu) // first: not counted
    const wasmNow = memo.measuredMs(f, BOTH, d.ratesVersion, 'wasm')
    memo.observe(f, 'webgpu', wasmNow * 1.01)
    expect(d.choose(f, BOTH, memo), 'the GPU measured 1% slower than wasm').toBe('wasm')
  })
})

/** A backend whose layer records its calls; wasm's take `wasmMs` of busy time, webgpu's resolve at once. */
function fake(name: BackendName, ran: BackendName[], wasmMs: number): Backend {
  return fakeBackend(
    name,
    name === 'wasm'
      ? () => {
          const end = performance.now() + wasmMs
          while (performance.now() < end) {}
          ran.push(name)
        }
      : () => {
          ran.push(name)
          return Promise.resolve()
        },
  )
}

describe('a layer times its auto calls', () => {
  it('runs on the GPU once wasm measured far slower than predicted, forced calls not counted', async () => {
    const ran: BackendName[] = []
    // wasm is predicted at ~0.03 ms for this call and takes 20 ms: 'auto' must learn it
    const backends = [fake('wasm', ran, 20), fake('webgpu', ran, 0)]
    const d = new Dispatcher(traits, profile)
    const host = {
      defaultBackend: 'auto' as const,
      checkAlive() {},
      pick: (choice: string, g: CallFeatures, memo?: DecisionMemo) =>
        backends.find((b) => b.name === (choice === 'auto' ? d.choose(g, BOTH, memo) : choice))!,
    }
    const spec: LayerSpec = {
      inFeatures: 1024,
      sliceWidths: [1024],
      sliceOffsets: [0],
      outFeatures: 1024,
      maxAdapters: 1,
      maxRank: 16,
      weightDtype: 'f32',
    }
    const layer = new LoraLayer(host, spec, backends)
    layer.setAdapter(0, { rank: 16, scale: 1, A: [new Float32Array(16 * 1024)], B: [new Float32Array(1024 * 16)] })
    const x = new Float32Array(1024)
    const y = new Float32Array(1024)
    const ids = Int32Array.of(0)
    expect(d.decide(f, BOTH).backend, 'predicted: wasm').toBe('wasm')
    // forced calls teach the memo nothing
    for (let i = 0; i < 3; i++) await layer.apply(x, y, ids, { backend: 'wasm' })
    await layer.apply(x, y, ids)
    expect(ran.splice(0)).toEqual(['wasm', 'wasm', 'wasm', 'wasm'])
    for (let i = 0; i < 4; i++) await layer.apply(x, y, ids)
    // the first auto call was not counted, the second measured 20 ms: from the third on, the GPU
    expect(ran.splice(0)).toEqual(['wasm', 'webgpu', 'webgpu', 'webgpu'])
  })
})
