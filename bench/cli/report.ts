/**
 * Turning timings into the figures of the report: per point and dtype, the regret of 'auto'
 * (time(auto) / time(best forced backend)), wasm vs the peers, and the fraction of the machine's
 * ceilings (measured in the same run) that wasm reached.
 */
import type { Ceilings } from '../ceilings.js'
import { adapterBytes, type Group } from './grid.js'
import type { PointResult } from './run-point.js'

export interface Row {
  shape: string
  rank: number
  distinct: number
  T: number
  dtype: string
  /** ms per contender id (backends of this dtype, and the f32 peers). */
  ms: Record<string, number>
  choice: string
  predictedMs: Record<string, number>
  reason: string
  /** time(auto) / time(best forced): median of back-to-back pairs (regretPairs of them). */
  regret: number
  /** 90% bootstrap interval of the regret (the machine's noise on it). */
  regretLow?: number
  regretHigh?: number
  regretPairs: number
  bestForced: string
  /** tfjs ms / wasm ms (both f32; only on f32 rows). */
  tfjsOverWasm?: number
  /** onnxruntime (f32) ms / wasm ms of this dtype. */
  ortOverWasm?: number
  jsOverWasm?: number
  wasmGflops: number
  peakFraction: number
  weightGBs: number
  bandwidthFraction: number
  /** Multiply-adds x 2 and weight bytes (this dtype) of the call. */
  flops: number
  weightBytes: number
  /**
   * The one-core wasm roofline of the call: max(weight bytes / read rate, FLOPs / f32x4 peak),
   * from the best ceilings of the run (set by `addHeadroom`). No single-threaded wasm SIMD code,
   * ours or a peer's, can run the call faster than this on this machine.
   */
  rooflineMs?: number
  /** tfjs ms / roofline ms: the largest speed-up over tfjs that any one-thread wasm code could show. */
  tfjsHeadroom?: number
  /** onnxruntime ms / roofline ms (bf16 rows): below 1, no one-thread wasm code can match it. */
  ortHeadroom?: number
  spread: Record<string, number>
}

export function rowsOf(g: Group, p: PointResult, backends: string[], ceilings: Ceilings): Row[] {
  const ms: Record<string, number> = {}
  const spread: Record<string, number> = {}
  const rounds: Record<string, number[]> = {}
  for (const t of p.timings) (ms[t.id] = t.ms), (spread[t.id] = t.spread), (rounds[t.id] = t.rounds)
  const out = g.shape.widths.reduce((a, b) => a + b, 0)
  const flops = 2 * p.T * g.rank * (g.shape.inF * g.shape.widths.length + out)
  return Object.entries(p.decisions).map(([dtype, d]) => {
    const forced = backends.filter((b) => ms[`${b}/${dtype}`] !== undefined)
    const best = forced.reduce((a, b) => (ms[`${b}/${dtype}`] < ms[`${a}/${dtype}`] ? b : a), forced[0])
    const wasm = ms[`wasm/${dtype}`]
    const weightBytes = Math.min(p.T, g.distinct) * adapterBytes(g.shape, g.rank, dtype as 'f32')
    const row: Row = {
      shape: g.shape.name,
      rank: g.rank,
      distinct: g.distinct,
      T: p.T,
      dtype,
      ms: Object.fromEntries(Object.entries(ms).filter(([k]) => !k.includes('/') || k.endsWith(`/${dtype}`))),
      choice: d.backend,
      predictedMs: d.predictedMs,
      reason: d.reason,
      regret:
        p.regret[dtype]?.ratio ??
        regretOf(rounds[`auto/${dtype}`], rounds[`${best}/${dtype}`], ms[`auto/${dtype}`] / ms[`${best}/${dtype}`]),
      regretLow: p.regret[dtype]?.low,
      regretHigh: p.regret[dtype]?.high,
      regretPairs: p.regret[dtype]?.pairs ?? 0,
      bestForced: best,
      flops,
      weightBytes,
      wasmGflops: flops / wasm / 1e6,
      peakFraction: flops / wasm / 1e6 / ceilings.peakGflops,
      weightGBs: weightBytes / wasm / 1e6,
      bandwidthFraction: weightBytes / wasm / 1e6 / ceilings.readGBs,
      spread,
    }
    if (dtype === 'f32' && ms['tfjs-wasm']) row.tfjsOverWasm = ms['tfjs-wasm'] / wasm
    if (dtype === 'f32' && ms.js) row.jsOverWasm = ms.js / wasm
    if (ms.onnxruntime) row.ortOverWasm = ms.onnxruntime / wasm
    return row
  })
}

