/**
 * How the threaded wasm backend scales with the thread count, on a many-core host: one runtime
 * with `--max` threads (default: the cores, at most 16), every call forced onto n threads
 * (n = 1, 2, 4, ..., max), x and y as ordinary arrays (copied in and out by the main thread) and
 * as host arrays (rt.hostArray: used in place); then calls of T <= 64 on runtimes created
 * with `threads: n` and left to their own choice, against the single-threaded runtime. Cells are
 * interleaved call by call (order rotated every round); weights are cold (each call reads adapter
 * copies the previous calls did not, over COLD_BYTES per layer). Reported: median ms, the speed-up
 * over one thread, and the weight GB/s and GFLOP/s of the call; for ordinary arrays, the floor set
 * by the main thread's copies (x and y in, y out) at the copy rate measured in the same run.
 * Usage: npx tsx bench/threads-scaling.ts [--max N] [--rounds N] [--json FILE]
 */
import { writeFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { createRuntime, type HostArray, type Layer, type Runtime } from '../src/index.js'
import { backendsOf } from '../src/runtime.js'
import { Rng } from '../test/random.js'
import { ParallelCeiling } from './parallel-ceiling.js'
import { scalingMarkdown } from './scaling-md.js'
import { quantile } from './timing-threads.js'

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const max = Number(flag('--max') ?? Math.min(16, availableParallelism()))
const rounds = Number(flag('--rounds') ?? 7)
const jsonPath = flag('--json') ?? 'bench/results/threads-scaling.json'
const COLD_BYTES = 256 << 20
const D = 8 // adapters in a batch (round-robin over the tokens)

interface Shape {
  name: string
  inF: number
  widths: number[]
  rank: number
}
const SHAPES: Shape[] = [
  { name: 'gate_up 4096x2*11008 r16', inF: 4096, widths: [11008, 11008], rank: 16 },
  { name: 'o 4096x4096 r16', inF: 4096, widths: [4096], rank: 16 },
  { name: 'qkv 4096/1024/1024 r16', inF: 4096, widths: [4096, 1024, 1024], rank: 16 },
]
const SCALE_T = [64, 256, 1024]
const SMALL_T = [1, 2, 4, 16, 64]
const counts: number[] = []
for (let n = 1; n < max; n *= 2) counts.push(n)
counts.push(max)
const pools = counts.filter((n) => n > 1)

const wasmOf = (rt: Runtime) => backendsOf(rt)[0]
const big = await createRuntime({ backend: 'wasm', threads: max })
const single = await createRuntime({ backend: 'wasm' })
const sized = await Promise.all(pools.map((n) => createRuntime({ backend: 'wasm', threads: n })))
console.log(
  `${cpus().length} cores (${cpus()[0]?.model}); threads ${wasmOf(big).threads}${wasmOf(big).threadsUnavailableReason ? ` (${wasmOf(big).threadsUnavailableReason})` : ''}; wasm ${big.wasmVariant}; ${rounds} rounds`,
)

// the main thread's copy rate between an ordinary array and the runtime's (shared) memory, the
// way a call with ordinary x and y copies them: the floor of those cells (DESIGN: copies into a
// SharedArrayBuffer run at about half a plain buffer's rate)
const copyRate = (() => {
  const n = 16 << 20 // 64 MB
  const plain = new Float32Array(n).fill(1)
  const shared = big.hostArray(n)
  const rate = (copy: () => void) => {
    const t: number[] = []
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now()
      copy()
      t.push(performance.now() - t0)
    }
    return (n * 4) / quantile(t.slice(1), 0.5) / 1e6
  }
  // beside them, the same copy between two ordinary arrays (V8 copies into or out of a
  // SharedArrayBuffer word by word, not with memcpy)
  const other = new Float32Array(n)
  const r = {
    inGBs: rate(() => shared.array.set(plain)),
    outGBs: rate(() => plain.set(shared.array)),
    plainGBs: rate(() => other.set(plain)),
  }
  shared.release()
  return r
})()
console.log(
  `main thread copies: in ${copyRate.inGBs.toFixed(1)} GB/s, out ${copyRate.outGBs.toFixed(1)} GB/s; ordinary to ordinary ${copyRate.plainGBs.toFixed(1)} GB/s`,
)

// the machine's read bandwidth with n threads reading at once (each its own 64 MiB, the kernels
// module's readBytes): what a memory-bound call on n threads can stream at most (best of 5 after
// a warm-up sample)
const readGBs: Record<number, number> = {}
for (const n of counts) {
  const pc = new ParallelCeiling(n)
  await pc.readGBs(1) // warm-up: the optimizing tier, the buffers filled
  let best = 0
  for (let i = 0; i < 5; i++) best = Math.max(best, await pc.readGBs())
  pc.dispose()
  readGBs[n] = best
}
console.log(`read bandwidth, n threads at once: ${counts.map((n) => `${n}: ${readGBs[n].toFixed(1)} GB/s`).join(', ')}`)

interface Cell {
  label: string
  rt: Runtime
  layer: Layer
  parts: number | null
  host: boolean
}
const results: Record<string, unknown>[] = []

