/**
 * `multilora bench [--quick] [--json FILE] [--svg FILE]`: every available backend forced, 'auto',
 * and the peers (plain JS loop, tfjs-backend-wasm, onnxruntime-node) side by side on the same
 * data over the grid (bench/cli/grid.ts), each checked against the reference before it is timed;
 * the machine's ceilings measured in the same run. Prints a table, writes JSON and an SVG chart.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { dirname } from 'node:path'
import cliProgress from 'cli-progress'
import { createRuntime, type Layer, type WeightDtype } from '../../src/index.js'
import { WasmBackend } from '../../src/wasm/backend.js'
import { type Ceilings, measureCeilings } from '../ceilings.js'
import { jsLoopPeer } from '../peers/jsloop.js'
import { ortPeer } from '../peers/ort.js'
import { tfjsPeer } from '../peers/tfjs.js'
import type { Peer } from '../peers/types.js'
import { chartSvg } from './chart.js'
import { copiesOf, DTYPES, gridOf, groupData, Rotation, rounded } from './grid.js'
import { writeResultsMarkdown } from '../results-md.js'
import { addHeadroom, markdown, type Row, rowsOf, summarise, table } from './report.js'
import { type PointLayers, runPoint } from './run-point.js'
import { backendsOf } from '../../src/runtime.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const quick = args.includes('--quick')
const jsonPath = flag('--json') ?? `bench/results/bench${quick ? '-quick' : ''}.json`
const svgPath = flag('--svg') ?? `bench/results/bench${quick ? '-quick' : ''}.svg`
const rounds = quick
  ? { budgetMs: 150, minRounds: 5, maxRounds: 21, slowMs: 300 }
  : { budgetMs: 300, minRounds: 7, maxRounds: 31, slowMs: 800 }
/** A contender whose time extrapolated from the previous T exceeds this is not run (ms per call). */
const CAP_MS = quick ? 2500 : 5000
/** The JS loop is ~30x slower than wasm: only small batches. */
const JS_MAX_T = 64

const t0 = performance.now()
const rt = await createRuntime({ backend: 'auto' })
const wasm = backendsOf(rt).find((b) => b instanceof WasmBackend)!
const ceilingsStart = measureCeilings(wasm)
const ceilingsDuring: Ceilings[] = []
const groups = gridOf(quick)
const totalPoints = groups.reduce((n, g) => n + g.tokens.length, 0)
console.log(
  `multilora bench${quick ? ' --quick' : ''}: backends ${rt.backends.join(', ')}${rt.webgpuUnavailableReason ? ` (webgpu: ${rt.webgpuUnavailableReason})` : ''}; wasm ${rt.wasmVariant}; ${cpus().length} cores (${cpus()[0]?.model})`,
)
console.log(
  `ceilings: f32x4 peak ${ceilingsStart.peakGflops.toFixed(1)} GFLOP/s (one core), memory read ${ceilingsStart.readGBs.toFixed(1)} GB/s; dispatcher: ${rt.profile?.kind} calibration in ${rt.profile?.calibrationMs.toFixed(0)} ms`,
)

const peers: Peer[] = [jsLoopPeer, tfjsPeer, ortPeer]
const bar = new cliProgress.SingleBar(
  {
    format: '{bar} {value}/{total} points | {duration_formatted} elapsed, ETA {eta_formatted} | {label}',
    hideCursor: true,
    stream: process.stderr,
    etaBuffer: 8,
    // not a terminal (CI, a log file): a line every 10 s instead of a redrawn bar
    noTTYOutput: true,
    notTTYSchedule: 10_000,
  },
  cliProgress.Presets.shades_classic,
)
bar.start(totalPoints, 0, { label: 'starting' })

