/**
 * Tile tuning on one adapter: `npx tsx bench/webgpu-tiles.ts [--pair | --fused] [--only=<regex>] [--out=file.json]`.
 * For each shape of bench/webgpu.ts, the GPU time (timestamp queries, best of several passes) of
 * one call (shrink + expand in one pass) with the tiles the backend chooses, with the kernels of
 * shrink.ts / expand.ts (tile kernels off), and with forced tile variants (src/webgpu/programs/
 * choose.ts `TileTuning`), so the choice in programs/tile.ts can be checked against the
 * alternatives on the adapter at hand. Prints one line per shape, best variant first.
 */
import { writeFileSync } from 'node:fs'
import process from 'node:process'
import { buildSegments, type SegmentPlan } from '../src/metadata.js'
import { encodeCall, prepareCall } from '../src/webgpu/call.js'
import { createWebGpuBackend } from '../src/webgpu/index.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import { gpuTimer } from './gpu-timer.js'
import { type Shape, shapeCase } from './webgpu-shapes.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7)
const out = process.argv.find((a) => a.startsWith('--out='))?.slice(6)
/**
 * `--pair`: only the chosen tiles against the kernels of shrink.ts / expand.ts and against y read
 * where the expand writes it (`prefetchY` false), alternated twice (side by side in one run).
 */
const pair = process.argv.includes('--pair')
/**
 * `--fused`: decode shapes only, the chosen kernels against fused_tile.wgsl (one dispatch) with its
 * default and forced tiles, the first three alternated twice (side by side in one run), and the
 * CPU per call of those three (a stream of encodes, a stream of resident applies).
 */
const fused = process.argv.includes('--fused')
const backend = await createWebGpuBackend({ kernels: 'discrete' })
const device = backend.device
if (!device.features.has('timestamp-query')) throw new Error('this bench needs timestamp-query')

/** GPU us of each of `reps` passes, after the clock warm-up of bench/gpu-timer.ts. */
const gpuTimes = gpuTimer(device, { software: backend.isSoftware }).timesUs

/** Variants by regime: decode (segments of at most 16 entries) and prefill. */
function variants(s: Shape): [string, TileTuning | undefined][] {
  const v: [string, TileTuning | undefined][] = [
    ['default', undefined],
    ['old', { tileKernels: false }],
    ['y late', { prefetchY: false }],
  ]
  if (pair) return [...v, ...v]
  if (fused) {
    const ks = 512 / s.rank // fusedTiling's KS at RR 2
    const f: [string, TileTuning | undefined][] = [
      ['default', undefined],
      ['fused', { fused: true }],
      ['pair', { fused: false }],
    ]
    for (const [NW, KT] of [
      [16, 8],
      [32, 4],
      [32, 8],
      [64, 2],
      [64, 4],
      [128, 2],
    ])
      f.push([`fused NW${NW} KT${KT}`, { fused: { NW, KT } }])
    f.push(['fused KU8', { fused: { KU: 8 } }])
    for (const QU of [1, 2, 8]) f.push([`fused QU${QU}`, { fused: { QU } }])
    f.push(['fused KS/2 RR1', { fused: { KS: ks / 2, RR: 1 } }])
    f.push(['fused KS*2 RR4', { fused: { KS: ks * 2, RR: 4 } }])
    return [...f, ...f.slice(0, 3)]
  }
  const seg = Math.ceil(s.T / s.adapters)
  if (seg <= 16) {
    for (const KG of [4, 8, 16, 32])
      for (const KS of [16, 32, 64]) for (const RT of [4, 16]) v.push([`KG${KG} KS${KS} RT${RT}`, { shrink: { KG, KS, RT, RC: RT } }])
    v.push(['expand KU4', { expand: { KU: 4 } }])
    v.push(['expand KU16', { expand: { KU: 16 } }])
    for (const KT of [2, 4, 8]) v.push([`expand KT${KT}`, { expand: { KT } }])
    v.push(['expand KT4 KU4', { expand: { KT: 4, KU: 4 } }])
    v.push(['expand KT2 KU16', { expand: { KT: 2, KU: 16 } }])
    v.push(['expand NW64', { expand: { NW: 64 } }])
    v.push(['expand NW16', { expand: { NW: 16 } }])
    return v
  }
  for (const tileM of [16, 32, 64]) {
    for (const KG of [1, 2, 4, 8, 16]) v.push([`M${tileM} KG${KG}`, { tileM, shrink: { KG } }])
    v.push([`M${tileM} unstaged`, { tileM, shrink: { STAGE: 0, KB: 4 } }])
    v.push([`M${tileM} expand NQ1 NW64`, { tileM, expand: { NW: 64, NQ: 1 } }])
    v.push([`M${tileM} expand NQ4`, { tileM, expand: { NQ: 4 } }])
  }
  return v
}