/**
 * time(auto) / time(best forced backend): the median over rounds of the ratio of the two calls of
 * the same round (run next to each other), which cancels the machine's slow drifts; the ratio of
 * the overall figures when a side was timed once.
 */
function regretOf(auto: number[] | undefined, best: number[] | undefined, fallback: number): number {
  if (!auto?.length || !best?.length || auto.length !== best.length) return fallback
  return median(auto.map((a, i) => a / best[i]))
}

/**
 * Set each row's fractions of the ceilings, roofline and peer headroom from the best ceilings
 * measured in the run (the machine's noise only ever lowers a ceiling measurement, so the best is
 * the closest to the truth, and the fractions are not flattered by a low one).
 */
export function addHeadroom(rows: Row[], ceilings: readonly Ceilings[]): void {
  const peak = Math.max(...ceilings.map((c) => c.peakGflops))
  const read = Math.max(...ceilings.map((c) => c.readGBs))
  for (const r of rows) {
    r.peakFraction = r.wasmGflops / peak
    r.bandwidthFraction = r.weightGBs / read
    r.rooflineMs = Math.max(r.weightBytes / read, r.flops / peak) / 1e6
    if (r.dtype === 'f32' && r.ms['tfjs-wasm']) r.tfjsHeadroom = r.ms['tfjs-wasm'] / r.rooflineMs
    if (r.dtype === 'bf16' && r.ms.onnxruntime) r.ortHeadroom = r.ms.onnxruntime / r.rooflineMs
  }
}

const f = (v: number | undefined, d = 2): string =>
  v === undefined || !Number.isFinite(v) ? '-' : v < 0.1 && d > 0 ? v.toFixed(3) : v.toFixed(d)
const pct = (v: number): string => `${(v * 100).toFixed(0)}%`

const HEAD = [
  'shape',
  'rank',
  'D',
  'T',
  'dtype',
  'wasm ms',
  'webgpu ms',
  'auto ms',
  'auto ->',
  'regret',
  'js ms',
  'tfjs ms',
  'ort ms',
  'js/wasm',
  'tfjs/wasm',
  'ort/wasm',
  'roof ms',
  'tfjs/roof',
  'GFLOP/s',
  '% peak',
  'GB/s',
  '% bw',
]

function cells(r: Row): string[] {
  const js = r.ms.js !== undefined && r.ms[`wasm/${r.dtype}`] !== undefined ? r.ms.js / r.ms[`wasm/${r.dtype}`]! : undefined
  return [
    r.shape.split(' ')[0],
    r.rank,
    r.distinct,
    r.T,
    r.dtype,
    f(r.ms[`wasm/${r.dtype}`], 3),
    f(r.ms[`webgpu/${r.dtype}`]),
    f(r.ms[`auto/${r.dtype}`], 3),
    r.choice,
    f(r.regret),
    f(r.ms.js),
    f(r.ms['tfjs-wasm']),
    f(r.ms.onnxruntime, 3),
    f(js, 1),
    f(r.tfjsOverWasm, 1),
    f(r.ortOverWasm),
    f(r.rooflineMs, 3),
    f(r.tfjsHeadroom, 1),
    f(r.wasmGflops, 1),
    pct(r.peakFraction),
    f(r.weightGBs, 1),
    pct(r.bandwidthFraction),
  ].map(String)
}

