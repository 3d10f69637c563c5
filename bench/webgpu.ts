/**
 * WebGPU SGMV benchmark: `npx tsx bench/webgpu.ts` (XDG_RUNTIME_DIR=/tmp on lavapipe), or under
 * Deno (wgpu): `deno run -A --unstable-sloppy-imports --node-modules-dir=manual bench/webgpu.ts`.
 *
 * GPU time comes from timestamp queries around each compute pass (Dawn's timestamp quantization
 * is disabled by the device code), best of several passes. In the same run it measures the adapter's ceilings: a vec4 copy
 * kernel (GB/s, bytes read + written) and an 8x8-per-thread dense f32 matmul (GFLOP/s). Each SGMV
 * shape is reported as GFLOP/s and as a fraction of those ceilings (weight bytes read / time vs
 * copy GB/s), the GPU time of each kernel in a pass of its own, plus the wall time of apply on
 * host arrays vs GPU-resident buffers vs the same kernels in one bare submit.
 * Each shape also gets its roofline time R = max(bytes / copy rate, FLOPs / matmul rate), bytes =
 * x rows read + y rows read and written + the weights of the adapters used, and R / time, and
 * the GPU time of one pass of the copy kernel moving those bytes.
 * Writes bench/results/webgpu-<adapter>.json (one file per adapter and implementation; after
 * every shape too, marked partial, so a run cut short keeps what it measured) and prints a table.
 * `--quick`: fewer shapes and passes; `--only=<regex>`: the shapes whose label matches (nothing
 * written: a partial run would replace the whole table);
 * `--kernels=software|discrete|both`: the tile families timed (default: the adapter's own);
 * `--unroll=on|off`: the WGSL loop unrolling of src/webgpu/unroll.ts forced on or off.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import process from 'node:process'
import { createRuntime, type Runtime } from '../src/index.js'
import { buildSegments } from '../src/metadata.js'
import type { LayerSpec } from '../src/types.js'
import { WRITE_CHUNK, writeChunked } from '../src/webgpu/buffers.js'
import { loopBounding } from '../src/webgpu/backend.js'
import { createWebGpuBackend } from '../src/webgpu/index.js'
import { encodeCall, prepareCall } from '../src/webgpu/call.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { KernelProfile } from '../src/webgpu/programs/program.js'
import { materialise } from '../test/grid.js'
import { gpuTimer } from './gpu-timer.js'
import { writeResultsMarkdown } from './results-md.js'
import { type Shape, shapeCase } from './webgpu-shapes.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'
const quick = process.argv.includes('--quick')
/** `--only=<regex>`: run only the shapes whose label (e.g. "f32 qkv r64 L8 T256") matches. */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7)
const isDeno = 'Deno' in globalThis
const kernelsArg = process.argv.find((a) => a.startsWith('--kernels='))?.slice(10)
/** `--unroll=on|off`: force the WGSL loop unrolling (default: the backend's, on under wgpu). */
const unrollArg = process.argv.find((a) => a.startsWith('--unroll='))?.slice(9)
const unroll = unrollArg === undefined ? undefined : unrollArg === 'on'
const backend = await createWebGpuBackend({ unroll })
const device = backend.device
const profiles: KernelProfile[] =
  kernelsArg === 'both' ? ['software', 'discrete'] : [(kernelsArg as KernelProfile | undefined) ?? backend.kernels]
/** One backend per tile family, on the same device. */
const backends = new Map<KernelProfile, Awaited<ReturnType<typeof createWebGpuBackend>>>()
for (const k of profiles) backends.set(k, k === backend.kernels ? backend : await createWebGpuBackend({ device, kernels: k, unroll }))
if (!device.features.has('timestamp-query')) throw new Error('this bench needs timestamp-query')
const median = (a: number[]): number => [...a].sort((p, q) => p - q)[a.length >> 1]
/** GPU times are taken as the best of several passes (the machine is shared; ceilings likewise). */
const best = (a: number[]): number => Math.min(...a)
const now = (): number => performance.now()

/**
 * GPU ms of each of `reps` passes (timestamp queries), each batch after a clock warm-up on a
 * hardware GPU (bench/gpu-timer.ts): kernel times at the clock of a busy GPU, not of an idle one.
 */
const timer = gpuTimer(device, { software: backend.isSoftware })
const gpuTimes = timer.times

function pipeline(file: string, constants: Record<string, number> = {}): GPUComputePipeline {
  const code = readFileSync(new URL(`../shaders/${file}.wgsl`, import.meta.url), 'utf8')
  return device.createComputePipeline({
    layout: 'auto',
    compute: { module: device.createShaderModule({ code }), entryPoint: 'main', constants },
  })
}
function storage(bytes: number, extra = 0): GPUBuffer {
  return device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | extra })
}
function bind(p: GPUComputePipeline, buffers: GPUBuffer[]): GPUBindGroup {
  return device.createBindGroup({
    layout: p.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  })
}

