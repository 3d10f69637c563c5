/**
 * Calibration: measure each backend's rates on this machine (src/dispatch/cost.ts) by timing a few small
 * calls, each chosen so that one term of the cost model dominates it:
 *
 *   tiny   T=1, in=out=64, rank 1            -> callMs (GPU: on GPU buffers, until submitted;
 *                                                roundTripMs: the same on host arrays, less that)
 *   segs   T=32 over 32 tiny adapters        -> segmentMs
 *   copy   T=64, in=out=1024, rank 1         -> hostGBs (GPU: host arrays vs GPU buffers)
 *   gemv   one token per adapter, rank 16    -> weightGBs[dtype] (weights rotate over coldBytes)
 *   gemm   T=64 (full: 256), rank 32, 2048^2  -> gflops[dtype] (full: 4096^2)
 *   the f32 gemm again on every thread       -> parallel.speedup (a multi-threaded wasm backend)
 *   16-48 MiB of plain buffers read once      -> coldReadGBs (short, wasm beside a GPU: cold-read.ts)
 *   tiny after a tiny call on the other backend -> switchMs (with two backends, time permitting)
 *
 * 'short' (createRuntime, <= 300 ms in all, plus the GPU's first pipeline compilations, which a
 * first GPU call would pay anyway: warmGpu) measures f32 and bf16 on wasm with warm weights (in=out
 * 512: filling a cold working set costs ~15 ms per MiB; warm weight rates are bounded by the cold
 * read rate, else the prior; warm arithmetic rates stay ~1.5x above cold serving ones), and on the
 * GPU whatever fits in the rest of the budget, most telling first (a first GPU call compiles
 * pipelines); 'full' (rt.calibrate()) every dtype over 64 MiB (cold, as in serving). Rates not
 * measured within the budget keep their priors (scaled like the measured ones) and are not listed
 * in `measured`. A GPU point still running at the deadline is abandoned, not awaited.
 */
import { type BackendRates, predict, priorRates } from './cost.js'
import type { Profile, ProfileEntry, ProfileMachine } from './profile.js'
import { bytesPerAdapter, type Point, type Target, timePoint, timeSwitch } from './calibrate-run.js'
import { probeColdRead } from './cold-read.js'
import type { WeightDtype } from '../types.js'

export type { Target } from './calibrate-run.js'

export interface CalibrateOptions {
  kind: 'short' | 'full'
  /** Wall-time budget of the whole calibration (ms). Default 300 for 'short', 20000 for 'full'. */
  budgetMs?: number
}

/** What a calibration needs to know of a backend. */
export interface CalibrationTarget extends Target {
  isSoftware: boolean
  /** A multi-threaded backend: its thread count, and a way to fix the threads of every call (null: its own choice). */
  parallel?: { threads: number; force(parts: number | null): void }
}

const MIB = 1 << 20

/** Calibrate every target within the budget; wasm first (cheap, always useful), then the GPU. */
export async function calibrate(
  targets: readonly CalibrationTarget[],
  machine: ProfileMachine,
  options: CalibrateOptions,
): Promise<Profile> {
  const start = performance.now()
  const full = options.kind === 'full'
  const budget = options.budgetMs ?? (full ? 20000 : 300)
  // margin: a GPU call can block the thread (~35 ms of pipeline compilation on lavapipe) past its timer
  let deadline = start + budget - (targets.some((t) => t.backend.name === 'webgpu') ? 40 : 5)
  const backends: Profile['backends'] = {}
  // how much slower than nominal the CPU points ran (JIT warm-up, a loaded machine): shared by
  // every target, since a loaded machine also stretches the GPU's blocking compilations
  const load = { slowdown: 1 }
  const ordered = [...targets].sort((a, b) => (a.backend.name === 'wasm' ? -1 : 0) - (b.backend.name === 'wasm' ? -1 : 0))
  for (let i = 0; i < ordered.length; i++) {
    const t = ordered[i]
    // wasm gets at most a third of a short budget; the GPU (slow first calls) the rest
    const share = !full && t.backend.name === 'wasm' && ordered.length > 1 ? start + budget / 3 : deadline
    // the GPU's pipeline compilation is not part of its budget
    if (t.backend.name === 'webgpu') deadline += await warmGpu(t, full)
    // rates are per thread: every point on one thread, but the one that measures the speed-up
    t.parallel?.force(1)
    try {
      const end = t.backend.name === 'webgpu' ? deadline : Math.min(share, deadline)
      // the cold read rate matters only where 'auto' has a choice (wasm beside a GPU)
      backends[t.backend.name] = await calibrateOne(t, full, end, load, !full && t.backend.name === 'wasm' && ordered.length > 1)
    } finally {
      t.parallel?.force(null)
    }
  }
  // switching: a tiny call on each backend right after one on the other (the GPU's pipelines are
  // compiled by now when its callMs was measured; without it, no switching point is started)
  const gpuReady = backends.webgpu?.measured.includes('callMs') ?? false
  for (const t of ordered.length === 2 && gpuReady ? ordered : []) {
    const entry = backends[t.backend.name]!
    const other = ordered.find((o) => o !== t)!
    if (performance.now() + 20 * load.slowdown >= deadline) break
    const ms = await timeSwitch(t, other, full ? 15 : 5, deadline).catch(() => null)
    if (ms !== null) (entry.switchMs = ms), entry.measured.push('switchMs')
  }
  return {
    version: 1,
    kind: options.kind,
    createdAt: new Date().toISOString(),
    machine,
    calibrationMs: performance.now() - start,
    backends,
  }
}