/** The printed table. */
export function table(rows: Row[]): string {
  const all = [HEAD, ...rows.map(cells)]
  const w = HEAD.map((_, i) => Math.max(...all.map((l) => l[i].length)))
  return all.map((l) => l.map((c, i) => c.padStart(w[i])).join(' | ')).join('\n')
}

/** The same table in Markdown (for the README). */
export function markdown(rows: Row[]): string {
  const line = (l: string[]) => `| ${l.join(' | ')} |`
  return [line(HEAD), line(HEAD.map(() => '---')), ...rows.map((r) => line(cells(r)))].join('\n')
}

function median(v: number[]): number {
  const s = [...v].filter(Number.isFinite).sort((a, b) => a - b)
  return s.length ? s[(s.length - 1) >> 1] : NaN
}

export interface Summary {
  points: number
  regret: { max: number; median: number; over110: number }
  /** Points where the regret's 90% interval lies wholly above 1.10 (more than noise). */
  regretSignificantOver110: number
  /** reachable: points where tfjs is >= 2x the one-core wasm roofline (2x is possible at all). */
  tfjsOverWasm: { min: number; median: number; under2: number; reachable: number; metWhereReachable: number }
  /** reachable: T <= 64 points where onnxruntime is slower than the bf16 one-core wasm roofline. */
  ortOverWasmBf16AtT64: { min: number; median: number; under1: number; reachable: number; metWhereReachable: number }
  ortOverWasmBf16All: { min: number; max: number }
  /** Median interquartile spread (relative) of all timings: the run's noise. */
  noise: { medianSpread: number; p90Spread: number }
}

export function summarise(rows: Row[]): Summary {
  const regrets = rows.map((r) => r.regret).filter(Number.isFinite)
  const tfRows = rows.filter((r) => r.tfjsOverWasm !== undefined)
  const tf = tfRows.map((r) => r.tfjsOverWasm!)
  const tfReach = tfRows.filter((r) => (r.tfjsHeadroom ?? Infinity) >= 2)
  const ortReach = rows.filter((r) => r.dtype === 'bf16' && r.T <= 64 && r.ortOverWasm !== undefined && (r.ortHeadroom ?? Infinity) >= 1)
  const ortBf = rows.filter((r) => r.dtype === 'bf16' && r.ortOverWasm !== undefined)
  const ortSmall = ortBf.filter((r) => r.T <= 64).map((r) => r.ortOverWasm!)
  const spreads = rows
    .flatMap((r) => Object.values(r.spread))
    .filter(Number.isFinite)
    .sort((a, b) => a - b)
  return {
    points: rows.length,
    regret: { max: Math.max(...regrets), median: median(regrets), over110: regrets.filter((r) => r > 1.1).length },
    regretSignificantOver110: rows.filter((r) => (r.regretLow ?? r.regret) > 1.1).length,
    tfjsOverWasm: {
      min: Math.min(...tf),
      median: median(tf),
      under2: tf.filter((v) => v < 2).length,
      reachable: tfReach.length,
      metWhereReachable: tfReach.filter((r) => r.tfjsOverWasm! >= 2).length,
    },
    ortOverWasmBf16AtT64: {
      min: Math.min(...ortSmall),
      median: median(ortSmall),
      under1: ortSmall.filter((v) => v < 1).length,
      reachable: ortReach.length,
      metWhereReachable: ortReach.filter((r) => r.ortOverWasm! >= 1).length,
    },
    ortOverWasmBf16All: { min: Math.min(...ortBf.map((r) => r.ortOverWasm!)), max: Math.max(...ortBf.map((r) => r.ortOverWasm!)) },
    noise: { medianSpread: median(spreads), p90Spread: spreads[Math.floor(0.9 * (spreads.length - 1))] ?? NaN },
  }
}