/**
 * Best GPU ms of 10 passes of bench_copy over `groups` workgroups (each copies 256 vec4s: 4 KiB
 * read, 4 KiB written), one dispatch per pass.
 */
async function copyPass(groups: number): Promise<number> {
  const p = pipeline('bench_copy')
  const src = storage(groups * 256 * 16),
    dst = storage(groups * 256 * 16)
  const bg = bind(p, [src, dst])
  const t = await gpuTimes(10, (enc, tw) => {
    const pass = enc.beginComputePass({ timestampWrites: tw })
    pass.setPipeline(p)
    pass.setBindGroup(0, bg)
    pass.dispatchWorkgroups(Math.min(groups, 32768), Math.ceil(groups / 32768))
    pass.end()
  })
  src.destroy()
  dst.destroy()
  return best(t)
}

/** Copy ceiling: GB/s of (read + write) bytes, over 64 MiB. */
async function copyCeiling(): Promise<number> {
  const groups = 4096 * 4
  return (2 * groups * 256 * 16) / (await copyPass(groups)) / 1e6
}

/**
 * GPU ms of one pass of bench_copy moving `bytes` (half read, half written): what one pass
 * streaming a call's bytes takes on this GPU, its fixed cost (the pass, one dispatch) included.
 * A call's two or three dispatches cannot beat it; R / time against copyPass / time tells what
 * part of a miss is the pass and what part the kernels.
 */
function copyPassMs(bytes: number): Promise<number> {
  return copyPass(Math.max(1, Math.ceil(bytes / 32 / 256)))
}

/** Dense f32 matmul ceiling (GFLOP/s), 8x8 outputs per thread. */
async function matmulCeiling(M: number, N: number, K: number): Promise<number> {
  const p = pipeline('bench_matmul')
  const dims = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
  device.queue.writeBuffer(dims, 0, new Uint32Array([M, N, K, 0]))
  const a = storage(M * K * 4),
    b = storage(K * N * 4),
    c = storage(M * N * 4)
  const bg = bind(p, [dims, a, b, c])
  const t = await gpuTimes(4, (enc, tw) => {
    const pass = enc.beginComputePass({ timestampWrites: tw })
    pass.setPipeline(p)
    pass.setBindGroup(0, bg)
    pass.dispatchWorkgroups(N / 64, M / 64)
    pass.end()
  })
  for (const x of [dims, a, b, c]) x.destroy()
  return (2 * M * N * K) / (best(t) / 1e3) / 1e9
}

/** A runtime per tile family on the bench's device (the public API's cost per call). */
const runtimes = new Map<KernelProfile, Runtime>()
async function runtimeFor(kernels: KernelProfile): Promise<Runtime> {
  let rt = runtimes.get(kernels)
  if (!rt) runtimes.set(kernels, (rt = await createRuntime({ backend: 'webgpu', gpu: device, gpuKernels: kernels })))
  return rt
}

/** Clock checks (gpu-timer.ts) at or above this fraction of the run's best count as full clock. */
const CLOCK_OK = 0.8
const CLOCK_TRIES = 4