/** The points a calibration times (the GPU's pipelines for them are compiled first, see warmGpu). */
function pointsOf(full: boolean, discrete: boolean) {
  const size = full ? 1024 : 512
  const base: Point = { inF: 64, out: 64, rank: 1, distinct: 1, tokens: 1, dtype: 'f32', resident: 'host', coldBytes: 0 }
  return {
    size,
    base,
    segs: { ...base, distinct: 32, tokens: 32 },
    copy: { ...base, inF: discrete ? 1024 : size, out: discrete ? 1024 : size, tokens: discrete ? 256 : 64 },
    // serving-like widths (weights past L1/L2, as in a 4096-wide layer) and rank 32: enough
    // arithmetic per activation byte that the copies are a small correction
    gemm: (dtype: WeightDtype, resident: Point['resident'], coldBytes: number): Point => ({
      ...base,
      inF: 4 * size,
      out: 4 * size,
      rank: 32,
      tokens: full ? 256 : 64,
      dtype,
      resident,
      coldBytes,
    }),
    gemv: (dtype: WeightDtype, resident: Point['resident'], coldBytes: number): Point => ({
      ...base,
      inF: size,
      out: size,
      rank: 16,
      distinct: 8,
      tokens: 8,
      dtype,
      resident,
      coldBytes,
    }),
  }
}

/**
 * One untimed call of each GPU point's shape, before the GPU's share of the budget starts: a first
 * call compiles its pipelines (180+ ms for the first point on lavapipe, more than a short budget
 * holds), which any first GPU call pays once anyway. Returns the ms it took (at most ~5 s waited).
 */
async function warmGpu(t: CalibrationTarget, full: boolean): Promise<number> {
  const t0 = performance.now()
  const p = pointsOf(full, !t.isSoftware)
  const shapes = [p.base, p.segs, { ...p.copy, resident: 'gpu' as const }, p.gemm('f32', 'gpu', 0), p.gemv('f32', 'gpu', 0)]
  const all = (async () => {
    for (const s of shapes) await timePoint(t, s, 0, 0)
  })().catch(() => undefined)
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)))])
  clearTimeout(timer)
  return performance.now() - t0
}

