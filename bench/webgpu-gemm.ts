/**
 * Prefill tile tuning of the GEMM kernels on one adapter:
 * `npx tsx bench/webgpu-gemm.ts [--only=<regex>] [--defaults] [--out=file.json]`.
 * For each T >= 256 shape of bench/webgpu.ts, in one process: the GPU time (timestamp queries,
 * best of several passes) of one call with the kernels chosen by default, with the GEMM kernels
 * off (the kernels of shrink.ts / expand.ts), with the fold of the split-K partials forced on and
 * off (programs/fold.ts), with y read where the expand writes it (`prefetchY` false), with the
 * slices of a stacked layer apart (`mergeSlices` false), and of each kernel alone over forced
 * variants (programs/gemm.ts: entries per tile, split-K over workgroups, register blocks, k
 * blocks, slices merged or apart; partials not folded), so the choice can be checked against the
 * alternatives. `--defaults`: the calls only, no variants. Prints one line per shape.
 */
import { writeFileSync } from 'node:fs'
import process from 'node:process'
import { buildSegments } from '../src/metadata.js'
import { encodeCall, prepareCall, type PreparedCall } from '../src/webgpu/call.js'
import { createWebGpuBackend } from '../src/webgpu/index.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import type { ExpandGemmTiling, ShrinkGemmTiling } from '../src/webgpu/programs/gemm.js'
import { gpuTimer } from './gpu-timer.js'
import { type Shape, shapeCase } from './webgpu-shapes.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7)
const out = process.argv.find((a) => a.startsWith('--out='))?.slice(6)
const defaultsOnly = process.argv.includes('--defaults')
const backend = await createWebGpuBackend({ kernels: 'discrete' })
const device = backend.device
if (!device.features.has('timestamp-query')) throw new Error('this bench needs timestamp-query')

/** GPU us of each of `reps` passes, after the clock warm-up of bench/gpu-timer.ts. */
const gpuTimes = gpuTimer(device, { software: backend.isSoftware }).timesUs

/** Best GPU us of the call's dispatches of kernel `which` (0: the shrink, 1: the expand; all by default) in one pass. */
async function time(call: PreparedCall, which?: 0 | 1): Promise<number> {
  const d = call.dispatches
  const one = which === undefined ? call : { dispatches: [which === 0 ? d[0] : d[d.length - 1]] }
  await gpuTimes(2, (enc, tw) => encodeCall(enc, one, tw))
  return Math.min(...(await gpuTimes(10, (enc, tw) => encodeCall(enc, one, tw))))
}

const SHRINKS: Partial<ShrinkGemmTiling>[] = [
  {},
  { BM: 8, BR: 4 },
  { BM: 4, BR: 8 },
  { BM: 2, BR: 4 },
  { BM: 4, BR: 2 },
  { BM: 8, BR: 2 },
  { BM: 2, BR: 2 },
  { KB: 64 },
  { BM: 2, BR: 2, KB: 64 },
  { BM: 2, BR: 2, KB: 128 },
  // every rank row of a 16-row tile in one thread: the lanes of a warp read one A quad at one address
  { BM: 1, BR: 16 },
  { BM: 2, BR: 16 },
  { BM: 1, BR: 8 },
  { BM: 2, BR: 8 },
]
const EXPANDS: Partial<ExpandGemmTiling>[] = [
  {},
  { BM: 4, NW: 16, BQ: 2 },
  { BM: 4, NW: 16, BQ: 1 },
  { BM: 8, NW: 16, BQ: 2 },
  { BM: 8, NW: 32, BQ: 1 },
  { BM: 4, NW: 32, BQ: 2 },
  { BM: 16, NW: 16, BQ: 1 },
  { BM: 4, NW: 32, BQ: 4 },
  { BM: 8, NW: 32, BQ: 2 },
]
const name = (o: object): string =>
  Object.entries(o)
    .map(([k, v]) => `${k}${v}`)
    .join(' ') || 'default'

const shapes: Shape[] = []
for (const dtype of ['f32', 'bf16'] as const)
  for (const layer of ['square', 'qkv'] as const)
    for (const rank of [16, 64])
      for (const adapters of [1, 8]) for (const T of [256, 1024]) shapes.push({ T, layer, rank, adapters, dtype })
const label = (s: Shape): string => `${s.dtype} ${s.layer} r${s.rank} L${s.adapters} T${s.T}`
const picked = only ? shapes.filter((s) => new RegExp(only).test(label(s))) : shapes