async function runShape(s: Shape, submitMs: number, kernels: KernelProfile) {
  const d = shapeCase(s)
  const layer = backends.get(kernels)!.createLayer(d.spec) as GpuLayer
  // every slot filled (the stream of new batches moves tokens to the next slot); the kernels read
  // only the slots the batch uses
  for (let a = 0; a < 8; a++) layer.setAdapter(a, { ...d.adapters[0], rank: s.rank })
  const plan = buildSegments(d.ids, 1, 8)
  const spec: LayerSpec = d.spec
  const S = spec.sliceWidths.length
  const used = Math.min(s.adapters, s.T)
  const flops = 2 * s.T * s.rank * (S * spec.inFeatures + spec.outFeatures)
  const weightBytes = used * s.rank * (S * spec.inFeatures + spec.outFeatures) * (s.dtype === 'f32' ? 4 : 2)
  // roofline bytes: x rows read, y rows read and written, the weights of the adapters used
  const bytes = s.T * spec.inFeatures * 4 + 2 * s.T * spec.outFeatures * 4 + weightBytes
  const xb = storage(d.x.byteLength),
    yb = storage(d.y.byteLength, GPUBufferUsage.COPY_SRC)
  device.queue.writeBuffer(xb, 0, d.x as Float32Array<ArrayBuffer>)
  device.queue.writeBuffer(yb, 0, d.y as Float32Array<ArrayBuffer>)
  const call = await prepareCall(layer.ctx, plan, xb, yb)
  await gpuTimes(1, (enc, tw) => encodeCall(enc, call, tw)) // warm-up
  const est = median(await gpuTimes(2, (enc, tw) => encodeCall(enc, call, tw)))
  const reps = Math.max(quick ? 3 : 5, Math.min(quick ? 5 : 20, Math.ceil(300 / Math.max(est, 1e-3))))
  // a batch whose clock check after it read under CLOCK_OK of the run's best ran at a lowered
  // clock (the H100 dropped to 0.2-0.35 for some rows: a call's 76 us of kernels read 246): timed
  // again, up to CLOCK_TRIES batches, keeping the one at the highest clock
  let kernelMs = Number.NaN
  let clockCheckGflops = 0
  for (let t = 0; t < CLOCK_TRIES; t++) {
    const ms = best(await gpuTimes(reps, (enc, tw) => encodeCall(enc, call, tw)))
    const check = timer.lastCheckGflops()
    if (t === 0 || check > clockCheckGflops) {
      kernelMs = ms
      clockCheckGflops = check
    }
    if (timer.clockOf(check) >= CLOCK_OK) break
  }
  const copyMs = await copyPassMs(bytes)
  // each dispatch in a pass of its own: which kernel the time goes to
  const perKernelMs: Record<string, number> = {}
  for (const d of call.dispatches) {
    const one = { dispatches: [d] }
    const ms = best(await gpuTimes(Math.max(2, Math.min(reps, 4)), (enc, tw) => encodeCall(enc, one, tw)))
    perKernelMs[d.spec.shader] = (perKernelMs[d.spec.shader] ?? 0) + ms
  }
  // wall time: host arrays (upload + kernels + readback), GPU-resident apply, and the floor for
  // the latter measured the same way in the same loop: the prepared kernels in one submit (no
  // metadata, uploads or error scopes), so both see the same machine load (the ratio to the
  // best-of timestamp time also counts the wall-vs-GPU-timer gap and load changes)
  const wallReps = Math.max(3, Math.min(10, Math.ceil(300 / est)))
  const host: number[] = [],
    resident: number[] = [],
    residentCpu: number[] = [],
    residentSync: number[] = [],
    raw: number[] = []
  const y = new Float32Array(d.y)
  for (let i = 0; i < wallReps; i++) {
    let t0 = now()
    const enc = device.createCommandEncoder()
    encodeCall(enc, call)
    device.queue.submit([enc.finish()])
    await device.queue.onSubmittedWorkDone()
    raw.push(now() - t0)
    t0 = now()
    await layer.apply(d.x, y, plan)
    host.push(now() - t0)
    t0 = now()
    const done = layer.apply(xb, yb, plan)
    residentSync.push(now() - t0)
    await done
    residentCpu.push(now() - t0)
    await device.queue.onSubmittedWorkDone()
    resident.push(now() - t0)
  }
  // CPU per call of a back-to-back stream of resident applies (no wait for the GPU in between),
  // and of encode into one encoder: what a model with many LoRA modules per step pays
  const stream = est < 0.5 ? 50 : 3
  let t0 = now()
  for (let i = 0; i < stream; i++) await layer.apply(xb, yb, plan)
  const streamApplyCpuMs = (now() - t0) / stream
  await device.queue.onSubmittedWorkDone()
  const enc = device.createCommandEncoder()
  t0 = now()
  for (let i = 0; i < stream; i++) layer.encode(enc, xb, yb, plan)
  const encodeCpuMs = (now() - t0) / stream
  device.queue.submit([enc.finish()])
  await device.queue.onSubmittedWorkDone()
  // the same stream alternating two y buffers: the same batch bound to other buffers (before
  // the rebind of call.ts, every such call planned and wrote its metadata anew)
  const yb2 = storage(d.y.byteLength, GPUBufferUsage.COPY_SRC)
  t0 = now()
  for (let i = 0; i < stream; i++) await layer.apply(xb, i & 1 ? yb2 : yb, plan)
  const streamNewApplyCpuMs = (now() - t0) / stream
  await device.queue.onSubmittedWorkDone()
  // the same stream alternating two batches (every token moved to the next slot): every call
  // plans, packs and writes its metadata (one writeBuffer) on the same buffers
  const plan2 = buildSegments(
    d.ids.map((id) => (id + 1) % 8),
    1,
    8,
  )
  t0 = now()
  for (let i = 0; i < stream; i++) await layer.apply(xb, yb, i & 1 ? plan2 : plan)
  const streamNewBatchApplyCpuMs = (now() - t0) / stream
  await device.queue.onSubmittedWorkDone()
  // Dawn's own floor, no library code, in the same run: the prepared call encoded and submitted
  // per call (what a resident apply cannot go below with one submit per call), an empty command
  // buffer submitted per call, and the prepared call recorded into one encoder (encode's floor)
  t0 = now()
  for (let i = 0; i < stream; i++) {
    const e = device.createCommandEncoder()
    encodeCall(e, call)
    device.queue.submit([e.finish()])
  }
  const bareApplyCpuMs = (now() - t0) / stream
  await device.queue.onSubmittedWorkDone()
  t0 = now()
  for (let i = 0; i < stream; i++) device.queue.submit([device.createCommandEncoder().finish()])
  const emptySubmitCpuMs = (now() - t0) / stream
  await device.queue.onSubmittedWorkDone()
  const bareEnc = device.createCommandEncoder()
  t0 = now()
  for (let i = 0; i < stream; i++) encodeCall(bareEnc, call)
  const bareEncodeCpuMs = (now() - t0) / stream
  device.queue.submit([bareEnc.finish()])
  await device.queue.onSubmittedWorkDone()
  // the public API on the same buffers and batch (checks, slot order, backend choice, segments):
  // what a caller of layer.apply / layer.encode pays per call on top of the backend's layer
  const pub = (await runtimeFor(kernels)).createLayer({ ...d.spec, outFeatures: d.spec.sliceWidths })
  for (let a = 0; a < 8; a++) pub.setAdapter(a, { ...d.adapters[0], rank: s.rank })
  // one call of each first (the runtime's first call on a batch plans it and may create pipelines)
  await pub.apply(xb, yb, d.ids, { backend: 'webgpu' })
  const warm = device.createCommandEncoder()
  pub.encode(warm, xb, yb, d.ids)
  device.queue.submit([warm.finish()])
  await device.queue.onSubmittedWorkDone()
  // medians of per-call times: the runtime's host copies of 8 slots make a collection during the
  // stream likely, which a mean over a short stream would charge to every call
  const pubApply: number[] = [],
    pubEncode: number[] = []
  for (let i = 0; i < stream; i++) {
    t0 = now()
    await pub.apply(xb, yb, d.ids, { backend: 'webgpu' })
    pubApply.push(now() - t0)
  }
  const publicApplyCpuMs = median(pubApply)
  await device.queue.onSubmittedWorkDone()
  const pubEnc = device.createCommandEncoder()
  for (let i = 0; i < stream; i++) {
    t0 = now()
    pub.encode(pubEnc, xb, yb, d.ids)
    pubEncode.push(now() - t0)
  }
  const publicEncodeCpuMs = median(pubEncode)
  device.queue.submit([pubEnc.finish()])
  await device.queue.onSubmittedWorkDone()
  pub.dispose()
  layer.dispose()
  xb.destroy()
  yb.destroy()
  yb2.destroy()
  const gflops = flops / (kernelMs / 1e3) / 1e9
  const weightGBs = weightBytes / (kernelMs / 1e3) / 1e9
  const hostMs = median(host),
    residentMs = median(resident)
  return {
    ...s,
    kernels,
    kernelMs,
    clockCheckGflops,
    perKernelMs,
    copyPassMs: copyMs,
    copyPassOverTime: copyMs / kernelMs,
    gflops,
    weightGBs,
    flops,
    bytes,
    hostMs,
    residentMs,
    residentCpuMs: median(residentCpu),
    residentSyncMs: median(residentSync),
    streamApplyCpuMs,
    streamNewApplyCpuMs,
    streamNewBatchApplyCpuMs,
    encodeCpuMs,
    bareApplyCpuMs,
    emptySubmitCpuMs,
    bareEncodeCpuMs,
    publicApplyCpuMs,
    publicEncodeCpuMs,
    residentOverKernelPlusSubmit: residentMs / (kernelMs + submitMs),
    rawSubmitMs: median(raw),
    residentOverRawSubmit: residentMs / median(raw),
  }
}