type Load = { slowdown: number }
async function calibrateOne(t: CalibrationTarget, full: boolean, deadline: number, load: Load, probeCold: boolean): Promise<ProfileEntry> {
  const gpu = t.backend.name === 'webgpu'
  const rates: BackendRates = structuredClone(priorRates(t.backend.name, t.isSoftware))
  const measured: string[] = []
  const cold = full ? 64 * MIB : 0
  const reps = full ? 15 : gpu ? 3 : 6
  const discrete = gpu && !t.isSoftware
  const { size, base, segs: segsPoint, copy: copyPoint, gemm: gemmOf, gemv: gemvOf } = pointsOf(full, discrete)
  // CPU points run synchronously and cannot be interrupted: one starts only if its estimate,
  // scaled by the slowdown seen so far, fits.
  /** Time a point unless the deadline passed; a GPU point is abandoned (left to finish) at the deadline. */
  const run = async (p: Partial<Point>): Promise<number | null> => {
    const point = { ...base, ...p }
    const nominal = nominalMs(point, rates, reps)
    // a GPU point can block the thread (~30 ms of pipeline compilation on lavapipe) past its timer
    // (the GPU's compilations ran before its budget, warmGpu: its margin grows little with the CPU's slowdown)
    if (performance.now() + (gpu ? 40 * Math.min(load.slowdown, 2) : nominal * load.slowdown * 1.5) >= deadline) return null
    const t0 = performance.now()
    // a failing point (e.g. a GPU error) leaves the priors in place: calibration never breaks a runtime
    const timing = timePoint(t, point, reps, deadline).catch(() => null)
    if (!gpu) return timing.finally(() => (load.slowdown = Math.max(load.slowdown, (performance.now() - t0) / nominal)))
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), Math.max(0, deadline - performance.now()))))
    try {
      return await Promise.race([timing, late])
    } finally {
      clearTimeout(timer)
    }
  }
  // every GPU point waits for its results (a readback, or settled() on GPU buffers): a round trip
  const overhead = (p: Point, segments: number): number =>
    rates.callMs +
    (rates.roundTripMs ?? 0) +
    segments * rates.segmentMs +
    (p.resident === 'host' ? (p.tokens * (p.inF + 2 * p.out) * 4) / rates.hostGBs / 1e6 : 0)

  // GPU: the call on host arrays first (what a budget too short for both must still measure), then
  // the launch alone (GPU buffers, until submitted): the host call's excess over it is the round
  // trip, under Dawn tens of microseconds, under wgpu (Deno) ~11 ms. Without it callMs keeps all.
  const tiny = await run({})
  const launch = gpu && tiny !== null ? await run({ resident: 'gpu', noWait: true }) : null
  if (tiny !== null) (rates.callMs = tiny), measured.push('callMs')
  if (launch !== null && tiny !== null && launch < tiny) {
    rates.callMs = launch
    rates.roundTripMs = tiny - launch
    measured.push('roundTripMs')
  } else if (gpu && tiny !== null) rates.roundTripMs = 0
  const segments = async (): Promise<void> => {
    const segs = await run(segsPoint)
    if (segs !== null && tiny !== null) (rates.segmentMs = Math.max(0, (segs - tiny) / 31)), measured.push('segmentMs')
  }
  // A hardware GPU's transfers decide most calls from T = 16 to 1024 (host arrays to an H200 and
  // back paid 2-3 GB/s, against 8 of the old prior): measured first, on a few MB (uploads and
  // readbacks of small arrays are all latency, which callMs holds). A software adapter's copies are
  // the CPU's own: measured last, as before.
  const copyBytes = copyPoint.tokens * 3 * copyPoint.inF * 4
  const copyFlops = 2 * copyPoint.tokens * 2 * copyPoint.inF
  const copies = async (): Promise<void> => {
    if (gpu) {
      const host = await run(copyPoint)
      const res = await run({ ...copyPoint, resident: 'gpu' })
      if (host !== null && res !== null && host > res) (rates.hostGBs = copyBytes / (host - res) / 1e6), measured.push('hostGBs')
    } else {
      const copy = await run(copyPoint)
      const left = copy === null ? 0 : copy - rates.callMs - rates.segmentMs - copyFlops / rates.gflops.f32 / 1e6
      if (left > 0) (rates.hostGBs = copyBytes / left / 1e6), measured.push('hostGBs')
    }
  }
  // the GPU's dtype points run on resident data, so they do not need hostGBs first
  if (!gpu) await segments(), await copies()
  else if (discrete) await copies()

  const dtypes: WeightDtype[] = full ? ['f32', 'bf16', 'f16'] : gpu ? ['f32'] : ['f32', 'bf16']
  // on the GPU, time resident calls: the transfers are already measured by hostGBs
  const resident = gpu ? 'gpu' : 'host'
  for (const dtype of dtypes) {
    const gemm = gemmOf(dtype, resident, cold)
    const tm = await run(gemm)
    const wm = tm === null ? 0 : tm - overhead(gemm, gemm.tokens / 64)
    if (wm > 0) (rates.gflops[dtype] = (2 * gemm.tokens * 32 * 8 * size) / wm / 1e6), measured.push(`gflops.${dtype}`)
    const par = t.parallel
    if (dtype === 'f32' && wm > 0 && par && par.threads > 1) {
      // the same call on every thread: the speed-up of the kernel part (copies stay on one thread)
      par.force(par.threads)
      const tp = await run(gemm)
      par.force(1)
      const wp = tp === null ? 0 : tp - overhead(gemm, gemm.tokens / 64)
      if (wp > 0)
        (rates.parallel = { threads: par.threads, speedup: Math.min(par.threads, Math.max(0.25, wm / wp)) }), measured.push('parallel')
    }
    const gemv = gemvOf(dtype, resident, cold)
    const tv = await run(gemv)
    const wv = tv === null ? 0 : tv - overhead(gemv, 8)
    if (wv > 0) (rates.weightGBs[dtype] = (8 * bytesPerAdapter(gemv)) / wv / 1e6), measured.push(`weightGBs.${dtype}`)
    // the short calibration's weights are warm: what they cost cold, once, after the f32 points
    if (probeCold && dtype === 'f32' && performance.now() + 20 < deadline) {
      const cold = probeColdRead(deadline - 15)
      if (cold !== null) (rates.coldReadGBs = cold), measured.push('coldReadGBs')
    }
  }
  if (gpu && !discrete) await copies()
  if (gpu) await segments()
  // a short calibration reads warm weights (cached), 2-4x faster than cold ones (serving) on the
  // H200 host: the cold read rate bounds them (cost.ts weightRate), else the prior does
  if (!full && !gpu && rates.coldReadGBs === undefined)
    for (const d of dtypes) rates.weightGBs[d] = Math.min(rates.weightGBs[d], priorRates('wasm', false).weightGBs[d])
  // a rate 30x off its prior is a measurement gone wrong (a preempted point), not this machine
  const prior0 = priorRates(t.backend.name, t.isSoftware)
  for (const key of ['weightGBs', 'gflops'] as const) {
    for (const d of dtypes) {
      const v = rates[key][d]
      if (!(v > prior0[key][d] / 30 && v < prior0[key][d] * 30)) {
        rates[key][d] = prior0[key][d]
        measured.splice(measured.indexOf(`${key}.${d}`), 1)
      }
    }
  }
  // dtypes not measured: scale their priors like the measured half-precision (or f32) rate
  const ref: WeightDtype = measured.includes('gflops.bf16') ? 'bf16' : 'f32'
  const prior = priorRates(t.backend.name, t.isSoftware)
  for (const d of ['bf16', 'f16'] as WeightDtype[]) {
    if (!measured.includes(`gflops.${d}`)) rates.gflops[d] = prior.gflops[d] * (rates.gflops[ref] / prior.gflops[ref])
    if (!measured.includes(`weightGBs.${d}`)) rates.weightGBs[d] = rates.weightGBs[ref]
  }
  return { ...rates, measured }
}

/**
 * Rough time of a CPU point on an idle machine with JIT-compiled code: filling the layer (~5 ns
 * per weight value, twice that for half-precision encoding) plus the calls as predicted so far.
 */
function nominalMs(p: Point, rates: BackendRates, reps: number): number {
  const copies = Math.max(1, Math.ceil(p.coldBytes / (p.distinct * bytesPerAdapter(p))))
  const values = copies * p.distinct * p.rank * (p.inF + p.out) + p.tokens * (p.inF + p.out)
  const call = predict(rates, {
    tokens: p.tokens,
    entries: p.tokens,
    distinct: p.distinct,
    rankSum: p.distinct * p.rank,
    rankEntries: p.tokens * p.rank,
    inFeatures: p.inF,
    outFeatures: p.out,
    slices: 1,
    weightDtype: p.dtype,
    resident: p.resident,
  }).ms
  return 0.5 + (values * (p.dtype === 'f32' ? 5 : 10)) / 1e6 + Math.min(6, 60 * call) + reps * call
}
