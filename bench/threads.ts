/**
 * Threaded wasm backend against the single-threaded one, per shape, in the same run: each cell
 * times the single-threaded runtime, the threads: 'auto' runtime and a runtime forced to use every
 * thread on every call, interleaved (round-robin, order rotated every round), every call timed.
 * Reported: the median call and the 10th percentile (on a machine shared with other jobs the
 * fast tail estimates the unloaded time; the median includes the interference). Weights are
 * cold as in the bench CLI (bench/cli/grid.ts Rotation: each call reads adapters other calls did not just read).
 * Two measures make the figures readable on a busy machine: the parallel ceilings (what N threads
 * of pure compute, and of memcpy, get against one, sampled every round: bench/parallel-ceiling.ts), and the CPU
 * time per call (process.cpuUsage, all threads): CPU time does not count time spent descheduled,
 * so its ratio says how much work threading adds, whatever the load.
 * Usage: npx tsx bench/threads.ts [--quick] [--rounds N] [--json FILE] [--only SHAPE] [--tokens 1,64,...]
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { availableParallelism, loadavg } from 'node:os'
import { createRuntime, type Layer, type Runtime } from '../src/index.js'
import type { Backend } from '../src/backend.js'
import { Rng } from '../test/random.js'
import { ParallelCeiling } from './parallel-ceiling.js'
import { writeResultsMarkdown } from './results-md.js'
import { quantile, timeCalls } from './timing-threads.js'
import { backendsOf } from '../src/runtime.js'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : quick ? 5 : 9
const jsonPath = args.includes('--json') ? args[args.indexOf('--json') + 1] : 'bench/results/threads.json'
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : '' // shapes whose name contains this
const tokensArg = args.includes('--tokens') ? args[args.indexOf('--tokens') + 1].split(',').map(Number) : null

/** blocks: tokens in D runs of one adapter each (as requests are), not round-robin over the adapters */
interface Shape {
  name: string
  inF: number
  widths: number[]
  rank: number
  K: number
  blocks?: boolean
}
const SHAPES: Shape[] = [
  { name: 'qkv 4096/1024/1024 r16', inF: 4096, widths: [4096, 1024, 1024], rank: 16, K: 1 },
  { name: 'o 4096x4096 r16', inF: 4096, widths: [4096], rank: 16, K: 1 },
  { name: 'gate_up 4096x2*11008 r16', inF: 4096, widths: [11008, 11008], rank: 16, K: 1 },
  { name: 'down 11008x4096 r16', inF: 11008, widths: [4096], rank: 16, K: 1 },
  { name: 'down r16, tokens in runs of one adapter', inF: 11008, widths: [4096], rank: 16, K: 1, blocks: true },
  { name: 'o 4096x4096 r64', inF: 4096, widths: [4096], rank: 64, K: 1 },
  { name: 'qkv r16, 2 adapters/token', inF: 4096, widths: [4096, 1024, 1024], rank: 16, K: 2 },
]
const TOKENS = tokensArg ?? (quick ? [1, 64, 256] : [1, 4, 16, 64, 256, 1024])
const D = 8 // distinct adapters per layer copy
const COLD_BYTES = 64 << 20

const variants = [
  { key: 'single', rt: await createRuntime({ backend: 'wasm' }) },
  { key: 'auto', rt: await createRuntime({ backend: 'wasm', threads: 'auto' }) },
  { key: 'all', rt: await createRuntime({ backend: 'wasm', threads: availableParallelism() }) },
]
const threaded = wasmOf(variants[1].rt)
const threads = threaded.threads
const ceiling = new ParallelCeiling(threads)
await ceiling.sample() // warm-up: the first one times the loop before V8's optimizing tier has compiled it
await ceiling.sampleMemory()
console.log(
  `wasm build ${variants[1].rt.wasmVariant}; ${availableParallelism()} cores; threads: ${threads}` +
    (threaded.threadsUnavailableReason ? ` (${threaded.threadsUnavailableReason})` : '') +
    `; load average at start ${loadavg()[0].toFixed(1)}`,
)
console.log('ms per call: median (10th percentile), interleaved; speed-up = single / threaded at the median (at the 10th percentile);')
console.log(`CPU = CPU time per call of ${threads} threads / of one; ceiling = ${threads} threads of pure compute against one, now;`)
console.log(`mem ceiling = ${threads} threads each copying 32 MB (memcpy) against one, now (bench/parallel-ceiling.ts);`)
console.log('spread = IQR / median of the single-thread calls')
const header = [
  'shape',
  'T',
  'single ms',
  'auto ms',
  'auto threads',
  'x auto',
  `${threads}-thread ms`,
  `x ${threads}`,
  'CPU',
  'ceiling',
  'mem ceiling',
  'GFLOP/s best',
  'spread',
]
console.log(header.join(' | '))