const results: Record<string, unknown>[] = []
for (const s of picked) {
  const d = shapeCase(s)
  const layer = backend.createLayer(d.spec) as GpuLayer
  for (let a = 0; a < s.adapters; a++) layer.setAdapter(a, { ...d.adapters[0], rank: s.rank })
  const plan = buildSegments(d.ids, 1, 8)
  const xb = device.createBuffer({ size: d.x.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
  const yb = device.createBuffer({ size: d.y.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
  device.queue.writeBuffer(xb, 0, d.x as Float32Array<ArrayBuffer>)
  const prepare = async (tuning: TileTuning | undefined): Promise<PreparedCall | null> => {
    layer.ctx.tuning = tuning
    layer.ctx.kernels.clear()
    return prepareCall(layer.ctx, plan, xb, yb).catch((e: Error) => (console.log(`${label(s)}: ${e.message.slice(0, 160)}`), null))
  }
  const row: Record<string, unknown> = { shape: label(s) }
  const old = (await prepare({ gemm: false }))!
  row.old = { total: await time(old), shrink: await time(old, 0), expand: await time(old, 1) }
  const def = (await prepare(undefined))!
  row.default = {
    total: await time(def),
    shrink: await time(def, 0),
    expand: await time(def, 1),
    specs: def.dispatches.map((x) => x.spec.overrides),
    fold: def.dispatches.some((x) => x.spec.shader === 'fold'),
  }
  const folded = await prepare({ fold: true })
  const unfolded = await prepare({ fold: false })
  row.fold = folded ? await time(folded) : null
  row.noFold = unfolded ? await time(unfolded) : null
  const late = await prepare({ prefetchY: false })
  row.lateY = late ? await time(late) : null
  const merged = def.dispatches[0].spec.overrides.RS > 0
  const apart = merged ? await prepare({ mergeSlices: false }) : null
  row.apart = apart ? { total: await time(apart), shrink: await time(apart, 0) } : null
  const fmt = (v: unknown) => (typeof v === 'number' ? v.toFixed(1) : '-')
  if (defaultsOnly) {
    const o = row.old as { total: number }
    const df = row.default as { total: number; fold: boolean }
    console.log(
      `${label(s).padEnd(24)} old ${o.total.toFixed(1)} | default ${df.total.toFixed(1)}${df.fold ? ' (folded)' : ''}${merged ? ' (merged)' : ''} | fold ${fmt(row.fold)} | no fold ${fmt(row.noFold)} | y late ${fmt(row.lateY)} | slices apart ${fmt((row.apart as { total: number } | null)?.total)}`,
    )
    results.push(row)
    if (out) writeFileSync(out, JSON.stringify({ adapter: device.adapterInfo, results }, null, 1))
    layer.dispose()
    xb.destroy()
    yb.destroy()
    continue
  }
  // per (entries per tile, split-K): the best shrink and the best expand variant
  const grid: { tileM: number; KG: number; shrink: [string, number]; expand: [string, number] }[] = []
  for (const tileM of [32, 64]) {
    for (const KG of [1, 2, 4, 8, 16, 32]) {
      let bs: [string, number] = ['', Infinity]
      let be: [string, number] = ['', Infinity]
      for (const sv of SHRINKS) {
        for (const mergeSlices of merged ? [true, false] : [false]) {
          const rows = mergeSlices ? 16 * d.spec.sliceWidths.length : s.rank <= 16 ? 16 : 64
          if ((tileM / (sv.BM ?? 4)) * (rows / (sv.BR ?? (tileM <= 32 ? 2 : rows / 8))) > 256) continue
          const call = await prepare({ gemm: true, fold: false, tileM, mergeSlices, shrinkGemm: { ...sv, KG } })
          if (call) {
            const t = await time(call, 0)
            if (t < bs[1]) bs = [`${name(sv)}${merged ? (mergeSlices ? ' merged' : ' apart') : ''}`, t]
          }
        }
      }
      for (const ev of EXPANDS) {
        if ((tileM / (ev.BM ?? 4)) * (ev.NW ?? 16) > 256) continue
        const call = await prepare({ gemm: true, fold: false, tileM, shrinkGemm: { KG }, expandGemm: ev })
        if (call) {
          const t = await time(call, 1)
          if (t < be[1]) be = [name(ev), t]
        }
      }
      grid.push({ tileM, KG, shrink: bs, expand: be })
    }
  }
  grid.sort((a, b) => a.shrink[1] + a.expand[1] - (b.shrink[1] + b.expand[1]))
  row.grid = grid
  const o = row.old as { total: number; shrink: number; expand: number }
  const df = row.default as { total: number; shrink: number; expand: number }
  const top = grid
    .slice(0, 3)
    .map(
      (g) =>
        `M${g.tileM} KG${g.KG} ${(g.shrink[1] + g.expand[1]).toFixed(1)} (${g.shrink[0]} ${g.shrink[1].toFixed(1)} + ${g.expand[0]} ${g.expand[1].toFixed(1)})`,
    )
  console.log(
    `${label(s).padEnd(24)} old ${o.total.toFixed(1)} (${o.shrink.toFixed(1)} + ${o.expand.toFixed(1)}) | default ${df.total.toFixed(1)} (${df.shrink.toFixed(1)} + ${df.expand.toFixed(1)}) | fold ${fmt(row.fold)} | no fold ${fmt(row.noFold)} | ${top.join(' | ')}`,
  )
  results.push(row)
  // after every shape: a run cut short by a time limit keeps what it measured
  if (out) writeFileSync(out, JSON.stringify({ adapter: device.adapterInfo, results }, null, 1))
  layer.dispose()
  xb.destroy()
  yb.destroy()
}
backend.dispose()
