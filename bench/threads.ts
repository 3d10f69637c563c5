/**
 * Threaded wasm backend against the single-threaded one, per shape, in the same run: each cell
 * times the single-threaded runtime, the threads: 'auto' runtime and a runtime forced to use every
 * thread on every call, interleaved (round-robin, order rotated every round), and reports medians.
 * Weights are cold as in bench/run.ts (each call reads adapters other calls did not just read).
 * Usage: npx tsx bench/threads.ts [--quick] [--rounds N] [--json FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { availableParallelism, loadavg } from 'node:os'
import { createRuntime, type Layer, type Runtime } from '../src/index.js'
import type { ThreadedWasmBackend } from '../src/wasm/threads/backend.js'
import { Rng } from '../test/random.js'
import { median, quartiles, timeBatch } from './timing-threads.js'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : quick ? 5 : 9
const jsonPath = args.includes('--json') ? args[args.indexOf('--json') + 1] : 'bench/results/threads.json'

interface Shape { name: string; inF: number; widths: number[]; rank: number; K: number }
const SHAPES: Shape[] = [
  { name: 'qkv 4096/1024/1024 r16', inF: 4096, widths: [4096, 1024, 1024], rank: 16, K: 1 },
  { name: 'o 4096x4096 r16', inF: 4096, widths: [4096], rank: 16, K: 1 },
  { name: 'gate_up 4096x2*11008 r16', inF: 4096, widths: [11008, 11008], rank: 16, K: 1 },
  { name: 'down 11008x4096 r16', inF: 11008, widths: [4096], rank: 16, K: 1 },
  { name: 'o 4096x4096 r64', inF: 4096, widths: [4096], rank: 64, K: 1 },
  { name: 'qkv r16, 2 adapters/token', inF: 4096, widths: [4096, 1024, 1024], rank: 16, K: 2 },
]
const TOKENS = quick ? [1, 64, 256] : [1, 4, 16, 64, 256, 1024]
const D = 8 // distinct adapters per layer copy
const COLD_BYTES = 64 << 20

const variants = [
  { key: 'single', rt: await createRuntime({ backend: 'wasm' }) },
  { key: 'auto', rt: await createRuntime({ backend: 'wasm', threads: 'auto' }) },
  { key: 'all', rt: await createRuntime({ backend: 'wasm', threads: availableParallelism() }) },
]
const threaded = wasmOf(variants[1].rt)
const threads = threaded.threads
console.log(`wasm build ${threaded.variant}; ${availableParallelism()} cores; threads: ${threads}` +
  (threaded.threadsUnavailableReason ? ` (${threaded.threadsUnavailableReason})` : '') + `; load average at start ${loadavg()[0].toFixed(1)}`)
console.log('median ms per call over rounds (interleaved); speed-up = single / threaded; spread = IQR / median of the single-thread samples')
const header = ['shape', 'T', 'single ms', 'auto ms', 'auto threads', 'x auto', `${threads}-thread ms`, `x ${threads}`, 'GFLOP/s best', 'spread']
console.log(header.join(' | '))

const rows: Record<string, unknown>[] = []
for (const shape of SHAPES) {
  const out = shape.widths.reduce((a, b) => a + b, 0)
  const rng = new Rng(shape.rank * 7 + shape.K)
  const adapterBytes = shape.rank * (shape.inF * shape.widths.length + out) * 4
  const copies = Math.max(1, Math.ceil(COLD_BYTES / (D * adapterBytes)))
  const adapters = Array.from({ length: D }, () => ({
    rank: shape.rank, scale: 2,
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
    // successive calls rotate over the layer copies (cold weights); tokens round-robin over D
    const idSets = Array.from({ length: copies }, (_, c) => Int32Array.from({ length: T * K }, (_, i) =>
      c * D + ((Math.floor(i / K) + (i % K) * 3) % D)))
    const samples: number[][] = variants.map(() => [])
    const call = variants.map(() => 0)
    for (let r = 0; r < rounds; r++) {
      for (let j = 0; j < variants.length; j++) {
        const v = (r + j) % variants.length
        samples[v].push(await timeBatch(() => layers[v].apply(x, y, idSets[call[v]++ % copies], { adaptersPerToken: K })))
      }
    }
    const [single, auto, all] = samples.map(median)
    const entries = T * K
    const work = entries * shape.rank * (shape.inF * shape.widths.length + out)
    const autoThreads = threaded.partsFor(work)
    const [q1, , q3] = quartiles(samples[0])
    const row = {
      shape: shape.name, T, K, singleMs: single, autoMs: auto, autoThreads, speedupAuto: single / auto,
      allThreads: threads, allMs: all, speedupAll: single / all, gflopsBest: (2 * work) / Math.min(single, auto, all) / 1e6,
      spread: (q3 - q1) / single, samples: { single: samples[0], auto: samples[1], all: samples[2] },
    }
    rows.push(row)
    console.log([shape.name, T, single.toFixed(3), auto.toFixed(3), autoThreads, row.speedupAuto.toFixed(2), all.toFixed(3),
      row.speedupAll.toFixed(2), row.gflopsBest.toFixed(1), `${(row.spread * 100).toFixed(0)}%`].join(' | '))
  }
  for (const l of layers) l.dispose()
}
for (const { rt } of variants) rt.dispose()
mkdirSync(dirname(jsonPath), { recursive: true })
writeFileSync(jsonPath, JSON.stringify({
  date: new Date().toISOString(), node: process.version, cores: availableParallelism(), threads, wasmVariant: threaded.variant,
  rounds, loadAverageEnd: loadavg(), rows,
}, null, 1))
console.log(`wrote ${jsonPath}; load average at end ${loadavg()[0].toFixed(1)}`)

function wasmOf(rt: Runtime): ThreadedWasmBackend {
  return (rt as unknown as { all: ThreadedWasmBackend[] }).all.find((b) => b.name === 'wasm')!
}
