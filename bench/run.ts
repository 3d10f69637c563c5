/**
 * Benchmark of the wasm backend over realistic LoRA shapes, side by side with a plain JS loop and
 * the machine's ceilings (single-core f32x4 peak and memory read bandwidth) measured in the same
 * run. Usage: npm run bench [-- --quick] [-- --json FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { buildSegments } from '../src/metadata.js'
import { createRuntime } from '../src/index.js'
import type { WeightDtype } from '../src/types.js'
import { WasmBackend } from '../src/wasm/backend.js'
import { Rng } from '../test/random.js'
import { jsSgmv, type JsAdapter } from './jsloop.js'
import { measureCeilings } from './ceilings.js'
import { time } from './timing.js'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const jsonPath = args.includes('--json') ? args[args.indexOf('--json') + 1] : 'bench/results/wasm.json'

interface Shape { name: string; inF: number; widths: number[]; rank: number }
const SHAPES: Shape[] = [
  { name: 'qkv 4096/1024/1024 r8', inF: 4096, widths: [4096, 1024, 1024], rank: 8 },
  { name: 'qkv 4096/1024/1024 r32', inF: 4096, widths: [4096, 1024, 1024], rank: 32 },
  { name: 'o 4096x4096 r16', inF: 4096, widths: [4096], rank: 16 },
  { name: 'gate_up 4096x2*11008 r16', inF: 4096, widths: [11008, 11008], rank: 16 },
  { name: 'down 11008x4096 r16', inF: 11008, widths: [4096], rank: 16 },
  { name: 'o 4096x4096 r64', inF: 4096, widths: [4096], rank: 64 },
]
const TOKENS = quick ? [1, 256] : [1, 16, 256, 1024]
const DISTINCT = quick ? [8] : [1, 8, 32]
const DTYPES: WeightDtype[] = ['f32', 'bf16']
/** Bytes of weights a layer holds so that rotating calls read from memory, not cache. */
const COLD_BYTES = 128 << 20

const rt = await createRuntime({ backend: 'wasm' })
const wasm = (rt as unknown as { all: WasmBackend[] }).all.find((b) => b.name === 'wasm')!
const ceilings = measureCeilings(wasm)
console.log(`wasm build: ${rt.wasmVariant}; single-core f32x4 peak ${ceilings.peakGflops.toFixed(1)} GFLOP/s, memory read ${ceilings.readGBs.toFixed(1)} GB/s`)

const rows: Record<string, unknown>[] = []
const header = ['shape', 'T', 'adapters', 'dtype', 'wasm ms', 'GFLOP/s', '% peak', 'weight GB/s', '% mem bw', 'JS ms', 'x JS']
console.log(header.join(' | '))
for (const shape of SHAPES) {
  const out = shape.widths.reduce((a, b) => a + b, 0)
  for (const D of DISTINCT) {
    const rng = new Rng(D * 31 + shape.rank)
    const adapters: JsAdapter[] = []
    for (let a = 0; a < D; a++) {
      adapters.push({
        rank: shape.rank, scale: 2,
        A: shape.widths.map(() => rng.array(shape.rank * shape.inF, 0.02)),
        B: shape.widths.map((n) => rng.array(n * shape.rank, 0.02)),
      })
    }
    for (const dtype of DTYPES) {
      // Cold weights, as in serving (the other layers run between two calls of this one): the
      // layer holds D adapters `copies` times over, at least COLD_BYTES in all, and successive
      // calls rotate over the copies, so each call reads its weights from memory, not cache.
      const adapterBytes = shape.rank * (shape.inF * shape.widths.length + out) * (dtype === 'f32' ? 4 : 2)
      const copies = Math.max(1, Math.ceil(COLD_BYTES / (D * adapterBytes)))
      const layer = rt.createLayer({ inFeatures: shape.inF, outFeatures: shape.widths, maxAdapters: D * copies, maxRank: shape.rank, weightDtype: dtype })
      for (let c = 0; c < copies; c++) {
        adapters.forEach((ad, a) => layer.setAdapter(c * D + a, { rank: ad.rank, scale: ad.scale, A: ad.A, B: ad.B }))
      }
      for (const T of TOKENS) {
        const x = rng.array(T * shape.inF)
        const y = new Float32Array(T * out)
        // tokens round-robin over the D adapters; with fewer tokens than adapters successive
        // calls rotate through all D.
        const calls = Math.max(1, Math.ceil(D / T)) * copies
        const idSets = Array.from({ length: calls }, (_, c) =>
          Int32Array.from({ length: T }, (_, t) => ((c % copies) * D) + ((Math.floor(c / copies) * T + t) % D)))
        let call = 0
        const wasmMs = await time(async () => { await layer.apply(x, y, idSets[call++ % calls]) })
        const used = Math.min(T, D)
        const flops = 2 * T * shape.rank * (shape.inF * shape.widths.length + out)
        const weightBytes = used * adapterBytes
        let jsMs = NaN
        if (dtype === 'f32') {
          const plans = idSets.map((ids) => buildSegments(ids.map((id) => id % D), 1, D))
          let c2 = 0
          jsMs = await time(() => jsSgmv(x, y, shape.inF, shape.widths, adapters, plans[c2++ % calls]), { minMs: 100, minReps: 1 })
        }
        const gflops = flops / wasmMs / 1e6
        const gbs = weightBytes / wasmMs / 1e6
        const row = {
          shape: shape.name, T, adapters: D, dtype, wasmMs, gflops, peakFraction: gflops / ceilings.peakGflops,
          weightGBs: gbs, bandwidthFraction: gbs / ceilings.readGBs, jsMs, speedupVsJs: jsMs / wasmMs,
        }
        rows.push(row)
        console.log([shape.name, T, D, dtype, wasmMs.toFixed(3), gflops.toFixed(2), pct(row.peakFraction), gbs.toFixed(1),
          pct(row.bandwidthFraction), Number.isNaN(jsMs) ? '-' : jsMs.toFixed(2), Number.isNaN(jsMs) ? '-' : (jsMs / wasmMs).toFixed(1)].join(' | '))
      }
      layer.dispose()
    }
  }
}
rt.dispose()
mkdirSync(dirname(jsonPath), { recursive: true })
writeFileSync(jsonPath, JSON.stringify({ date: new Date().toISOString(), node: process.version, wasmVariant: rt.wasmVariant, ceilings, rows }, null, 1))
console.log(`wrote ${jsonPath}`)

function pct(f: number): string {
  return `${(f * 100).toFixed(0)}%`
}