const shapes: Shape[] = []
for (const dtype of ['f32', 'bf16'] as const)
  for (const layer of ['square', 'qkv'] as const)
    for (const rank of [16, 64])
      for (const adapters of [1, 8]) for (const T of [1, 16, 256, 1024]) shapes.push({ T, layer, rank, adapters, dtype })
const label = (s: Shape): string => `${s.dtype} ${s.layer} r${s.rank} L${s.adapters} T${s.T}`
const picked = only ? shapes.filter((s) => new RegExp(only).test(label(s))) : shapes

/**
 * CPU us per call of `layer` as tuned now (--fused, the default / fused / pair variants): a stream
 * of `encode` into one encoder, and a stream of resident `apply` (each a submit), median of 5 runs.
 */
async function cpuUs(layer: GpuLayer, plan: SegmentPlan, xb: GPUBuffer, yb: GPUBuffer): Promise<{ encode: number; apply: number }> {
  const N = 100
  const runs: { encode: number; apply: number }[] = []
  for (let r = 0; r < 6; r++) {
    const enc = device.createCommandEncoder()
    let t0 = performance.now()
    for (let i = 0; i < N; i++) layer.encode(enc, xb, yb, plan)
    const encode = ((performance.now() - t0) / N) * 1e3
    device.queue.submit([enc.finish()])
    await device.queue.onSubmittedWorkDone()
    t0 = performance.now()
    for (let i = 0; i < N; i++) void layer.apply(xb, yb, plan)
    const apply = ((performance.now() - t0) / N) * 1e3
    await device.queue.onSubmittedWorkDone()
    if (r > 0) runs.push({ encode, apply }) // the first run warms up
  }
  const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1]
  return { encode: median(runs.map((x) => x.encode)), apply: median(runs.map((x) => x.apply)) }
}

const results: { shape: string; times: Record<string, number>; cpu?: Record<string, { encode: number; apply: number }> }[] = []
for (const s of picked) {
  const d = shapeCase(s)
  const layer = backend.createLayer(d.spec) as GpuLayer
  for (let a = 0; a < s.adapters; a++) layer.setAdapter(a, { ...d.adapters[0], rank: s.rank })
  const plan = buildSegments(d.ids, 1, 8)
  const xb = device.createBuffer({ size: d.x.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
  const yb = device.createBuffer({ size: d.y.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
  device.queue.writeBuffer(xb, 0, d.x as Float32Array<ArrayBuffer>)
  const times: Record<string, number> = {}
  const cpu: Record<string, { encode: number; apply: number }> = {}
  for (const [name, tuning] of variants(s)) {
    layer.ctx.tuning = tuning
    layer.ctx.kernels.clear()
    const call = await prepareCall(layer.ctx, plan, xb, yb).catch(
      (e: Error) => (console.log(`${label(s)} ${name}: ${e.message.slice(0, 80)}`), null),
    )
    if (!call) continue
    await gpuTimes(2, (enc, tw) => encodeCall(enc, call, tw))
    times[name] = Math.min(times[name] ?? Infinity, ...(await gpuTimes(10, (enc, tw) => encodeCall(enc, call, tw))))
    if (fused && ['default', 'fused', 'pair'].includes(name)) {
      const c = await cpuUs(layer, plan, xb, yb)
      const was = cpu[name]
      cpu[name] = was ? { encode: Math.min(was.encode, c.encode), apply: Math.min(was.apply, c.apply) } : c
    }
  }
  layer.dispose()
  xb.destroy()
  yb.destroy()
  const sorted = Object.entries(times).sort((a, b) => a[1] - b[1])
  console.log(
    `${label(s).padEnd(24)} default ${times.default.toFixed(1)} ${fused ? `fused ${times.fused?.toFixed(1)}` : `old ${times.old.toFixed(1)}`} | ${sorted
      .slice(0, 5)
      .map(([k, t]) => `${k} ${t.toFixed(1)}`)
      .join(', ')}`,
  )
  if (fused)
    console.log(
      `${''.padEnd(24)} cpu us (encode / apply): ${Object.entries(cpu)
        .map(([k, c]) => `${k} ${c.encode.toFixed(1)} / ${c.apply.toFixed(1)}`)
        .join(', ')}`,
    )
  results.push({ shape: label(s), times, ...(fused ? { cpu } : {}) })
}
if (out) writeFileSync(out, JSON.stringify({ adapter: device.adapterInfo, results }, null, 1))
backend.dispose()