/** GPU ms of a pass with one and with two 1-workgroup dispatches: what a fused kernel could save. */
async function dispatchCost(): Promise<{ oneMs: number; twoMs: number }> {
  const p = pipeline('bench_copy')
  const src = storage(4096),
    dst = storage(4096)
  const bg = bind(p, [src, dst])
  const run = (n: number) =>
    gpuTimes(20, (enc, tw) => {
      const pass = enc.beginComputePass({ timestampWrites: tw })
      pass.setPipeline(p)
      pass.setBindGroup(0, bg)
      for (let i = 0; i < n; i++) pass.dispatchWorkgroups(1)
      pass.end()
    })
  const oneMs = best(await run(1)),
    twoMs = best(await run(2))
  src.destroy()
  dst.destroy()
  return { oneMs, twoMs }
}

/** Wall time of one trivial submit + onSubmittedWorkDone: the fixed cost of a GPU-resident call. */
async function submitCost(): Promise<number> {
  const t: number[] = []
  for (let i = 0; i < 20; i++) {
    const t0 = now()
    device.queue.submit([device.createCommandEncoder().finish()])
    await device.queue.onSubmittedWorkDone()
    t.push(now() - t0)
  }
  return median(t)
}

const info = device.adapterInfo ?? ({} as GPUAdapterInfo)
// The machine is shared: ceilings are re-measured every few shapes and the best value seen is
// used, so a ceiling sampled in a busy moment cannot inflate the fractions.
const ceil = { copyGBs: 0, matmulGflops: 0 }
const samples: { copyGBs: number; matmulGflops: number }[] = []
async function sampleCeilings(): Promise<void> {
  const s = { copyGBs: await copyCeiling(), matmulGflops: await matmulCeiling(2048, 2048, 512) }
  samples.push(s)
  ceil.copyGBs = Math.max(ceil.copyGBs, s.copyGBs)
  ceil.matmulGflops = Math.max(ceil.matmulGflops, s.matmulGflops)
}
await sampleCeilings()
ceil.matmulGflops = Math.max(ceil.matmulGflops, await matmulCeiling(1024, 1024, 1024))
const submitMs = await submitCost()
const dispatch = await dispatchCost()
console.log(`adapter: ${info.vendor} ${info.architecture} ${info.description}; software: ${backend.isSoftware}`)
console.log(
  `pass with 1 tiny dispatch ${dispatch.oneMs.toFixed(3)} ms, with 2: ${dispatch.twoMs.toFixed(3)} ms; submit + onSubmittedWorkDone ${submitMs.toFixed(3)} ms`,
)
const shapes: Shape[] = []
for (const dtype of ['f32', 'bf16'] as const)
  for (const layer of ['square', 'qkv'] as const)
    for (const rank of [16, 64])
      for (const adapters of [1, 8]) for (const T of quick ? [1, 256] : [1, 16, 256, 1024]) shapes.push({ T, layer, rank, adapters, dtype })