for (const shape of SHAPES) {
  const out = shape.widths.reduce((a, b) => a + b, 0)
  const rng = new Rng(shape.rank * 13 + out)
  const adapterBytes = shape.rank * (shape.inF * shape.widths.length + out) * 4
  const copies = Math.max(1, Math.ceil(COLD_BYTES / (D * adapterBytes)))
  const adapters = Array.from({ length: D }, () => ({
    rank: shape.rank,
    scale: 2,
    A: shape.widths.map(() => rng.array(shape.rank * shape.inF, 0.02)),
    B: shape.widths.map((n) => rng.array(n * shape.rank, 0.02)),
  }))
  const layerOn = (rt: Runtime) => {
    const layer = rt.createLayer({ inFeatures: shape.inF, outFeatures: shape.widths, maxAdapters: D * copies, maxRank: shape.rank })
    for (let c = 0; c < copies; c++) adapters.forEach((ad, a) => layer.setAdapter(c * D + a, ad))
    return layer
  }
  const bigLayer = layerOn(big)
  const singleLayer = layerOn(single)
  const sizedLayers = sized.map(layerOn)
  let copy = 0
  const idsFor = (T: number) => {
    const c = copy++ % copies
    return Int32Array.from({ length: T }, (_, t) => c * D + (t % D))
  }

  const measure = async (T: number, cells: Cell[]) => {
    const x = rng.array(T * shape.inF)
    const hosts = new Map<Runtime, { hx: HostArray; hy: HostArray }>()
    for (const c of cells) {
      if (c.host && !hosts.has(c.rt)) {
        const hx = c.rt.hostArray(T * shape.inF),
          hy = c.rt.hostArray(T * out)
        hx.array.set(x)
        hosts.set(c.rt, { hx, hy })
      }
    }
    const y = new Float32Array(T * out)
    const times = cells.map(() => [] as number[])
    const call = async (c: Cell) => {
      wasmOf(c.rt).forceParts(c.parts)
      const h = hosts.get(c.rt)
      const ids = idsFor(T)
      const t0 = performance.now()
      if (c.host) await c.layer.apply(h!.hx.array, h!.hy.array, ids)
      else await c.layer.apply(x, y, ids)
      return performance.now() - t0
    }
    for (const c of cells) await call(c) // warm-up
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < cells.length; i++) {
        const k = (i + r) % cells.length
        times[k].push(await call(cells[k]))
      }
    }
    for (const c of cells) wasmOf(c.rt).forceParts(null)
    for (const { hx, hy } of hosts.values()) {
      hx.release()
      hy.release()
    }
    return times.map((t) => quantile(t, 0.5))
  }

  const weightBytes = (T: number) => Math.min(T, D) * adapterBytes
  const flops = (T: number) => 2 * T * shape.rank * (shape.inF * shape.widths.length + out)
  // bytes a call must move: the weights, x read, y read and written
  const callBytes = (T: number) => weightBytes(T) + T * (shape.inF + 2 * out) * 4
  // scaling: forced thread counts, ordinary and host arrays
  for (const T of SCALE_T) {
    const cells: Cell[] = []
    for (const host of [false, true])
      for (const n of counts) cells.push({ label: `${n}${host ? ' host' : ''}`, rt: big, layer: bigLayer, parts: n, host })
    const ms = await measure(T, cells)
    const line: string[] = []
    for (let i = 0; i < cells.length; i++) {
      const base = ms[cells[i].host ? counts.length : 0]
      const GBs = callBytes(T) / ms[i] / 1e6
      results.push({
        kind: 'scaling',
        shape: shape.name,
        T,
        threads: cells[i].parts,
        host: cells[i].host,
        ms: ms[i],
        speedup: base / ms[i],
        gflops: flops(T) / ms[i] / 1e6,
        weightGBs: weightBytes(T) / ms[i] / 1e6,
        // the call's bytes over its time, and as a fraction of the n-thread read rate
        GBs,
        ofRead: GBs / readGBs[cells[i].parts!],
        // ordinary arrays: the main thread's copies of x and y in and y out at copyRate, a floor
        copyFloorMs: cells[i].host ? 0 : (T * (shape.inF + out) * 4) / copyRate.inGBs / 1e6 + (T * out * 4) / copyRate.outGBs / 1e6,
      })
      line.push(`${cells[i].label}: ${ms[i].toFixed(3)} (${(base / ms[i]).toFixed(2)}x)`)
    }
    console.log(`${shape.name} T=${T} | ${line.join(' | ')}`)
  }
  // small calls: each pool size's own choice against one thread
  for (const T of SMALL_T) {
    const cells: Cell[] = [{ label: 'single', rt: single, layer: singleLayer, parts: null, host: false }]
    sized.forEach((rt, i) => cells.push({ label: `threads: ${pools[i]}`, rt, layer: sizedLayers[i], parts: null, host: false }))
    cells.push({ label: 'single host', rt: single, layer: singleLayer, parts: null, host: true })
    sized.forEach((rt, i) => cells.push({ label: `threads: ${pools[i]} host`, rt, layer: sizedLayers[i], parts: null, host: true }))
    const ms = await measure(T, cells)
    const line: string[] = []
    for (let i = 0; i < cells.length; i++) {
      const host = cells[i].host
      const base = ms[host ? pools.length + 1 : 0]
      results.push({
        kind: 'small',
        shape: shape.name,
        T,
        pool: cells[i].label,
        host,
        ms: ms[i],
        overSingle: ms[i] / base,
        weightGBs: weightBytes(T) / ms[i] / 1e6,
      })
      line.push(`${cells[i].label}: ${ms[i].toFixed(3)} (${(ms[i] / base).toFixed(2)})`)
    }
    console.log(`${shape.name} T=${T} small | ${line.join(' | ')}`)
  }
  bigLayer.dispose()
  singleLayer.dispose()
  for (const l of sizedLayers) l.dispose()
}
const run = { date: new Date().toISOString(), cores: cpus().length, cpu: cpus()[0]?.model ?? '', max, rounds, copyRate, readGBs, results }
writeFileSync(jsonPath, JSON.stringify(run, null, 1))
writeFileSync(jsonPath.replace(/\.json$/, '.md'), scalingMarkdown(run))
big.dispose()
single.dispose()
for (const rt of sized) rt.dispose()
