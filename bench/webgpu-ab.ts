/**
 * Two trees of the WebGPU backend side by side in one process, on one device: the kernels of each
 * for the same call, timed alternately (timestamp queries, min and median over rounds of 5 passes),
 * and the CPU of `encode` on GPU-resident buffers (a stream of calls, alternated the same way). For
 * kernel and binding changes: check the old commit out into a folder (git worktree add OLD REV),
 * then `npx tsx bench/webgpu-ab.ts OLD [--kernels software|discrete] [--only=<regex>] [--rounds N]`.
 * `--old-unroll=on|off` and `--new-unroll=on|off` force the WGSL loop unrolling (src/webgpu/unroll.ts)
 * of either tree: `bench/webgpu-ab.ts . --old-unroll=on` times the unrolled kernels of this tree
 * against the driver's own unrolling. `--long` adds calls of 1,024 entries. Prints one line per
 * shape with new / old.
 */
import path from 'node:path'
import process from 'node:process'
import { pathToFileURL } from 'node:url'
import { buildSegments } from '../src/metadata.js'
import * as NewCall from '../src/webgpu/call.js'
import * as NewGpu from '../src/webgpu/index.js'
import { gpuTimer } from './gpu-timer.js'
import { type Shape, shapeCase } from './webgpu-shapes.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
const args = process.argv.slice(2)
const flag = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const oldRoot = args.find((a) => !a.startsWith('--'))
if (!oldRoot) throw new Error('usage: npx tsx bench/webgpu-ab.ts OLD_TREE [--kernels=software|discrete] [--only=<regex>] [--rounds=N]')
const from = (rel: string) => import(pathToFileURL(path.resolve(oldRoot, rel)).href)
const OldGpu = (await from('src/webgpu/index.ts')) as typeof NewGpu
const OldCall = (await from('src/webgpu/call.ts')) as typeof NewCall
const rounds = Number(flag('rounds') ?? 8)
const only = flag('only')

const unrollOf = (v: string | undefined): boolean | undefined => (v === undefined ? undefined : v === 'on')
const kernels = flag('kernels') as 'software' | 'discrete' | undefined
const nb = await NewGpu.createWebGpuBackend({ kernels, unroll: unrollOf(flag('new-unroll')) })
const device = nb.device
// the same device and tile family for the old tree (a given device is not known to be software)
const ob = await OldGpu.createWebGpuBackend({ device, kernels: nb.kernels, unroll: unrollOf(flag('old-unroll')) })
const times = gpuTimer(device, { software: nb.isSoftware }).timesUs

const shapes: Shape[] = []
for (const dtype of ['f32', 'bf16'] as const)
  for (const layer of ['square', 'qkv'] as const)
    for (const rank of [16, 64])
      for (const [T, adapters] of [[1, 1], [16, 8], [256, 1], ...(args.includes('--long') ? [[1024, 1]] : [])])
        shapes.push({ T, layer, rank, adapters, dtype })

const min = (v: number[]): number => Math.min(...v)
const med = (v: number[]): number => [...v].sort((a, b) => a - b)[v.length >> 1]
for (const s of shapes) {
  const label = `${s.dtype} ${s.layer} r${s.rank} L${s.adapters} T${s.T}`
  if (only && !new RegExp(only).test(label)) continue
  const d = shapeCase(s)
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST
  const x = device.createBuffer({ size: d.x.byteLength, usage })
  const y = device.createBuffer({ size: d.y.byteLength, usage })
  device.queue.writeBuffer(x, 0, d.x as Float32Array<ArrayBuffer>)
  const plan = buildSegments(d.ids, 1, 8)
  const trees = await Promise.all(
    (
      [
        [ob, OldCall],
        [nb, NewCall],
      ] as const
    ).map(async ([b, C]) => {
      const layer = b.createLayer(d.spec) as ReturnType<typeof nb.createLayer> & { ctx: NewCall.CallContext }
      for (let a = 0; a < s.adapters; a++) layer.setAdapter(a, { ...d.adapters[0], rank: s.rank })
      const call = await C.prepareCall(layer.ctx, plan, x, y)
      return { layer, call, C }
    }),
  )
  const gpu: number[][] = [[], []]
  const cpu: number[][] = [[], []]
  for (let r = 0; r < rounds; r++)
    for (const [i, t] of trees.entries()) {
      gpu[i].push(min(await times(5, (enc, tw) => t.C.encodeCall(enc, t.call as never, tw))))
      await device.queue.onSubmittedWorkDone() // a software adapter's threads idle while the CPU is timed
      const enc = device.createCommandEncoder()
      const t0 = performance.now()
      for (let k = 0; k < 200; k++) t.layer.encode(enc, x, y, plan)
      cpu[i].push(((performance.now() - t0) / 200) * 1e3)
      enc.finish()
    }
  const f = (v: number): string => v.toFixed(v < 100 ? 1 : 0)
  console.log(
    `${label.padEnd(24)} GPU us old min ${f(min(gpu[0]))} med ${f(med(gpu[0]))}, new min ${f(min(gpu[1]))} med ${f(med(gpu[1]))} (new / old ${(min(gpu[1]) / min(gpu[0])).toFixed(2)})` +
      ` | encode CPU us old ${f(med(cpu[0]))}, new ${f(med(cpu[1]))} (${(med(cpu[1]) / med(cpu[0])).toFixed(2)}) | ${trees[1].call.dispatches.map((q) => q.spec.shader).join('+')}`,
  )
  for (const t of trees) t.layer.dispose()
  x.destroy()
  y.destroy()
}
nb.dispose()
process.exit(0)