const label = (s: Shape): string => `${s.dtype} ${s.layer} r${s.rank} L${s.adapters} T${s.T}`
if (only) shapes.splice(0, shapes.length, ...shapes.filter((s) => new RegExp(only).test(label(s))))
/**
 * Host <-> GPU rates (GB/s) of 64 MiB, best of 5: uploads three ways, the ceiling being the best
 * of them (named in the results): one writeBuffer; writeBuffer in pieces of WRITE_CHUNK (what
 * host calls use); a reused MAP_WRITE staging buffer (mapAsync, fill, unmap, copyBufferToBuffer,
 * the wait for the map included). Readback: a copy into a mapped buffer, read out.
 */
async function hostRates(): Promise<{
  uploadGBs: number
  uploadMethod: string
  uploadByMethod: Record<string, number>
  readbackGBs: number
}> {
  const n = 64 * 1024 * 1024
  const data = new Float32Array(n / 4)
  const dst = storage(n, GPUBufferUsage.COPY_SRC)
  const read = device.createBuffer({ size: n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
  const stage = device.createBuffer({ size: n, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC })
  const methods: Record<string, () => Promise<void>> = {
    writeBuffer: async () => {
      device.queue.writeBuffer(dst, 0, data)
      await device.queue.onSubmittedWorkDone()
    },
    [`writeBuffer in ${WRITE_CHUNK >> 20} MiB writes`]: async () => {
      writeChunked(device.queue, dst, data, data.length)
      await device.queue.onSubmittedWorkDone()
    },
    'mapped staging buffer': async () => {
      await stage.mapAsync(GPUMapMode.WRITE)
      new Float32Array(stage.getMappedRange()).set(data)
      stage.unmap()
      const enc = device.createCommandEncoder()
      enc.copyBufferToBuffer(stage, 0, dst, 0, n)
      device.queue.submit([enc.finish()])
      await device.queue.onSubmittedWorkDone()
    },
  }
  const up: Record<string, number[]> = {}
  const down: number[] = []
  for (let i = 0; i < 5; i++) {
    for (const [name, run] of Object.entries(methods)) {
      const t0 = now()
      await run()
      ;(up[name] ??= []).push(now() - t0)
    }
    const t0 = now()
    const enc = device.createCommandEncoder()
    enc.copyBufferToBuffer(dst, 0, read, 0, n)
    device.queue.submit([enc.finish()])
    await read.mapAsync(GPUMapMode.READ)
    data.set(new Float32Array(read.getMappedRange()))
    read.unmap()
    down.push(now() - t0)
  }
  for (const b of [dst, read, stage]) b.destroy()
  const uploadByMethod = Object.fromEntries(Object.entries(up).map(([k, t]) => [k, n / (best(t) / 1e3) / 1e9]))
  const [uploadMethod, uploadGBs] = Object.entries(uploadByMethod).sort((a, b) => b[1] - a[1])[0]
  return { uploadGBs, uploadMethod, uploadByMethod, readbackGBs: n / (best(down) / 1e3) / 1e9 }
}

/**
 * A small model's LoRA step: 32 modules (layers alternating a 4096-wide square and a qkv stack,
 * rank 16, f32, one adapter) recorded with encode into one encoder, one submit, waited for;
 * against the sum of the same calls' kernel times (timestamps, each call in a pass of its own).
 */
async function encodeModel(T: number, kernels: KernelProfile) {
  const layers: {
    layer: GpuLayer
    x: GPUBuffer
    y: GPUBuffer
    plan: ReturnType<typeof buildSegments>
    plan2: ReturnType<typeof buildSegments>
  }[] = []
  for (let m = 0; m < 32; m++) {
    const widths = m % 2 === 0 ? [4096] : [4096, 1024, 1024]
    const d = materialise({
      name: '',
      seed: 7 + m,
      inFeatures: 4096,
      sliceWidths: widths,
      rank: 16,
      tokens: T,
      slots: 2,
      pattern: 'identical',
      dtype: 'f32',
      adaptersPerToken: 1,
    })
    const layer = backends.get(kernels)!.createLayer(d.spec) as GpuLayer
    layer.setAdapter(0, d.adapters[0])
    layer.setAdapter(1, d.adapters[0])
    d.ids.fill(0)
    const x = storage(d.x.byteLength),
      y = storage(d.y.byteLength)
    device.queue.writeBuffer(x, 0, d.x as Float32Array<ArrayBuffer>)
    // plan2: the same tokens on slot 1, for steps whose batch changed (every module plans anew)
    layers.push({ layer, x, y, plan: buildSegments(d.ids, 1, 2), plan2: buildSegments(d.ids.fill(1), 1, 2) })
  }
  let sumKernelMs = 0
  const calls: Awaited<ReturnType<typeof prepareCall>>[] = []
  for (const l of layers) {
    const call = await prepareCall(l.layer.ctx, l.plan, l.x, l.y)
    calls.push(call)
    await gpuTimes(1, (enc, tw) => encodeCall(enc, call, tw))
    sumKernelMs += best(await gpuTimes(5, (enc, tw) => encodeCall(enc, call, tw)))
  }
  // the parts of the wall, each timed per step: recording (encode), finish + submit, the wait
  // after submit; the same steps with Dawn alone (the prepared calls recorded directly, one pass
  // per module as encode does, or all in one pass); an empty submit's wait; steps whose batch
  // changes every time (each module plans and writes its metadata)
  const part: Record<string, number[]> = {}
  const put = (k: string, v: number): number => ((part[k] ??= []).push(v), v)
  const step = async (name: string, record: (e: GPUCommandEncoder) => void): Promise<void> => {
    const t0 = now()
    const e = device.createCommandEncoder()
    record(e)
    const t1 = put(`${name}Encode`, now() - t0)
    device.queue.submit([e.finish()])
    const t2 = put(`${name}Submit`, now() - t0 - t1)
    await device.queue.onSubmittedWorkDone()
    put(`${name}Wait`, now() - t0 - t1 - t2)
    put(`${name}Wall`, now() - t0)
  }
  for (let i = 0; i < 10; i++) {
    await step('ours', (e) => layers.forEach((l) => l.layer.encode(e, l.x, l.y, l.plan)))
    await step('oursPass', (e) => {
      const pass = e.beginComputePass()
      for (const l of layers) l.layer.encode(pass, l.x, l.y, l.plan)
      pass.end()
    })
    await step('bare', (e) => calls.forEach((c) => encodeCall(e, c)))
    await step('onePass', (e) => encodeCall(e, { dispatches: calls.flatMap((c) => c.dispatches) }))
    await step('empty', () => {})
  }
  for (let i = 0; i < 10; i++) await step('newBatch', (e) => layers.forEach((l) => l.layer.encode(e, l.x, l.y, i & 1 ? l.plan : l.plan2)))
  const parts = Object.fromEntries(Object.entries(part).map(([k, v]) => [`${k}Ms`, median(v)]))
  // wall: encode, submit, wait (CPU and GPU in sequence); span: the GPU time from the start of the
  // first recorded pass to the end of the last (timestamps of two empty passes around them), of
  // encode into the encoder (a pass per module) and into one pass of the caller's
  const walls: number[] = [],
    cpus: number[] = [],
    spans: number[] = [],
    passSpans: number[] = []
  for (let i = 0; i < 10; i++) {
    const t0 = now()
    const enc = device.createCommandEncoder()
    for (const l of layers) l.layer.encode(enc, l.x, l.y, l.plan)
    device.queue.submit([enc.finish()])
    cpus.push(now() - t0)
    await device.queue.onSubmittedWorkDone()
    walls.push(now() - t0)
    spans.push(
      ...(await gpuTimes(1, (e, tw) => {
        e.beginComputePass({ timestampWrites: { querySet: tw.querySet, beginningOfPassWriteIndex: tw.beginningOfPassWriteIndex } }).end()
        for (const l of layers) l.layer.encode(e, l.x, l.y, l.plan)
        e.beginComputePass({ timestampWrites: { querySet: tw.querySet, endOfPassWriteIndex: tw.endOfPassWriteIndex } }).end()
      })),
    )
    passSpans.push(
      ...(await gpuTimes(1, (e, tw) => {
        e.beginComputePass({ timestampWrites: { querySet: tw.querySet, beginningOfPassWriteIndex: tw.beginningOfPassWriteIndex } }).end()
        const pass = e.beginComputePass()
        for (const l of layers) l.layer.encode(pass, l.x, l.y, l.plan)
        pass.end()
        e.beginComputePass({ timestampWrites: { querySet: tw.querySet, endOfPassWriteIndex: tw.endOfPassWriteIndex } }).end()
      })),
    )
  }
  for (const l of layers) {
    l.layer.dispose()
    l.x.destroy()
    l.y.destroy()
  }
  const wallMs = median(walls)
  return {
    T,
    kernels,
    modules: layers.length,
    sumKernelMs,
    wallMs,
    cpuMs: median(cpus),
    wallOverKernelSum: wallMs / sumKernelMs,
    gpuSpanMs: median(spans),
    gpuSpanOverKernelSum: median(spans) / sumKernelMs,
    gpuSpanPassMs: median(passSpans),
    gpuSpanPassOverKernelSum: median(passSpans) / sumKernelMs,
    wallOverKernelSumPlusSubmit: wallMs / (sumKernelMs + submitMs),
    ...parts,
  }
}

const rates = await hostRates()
console.log(
  `host -> GPU ${rates.uploadGBs.toFixed(2)} GB/s (${rates.uploadMethod}; ${Object.entries(rates.uploadByMethod)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ')}), GPU -> host ${rates.readbackGBs.toFixed(2)} GB/s`,
)
/** File name of this adapter and implementation: webgpu-<device or description>[-deno].json */
const deviceName = (info as GPUAdapterInfo & { device?: string }).device
const adapterName = ((/[a-z]/i.test(deviceName ?? '') ? deviceName : '') || info.description || info.vendor || 'unknown')
  .replace(/\(.*?\)/g, '')
  .split(':')[0]
  .trim()
  .toLowerCase()
  .replace(/[^a-z0-9]+/g, '-')
  .replace(/^-|-$/g, '')
  // a software adapter by its driver's name alone ("llvmpipe", whatever LLVM version it reports)
  .replace(/-.*$/, (rest) => (backend.isSoftware ? '' : rest))
const file = `webgpu-${adapterName}${isDeno ? '-deno' : ''}.json`

/**
 * Write bench/results/<file>: after every shape with `partial` set (a run cut short by a time
 * limit keeps what it measured; webgpu.md says so), and once at the end.
 */
function save(rows: ReturnType<typeof finish>, models: Awaited<ReturnType<typeof encodeModel>>[], partial: boolean): void {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
  writeFileSync(
    new URL(`./results/${file}`, import.meta.url),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        implementation: isDeno ? 'deno (wgpu)' : 'node (dawn)',
        // whether the kernels' small loops were unrolled in the WGSL (src/webgpu/unroll.ts)
        unroll: unroll ?? loopBounding(),
        adapter: {
          vendor: info.vendor,
          architecture: info.architecture,
          device: (info as GPUAdapterInfo & { device?: string }).device,
          description: info.description,
          isSoftware: backend.isSoftware,
          kernels: backend.kernels,
        },
        ceilings: { ...ceil, samples, submitMs, dispatch, ...rates },
        rows,
        encode: models,
        ...(partial ? { partial: true } : {}),
      },
      null,
      1,
    ),
  )
}