const rows: Record<string, unknown>[] = []
for (const shape of SHAPES.filter((s) => s.name.includes(only))) {
  const out = shape.widths.reduce((a, b) => a + b, 0)
  const rng = new Rng(shape.rank * 7 + shape.K)
  const adapterBytes = shape.rank * (shape.inF * shape.widths.length + out) * 4
  const copies = Math.max(1, Math.ceil(COLD_BYTES / (D * adapterBytes)))
  const adapters = Array.from({ length: D }, () => ({
    rank: shape.rank,
    scale: 2,
    A: shape.widths.map(() => rng.array(shape.rank * shape.inF, 0.02)),
    B: shape.widths.map((n) => rng.array(n * shape.rank, 0.02)),
  }))
  const layers: Layer[] = variants.map(({ rt }) => {
    const layer = rt.createLayer({ inFeatures: shape.inF, outFeatures: shape.widths, maxAdapters: D * copies, maxRank: shape.rank })
    for (let c = 0; c < copies; c++) adapters.forEach((ad, a) => layer.setAdapter(c * D + a, ad))
    return layer
  })
  for (const T of TOKENS) {
    const K = shape.K
    const x = rng.array(T * shape.inF)
    const y = new Float32Array(T * out)
    // successive calls rotate over the layer copies (cold weights); tokens round-robin over D (or in D runs)
    const adapterOf = (t: number) => (shape.blocks ? Math.floor((t * D) / T) : t)
    const idSets = Array.from({ length: copies }, (_, c) =>
      Int32Array.from({ length: T * K }, (_, i) => c * D + ((adapterOf(Math.floor(i / K)) + (i % K) * 3) % D)),
    )
    const samples: number[][] = variants.map(() => [])
    const cpu = variants.map(() => [0, 0]) // [CPU ms, calls]
    const ceilings: number[] = []
    const memCeilings: number[] = []
    const call = variants.map(() => 0)
    for (let r = 0; r < rounds; r++) {
      ceilings.push(await ceiling.sample())
      memCeilings.push(await ceiling.sampleMemory())
      for (let j = 0; j < variants.length; j++) {
        const v = (r + j) % variants.length
        const c0 = process.cpuUsage()
        const times = await timeCalls(() => layers[v].apply(x, y, idSets[call[v]++ % copies], { adaptersPerToken: K }))
        const c = process.cpuUsage(c0)
        samples[v].push(...times)
        cpu[v][0] += (c.user + c.system) / 1000
        cpu[v][1] += times.length + 1 // + the warm-up call
      }
    }
    const cpuRatio = cpu[2][0] / cpu[2][1] / (cpu[0][0] / cpu[0][1])
    const parallelCeiling = quantile(ceilings, 0.5)
    const memoryCeiling = quantile(memCeilings, 0.5)
    const [single, auto, all] = samples.map((s) => quantile(s, 0.5))
    const [single10, auto10, all10] = samples.map((s) => quantile(s, 0.1))
    const entries = T * K
    const work = entries * shape.rank * (shape.inF * shape.widths.length + out)
    const autoThreads = threaded.partsFor(work, K === 1 ? entries : 0)
    const spread = (quantile(samples[0], 0.75) - quantile(samples[0], 0.25)) / single
    const row = {
      shape: shape.name,
      T,
      K,
      autoThreads,
      allThreads: threads,
      calls: samples.map((s) => s.length),
      singleMs: single,
      autoMs: auto,
      allMs: all,
      speedupAuto: single / auto,
      speedupAll: single / all,
      singleP10: single10,
      autoP10: auto10,
      allP10: all10,
      speedupAutoP10: single10 / auto10,
      speedupAllP10: single10 / all10,
      cpuRatio,
      parallelCeiling,
      memoryCeiling,
      gflopsBest: (2 * work) / Math.min(single10, auto10, all10) / 1e6,
      spread,
    }
    rows.push(row)
    const ms = (m: number, p: number) => `${m.toFixed(3)} (${p.toFixed(3)})`
    const sx = (a: number, b: number) => `${a.toFixed(2)} (${b.toFixed(2)})`
    console.log(
      [
        shape.name,
        T,
        ms(single, single10),
        ms(auto, auto10),
        autoThreads,
        sx(row.speedupAuto, row.speedupAutoP10),
        ms(all, all10),
        sx(row.speedupAll, row.speedupAllP10),
        cpuRatio.toFixed(2),
        parallelCeiling.toFixed(2),
        memoryCeiling.toFixed(2),
        row.gflopsBest.toFixed(1),
        `${(spread * 100).toFixed(0)}%`,
      ].join(' | '),
    )
  }
  for (const l of layers) l.dispose()
}
for (const { rt } of variants) rt.dispose()
ceiling.dispose()
mkdirSync(dirname(jsonPath), { recursive: true })
writeFileSync(
  jsonPath,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      cores: availableParallelism(),
      threads,
      wasmVariant: variants[1].rt.wasmVariant,
      rounds,
      loadAverageEnd: loadavg(),
      rows,
    },
    null,
    1,
  ),
)
console.log(`wrote ${jsonPath}; load average at end ${loadavg()[0].toFixed(1)}`)
if (jsonPath === 'bench/results/threads.json') writeResultsMarkdown()

function wasmOf(rt: Runtime): Backend {
  const b = backendsOf(rt).find((x) => x.name === 'wasm')
  if (!b) throw new Error('the runtime has no wasm backend')
  return b
}