const rows: Row[] = []
const checks: Record<string, unknown>[] = []
const peerErrors: Record<string, string> = {}
let seed = 7
const rng = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) | 0) >>> 0) / 2 ** 32
for (const g of groups) {
  const label = `${g.shape.name} rank ${g.rank}, ${g.distinct} adapters`
  bar.update({ label: `${label}: loading weights` })
  const { distinct, peerLayer } = groupData(g)
  const layers = {} as Record<WeightDtype, Layer>
  for (const dtype of DTYPES) {
    const copies = copiesOf(g, dtype)
    const layer = rt.createLayer({
      inFeatures: g.shape.inF,
      outFeatures: g.shape.widths,
      maxAdapters: g.distinct * copies,
      maxRank: g.rank,
      weightDtype: dtype,
    })
    for (let s = 0; s < g.distinct * copies; s++) layer.setAdapter(s, distinct[s % g.distinct])
    layers[dtype] = layer
  }
  const pl: PointLayers = {
    layers,
    refs: {
      f32: rounded(peerLayer, distinct, 'f32'),
      bf16: rounded(peerLayer, distinct, 'bf16'),
      f16: rounded(peerLayer, distinct, 'f16'),
    },
    peers: [],
    peerSlots: peerLayer.slots.length,
  }
  for (const p of peers) {
    try {
      const runner = await p.setup(peerLayer)
      // one call per weight copy first: a library that caches per weight tensor (XNNPACK packs
      // each tfjs weight on first use) is measured in its steady state, as in serving
      const warm = new Rotation(g.distinct, g.distinct, peerLayer.slots.length / g.distinct, peerLayer.slots.length)
      const y = new Float32Array(g.distinct * peerLayer.out)
      for (let c = 0; c < peerLayer.slots.length / g.distinct; c++)
        await runner.run(new Float32Array(g.distinct * g.shape.inF), y, warm.nextPlan())
      pl.peers.push({ name: p.name, runner, maxTokens: p === jsLoopPeer ? JS_MAX_T : Infinity })
    } catch (e) {
      peerErrors[p.name] = String((e as Error)?.message ?? e)
    }
  }
  const last = new Map<string, { T: number; ms: number }>()
  const estimate = (id: string): number | undefined => {
    const l = last.get(id)
    return l && (l.ms * tNow) / l.T
  }
  let tNow = 0
  for (const T of g.tokens) {
    tNow = T
    bar.update({ label: `${label}, T=${T}` })
    const point = await runPoint(rt, g, T, pl, rng, rounds, estimate, CAP_MS)
    for (const t of point.timings) last.set(t.id, { T, ms: t.ms })
    rows.push(...rowsOf(g, point, rt.backends, ceilingsStart))
    checks.push({ rank: g.rank, distinct: g.distinct, T, errors: point.checks })
    bar.increment()
  }
  for (const p of pl.peers) p.runner.dispose()
  for (const l of Object.values(layers)) l.dispose()
  // the ceilings again between groups: the best of all is what the fractions are taken against
  ceilingsDuring.push(measureCeilings(wasm))
}
bar.stop()
const ceilingsEnd = measureCeilings(wasm)
const allCeilings = [ceilingsStart, ...ceilingsDuring, ceilingsEnd]
addHeadroom(rows, allCeilings)
const bestCeilings = {
  peakGflops: Math.max(...allCeilings.map((c) => c.peakGflops)),
  readGBs: Math.max(...allCeilings.map((c) => c.readGBs)),
}
const summary = summarise(rows)
const failed = checks.flatMap((c) =>
  Object.entries(c.errors as Record<string, number | string>)
    .filter(([, e]) => !(typeof e === 'number' && e <= 1e-4))
    .map(([id, e]) => `T=${c.T} D=${c.distinct} r=${c.rank} ${id}: ${e}`),
)

console.log(`\n${table(rows)}`)
const s = summary
console.log(
  `\nregret time(auto)/time(best forced): max ${s.regret.max.toFixed(3)}, median ${s.regret.median.toFixed(3)}, ${s.regret.over110} of ${s.points} points > 1.10 (${s.regretSignificantOver110} with the whole 90% interval > 1.10)`,
)
console.log(
  `wasm vs tfjs-backend-wasm (f32, both one thread): min ${s.tfjsOverWasm.min.toFixed(2)}x, median ${s.tfjsOverWasm.median.toFixed(2)}x, ${s.tfjsOverWasm.under2} points < 2x; 2x is within the one-core wasm roofline at ${s.tfjsOverWasm.reachable} points, met at ${s.tfjsOverWasm.metWhereReachable}`,
)
console.log(
  `onnxruntime (f32, one thread) / wasm (bf16): T <= 64 min ${s.ortOverWasmBf16AtT64.min.toFixed(2)}, median ${s.ortOverWasmBf16AtT64.median.toFixed(2)}, ${s.ortOverWasmBf16AtT64.under1} points < 1; onnxruntime slower than the bf16 roofline at ${s.ortOverWasmBf16AtT64.reachable} of them, matched at ${s.ortOverWasmBf16AtT64.metWhereReachable}; all T ${s.ortOverWasmBf16All.min.toFixed(2)}..${s.ortOverWasmBf16All.max.toFixed(2)}`,
)
console.log(
  `noise: median interquartile spread ${(summary.noise.medianSpread * 100).toFixed(1)}%, p90 ${(summary.noise.p90Spread * 100).toFixed(1)}%; ceilings at the end: peak ${ceilingsEnd.peakGflops.toFixed(1)} GFLOP/s, read ${ceilingsEnd.readGBs.toFixed(1)} GB/s; best of the run (fractions are of these): ${bestCeilings.peakGflops.toFixed(1)} GFLOP/s, ${bestCeilings.readGBs.toFixed(1)} GB/s`,
)
if (failed.length) console.log(`checks failed (not timed):\n  ${failed.join('\n  ')}`)
if (Object.keys(peerErrors).length) console.log(`peers unavailable: ${JSON.stringify(peerErrors)}`)

const result = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  quick,
  backends: rt.backends,
  wasmVariant: rt.wasmVariant,
  profile: rt.profile,
  ceilings: { start: ceilingsStart, end: ceilingsEnd, best: bestCeilings, during: ceilingsDuring },
  rounds,
  summary,
  rows,
  checks,
  peerErrors,
  seconds: (performance.now() - t0) / 1000,
}
const mdPath = `${jsonPath.replace(/\.json$/, '')}.md`
for (const [path, text] of [
  [jsonPath, JSON.stringify(result, null, 1)],
  [svgPath, await chartSvg(rows)],
  [mdPath, `${markdown(rows)}\n`],
]) {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, text)
}
console.log(`wrote ${jsonPath}, ${svgPath}, ${mdPath} in ${result.seconds.toFixed(0)} s`)
if (jsonPath === 'bench/results/bench.json') writeResultsMarkdown()
rt.dispose()