const measured: Awaited<ReturnType<typeof runShape>>[] = []
for (const [i, shape] of shapes.entries()) {
  if (i > 0 && i % 8 === 0) await sampleCeilings()
  for (const k of profiles) measured.push(await runShape(shape, submitMs, k))
  if (!only) save(finish(measured), [], true)
}
const models = []
if (!only) for (const k of profiles) for (const T of quick ? [1] : [1, 16, 256]) models.push(await encodeModel(T, k))
await sampleCeilings()
console.log(
  `ceilings (best of ${samples.length} samples): copy ${ceil.copyGBs.toFixed(2)} GB/s, dense matmul ${ceil.matmulGflops.toFixed(2)} GFLOP/s`,
)
const rows = finish(measured)
/** The measured rows against the run's ceilings and host rates so far. */
function finish(measured: Awaited<ReturnType<typeof runShape>>[]) {
  return measured.map((r) => {
    const rooflineMs = Math.max(r.bytes / (ceil.copyGBs * 1e6), r.flops / (ceil.matmulGflops * 1e6))
    // host path: x up, y up and back, against the measured host <-> GPU rates
    const hostBytesMs =
      (r.T * 4096 * 4 + r.T * (r.layer === 'square' ? 4096 : 6144) * 4) / (rates.uploadGBs * 1e6) +
      (r.T * (r.layer === 'square' ? 4096 : 6144) * 4) / (rates.readbackGBs * 1e6)
    return {
      ...r,
      // the matmul check right after the timed passes against the run's best check: 1 = full clock
      clock: timer.clockOf(r.clockCheckGflops),
      fracMatmul: r.gflops / ceil.matmulGflops,
      fracCopy: r.weightGBs / ceil.copyGBs,
      rooflineMs,
      rooflineOverTime: rooflineMs / r.kernelMs,
      hostTransferMs: hostBytesMs,
      hostOverTransfer: r.hostMs / hostBytesMs,
    }
  })
}
for (const r of rows) {
  console.log(
    [
      `${r.kernels.slice(0, 4)} ${r.dtype.padEnd(4)} ${r.layer.padEnd(6)} r${String(r.rank).padEnd(3)} L${r.adapters} T${String(r.T).padEnd(5)}`,
      `${r.kernelMs.toFixed(4).padStart(9)} ms (${Object.entries(r.perKernelMs)
        .map(([k, v]) => `${k} ${v.toFixed(4)}`)
        .join(', ')})`,
      `R ${r.rooflineMs.toFixed(4)} ms, R/time ${r.rooflineOverTime.toFixed(2)}, copy pass ${r.copyPassMs.toFixed(4)} ms (${r.copyPassOverTime.toFixed(2)} of the time)`,
      `${r.gflops.toFixed(0).padStart(6)} GFLOP/s (${(100 * r.fracMatmul).toFixed(0).padStart(3)}% mm)`,
      `weights ${r.weightGBs.toFixed(0).padStart(6)} GB/s (${(100 * r.fracCopy).toFixed(0).padStart(3)}% copy)`,
      `host ${r.hostMs.toFixed(3).padStart(7)} ms (x${r.hostOverTransfer.toFixed(2)} of transfers), resident ${r.residentMs.toFixed(3).padStart(7)} ms (x${r.residentOverRawSubmit.toFixed(2)} of bare submit; cpu ${(1e3 * r.residentSyncMs).toFixed(1)} us sync, ${(1e3 * r.residentCpuMs).toFixed(1)} us resolved, ${(1e3 * r.streamApplyCpuMs).toFixed(1)} us/call streamed, ${(1e3 * r.streamNewApplyCpuMs).toFixed(1)} us/call streamed on alternating y, ${(1e3 * r.streamNewBatchApplyCpuMs).toFixed(1)} us/call streamed with new batches, encode ${(1e3 * r.encodeCpuMs).toFixed(1)} us; Dawn alone: ${(1e3 * r.bareApplyCpuMs).toFixed(1)} us/call encoded + submitted, ${(1e3 * r.emptySubmitCpuMs).toFixed(1)} us empty submit, ${(1e3 * r.bareEncodeCpuMs).toFixed(1)} us recorded; public API: apply ${(1e3 * r.publicApplyCpuMs).toFixed(1)} us/call streamed, encode ${(1e3 * r.publicEncodeCpuMs).toFixed(1)} us)`,
    ].join(' | '),
  )
}
for (const m of models) {
  console.log(
    `encode ${m.modules} modules (${m.kernels}) T${m.T}: wall ${m.wallMs.toFixed(3)} ms (cpu ${m.cpuMs.toFixed(3)}), GPU span ${m.gpuSpanMs.toFixed(3)} ms, kernel sum ${m.sumKernelMs.toFixed(3)} ms: wall x${m.wallOverKernelSum.toFixed(2)} (x${m.wallOverKernelSumPlusSubmit.toFixed(2)} of sum + bare submit), span x${m.gpuSpanOverKernelSum.toFixed(2)}`,
  )
  const p = (k: string): string =>
    (['Encode', 'Submit', 'Wait', 'Wall'] as const)
      .map((q) => `${q.toLowerCase()} ${(m as unknown as Record<string, number>)[`${k}${q}Ms`].toFixed(3)}`)
      .join(', ')
  console.log(
    `  ms per step: ours ${p('ours')} | ours into one pass: ${p('oursPass')} (GPU span ${m.gpuSpanPassMs.toFixed(3)}) | Dawn alone: ${p('bare')} | one pass: ${p('onePass')} | new batch each step: ${p('newBatch')} | empty submit: ${p('empty')}`,
  )
}
if (only) console.log('--only: bench/results not written (a partial run would replace the whole table)')
else {
  save(rows, models, false)
  writeResultsMarkdown()
  console.log(`wrote bench/results/${file} and bench/results/webgpu.md`)
}
for (const rt of runtimes.values()) rt.dispose()
for (const b of backends.values()) if (b !== backend) b.dispose()
backend.dispose()
