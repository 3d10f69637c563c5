/**
 * Write the README's benchmark table and summary from bench/results/bench.json (between the
 * markers <!-- bench:start --> and <!-- bench:end -->), so the README shows exactly the last run.
 * Usage: npx tsx scripts/readme-bench.mts [bench.json] [README.md]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import type { Row, Summary } from '../bench/cli/report.js'

const [jsonPath = 'bench/results/bench.json', readmePath = 'README.md'] = process.argv.slice(2)
const run = JSON.parse(readFileSync(jsonPath, 'utf8')) as {
  date: string; node: string; cpus: number; cpu: string; wasmVariant: string; summary: Summary; rows: Row[]
  ceilings: { start: Ceil; end: Ceil; best?: Ceil }
}
interface Ceil { peakGflops: number; readGBs: number }

const f = (v: number | undefined, d = 2): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d))
const points = (n: number): string => `${n} point${n === 1 ? '' : 's'}`
const pct = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(0)}%`)
const LAYER: Record<string, string> = { qkv: 'QKV 4096→4096/1024/1024', o: 'o 4096→4096', gate_up: 'gate_up 4096→2×11008', down: 'down 11008→4096' }

// the typical projections: T = 1 with one adapter (weight-bound), 16 / 256 / 1024 tokens over 8 adapters
const picked = run.rows.filter((r) => (r.T === 1 && r.distinct === 1) || (r.distinct === 8 && [16, 256, 1024].includes(r.T)))
const head = ['layer', 'rank', 'T', 'adapters', 'dtype', 'wasm ms', 'GFLOP/s', '% f32x4 peak', 'weight GB/s', '% mem bw', 'x roofline',
  'x JS loop', 'x tfjs-wasm', 'x onnxruntime', 'webgpu (lavapipe) ms', 'auto']
const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
const rows = picked.map((r) => {
  const wasm = r.ms[`wasm/${r.dtype}`]
  return line([LAYER[r.shape.split(' ')[0]] ?? r.shape, String(r.rank), String(r.T), String(r.distinct), r.dtype, f(wasm, 3), f(r.wasmGflops, 1),
    pct(r.peakFraction), f(r.weightGBs, 1), pct(r.bandwidthFraction), f(r.rooflineMs && wasm / r.rooflineMs, 2),
    f(r.ms.js && r.ms.js / wasm, 1), f(r.tfjsOverWasm, 1), f(r.ortOverWasm, 2), f(r.ms[`webgpu/${r.dtype}`], 1), r.choice])
})
const s = run.summary
const best = run.ceilings.best ?? run.ceilings.end
const block = `<!-- bench:start -->
Latest full run (${run.date.slice(0, 10)}, Node ${run.node}, ${run.cpus} cores ${run.cpu}, wasm \`${run.wasmVariant}\`;
timings here are noisy: median interquartile spread of the timings ${(s.noise.medianSpread * 100).toFixed(0)}%, p90 ${(s.noise.p90Spread * 100).toFixed(0)}%).
Ceilings, one core, best of the run (measured at its start, between groups and at its end):
f32x4 multiply-add peak ${best.peakGflops.toFixed(1)} GFLOP/s, memory read ${best.readGBs.toFixed(1)} GB/s (at the start:
${run.ceilings.start.peakGflops.toFixed(1)} and ${run.ceilings.start.readGBs.toFixed(1)}); the fractions below are of the best. "x roofline" = wasm's time over
max(weight bytes / read rate, FLOPs / peak), the least time any one-thread wasm SIMD code could take;
"x peer" = the peer's time over wasm's (tfjs and onnxruntime run f32). The typical projections
(T = 1: one adapter, weight-bound; larger T: 8 adapters mixed):

${line(head)}
${line(head.map(() => '---'))}
${rows.join('\n')}

Over the whole grid (${s.points} points, QKV at rank 16 and 64 with 1, 8 and 32 adapters, T = 1 to 4096):

- dispatcher regret, time(auto) / time(best forced backend), from back-to-back call pairs:
  median ${f(s.regret.median, 3)}, max ${f(s.regret.max, 3)}, ${s.regret.over110} of ${s.points} points above 1.10, ${s.regretSignificantOver110}
  of these with the whole 90% bootstrap interval above 1.10 (on this machine WebGPU is lavapipe,
  a CPU driver, so 'auto' runs the same wasm kernel as the best forced backend);
- wasm against tfjs-backend-wasm (both f32, one thread): min ${f(s.tfjsOverWasm.min)}x, median ${f(s.tfjsOverWasm.median)}x, ${points(s.tfjsOverWasm.under2)}
  under 2x; 2x is within the one-core roofline at ${points(s.tfjsOverWasm.reachable)} and met at ${s.tfjsOverWasm.metWhereReachable};
- onnxruntime-node (f32) time over wasm (bf16), T <= 64: median ${f(s.ortOverWasmBf16AtT64.median)}, min ${f(s.ortOverWasmBf16AtT64.min)}, ${points(s.ortOverWasmBf16AtT64.under1)}
  under 1 (onnxruntime is slower than the bf16 one-core roofline at ${s.ortOverWasmBf16AtT64.reachable} of these points, and wasm
  matches it at ${s.ortOverWasmBf16AtT64.metWhereReachable}); all T ${f(s.ortOverWasmBf16All.min)} to ${f(s.ortOverWasmBf16All.max)}.
<!-- bench:end -->`

const readme = readFileSync(readmePath, 'utf8')
const a = readme.indexOf('<!-- bench:start -->')
const b = readme.indexOf('<!-- bench:end -->')
if (a < 0 || b < a) throw new Error(`${readmePath}: no <!-- bench:start --> ... <!-- bench:end --> block`)
writeFileSync(readmePath, readme.slice(0, a) + block + readme.slice(b + '<!-- bench:end -->'.length))
console.log(`${readmePath}: benchmark block from ${jsonPath} (${picked.length} rows)`)
