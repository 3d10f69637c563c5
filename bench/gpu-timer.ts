/**
 * GPU times for the WebGPU benches: timestamp queries around compute passes, with the GPU's clock
 * held up while they are taken.
 *
 * A big GPU idles at a low clock and does not raise it for short bursts of work separated by CPU
 * work, which is what a bench of microsecond kernels gives it. The H200 idles at 345 MHz (1980 MHz
 * under load): measured that way, the same kernel took 1-5x longer depending on what ran before
 * it, and the bench's own matmul ceiling fell from 19.5 to 3.6 TFLOP/s within one run. So every
 * batch of timed passes is recorded after `warmMs` of dense matmul in the same command buffer
 * (the GPU never idles between the two), and followed by one timed matmul pass: its rate, against
 * the best such rate seen in the run (`clockOf`), says at which clock the batch ran.
 */
import { readFileSync } from 'node:fs'

export type Recorder = (enc: GPUCommandEncoder, tw: GPUComputePassTimestampWrites) => void

export interface GpuTimer {
  /** GPU ms of each of `reps` passes recorded by `record`, after the clock warm-up. */
  times(reps: number, record: Recorder): Promise<number[]>
  /** The same in microseconds. */
  timesUs(reps: number, record: Recorder): Promise<number[]>
  /** Matmul GFLOP/s of the check pass after the last `times` (0 when warming is off). */
  lastCheckGflops(): number
  /** The last check's rate over the best check of the run: 1 = the batch ran at full clock. */
  clockOf(checkGflops: number): number
}

/** Dense matmul of the warm-up and the check: 1024 x 1024 x 1024 (2.1 GFLOP: 0.11 ms on an H200). */
const M = 1024
const FLOP = 2 * M * M * M

/**
 * `software`: a software adapter (lavapipe), whose clock does not move: no warm-up. `warmMs`: GPU
 * ms of matmul before each batch otherwise (default 20).
 */
export function gpuTimer(device: GPUDevice, options: { software: boolean; warmMs?: number }): GpuTimer {
  const warmMs = options.software ? 0 : (options.warmMs ?? 20)
  const code = readFileSync(new URL('../shaders/bench_matmul.wgsl', import.meta.url), 'utf8')
  const p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } })
  const dims = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
  device.queue.writeBuffer(dims, 0, new Uint32Array([M, M, M, 0]))
  const buffers = [dims, ...[0, 1, 2].map(() => device.createBuffer({ size: M * M * 4, usage: GPUBufferUsage.STORAGE }))]
  const bg = device.createBindGroup({
    layout: p.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  })
  const matmul = (pass: GPUComputePassEncoder, n: number): void => {
    pass.setPipeline(p)
    pass.setBindGroup(0, bg)
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(M / 64, M / 64)
  }
  // dispatches of the warm-up: sized from the best matmul time seen (4 until one is seen)
  let bestMatmulMs = warmMs / 4
  let lastCheck = 0
  let bestCheck = 0

  async function times(reps: number, record: Recorder): Promise<number[]> {
    const warm = warmMs > 0
    const n = 2 * reps + (warm ? 2 : 0)
    const qs = device.createQuerySet({ type: 'timestamp', count: n })
    const resolve = device.createBuffer({ size: 8 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC })
    const read = device.createBuffer({ size: 8 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    const enc = device.createCommandEncoder()
    if (warm) {
      const pass = enc.beginComputePass()
      matmul(pass, Math.min(2000, Math.max(4, Math.ceil(warmMs / bestMatmulMs))))
      pass.end()
    }
    for (let i = 0; i < reps; i++) record(enc, { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 })
    if (warm) {
      const pass = enc.beginComputePass({
        timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * reps, endOfPassWriteIndex: 2 * reps + 1 },
      })
      matmul(pass, 1)
      pass.end()
    }
    enc.resolveQuerySet(qs, 0, n, resolve, 0)
    enc.copyBufferToBuffer(resolve, 0, read, 0, 8 * n)
    device.queue.submit([enc.finish()])
    await read.mapAsync(GPUMapMode.READ)
    const t = new BigInt64Array(read.getMappedRange())
    const out: number[] = []
    for (let i = 0; i < reps; i++) out.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6)
    if (warm) {
      const ms = Number(t[2 * reps + 1] - t[2 * reps]) / 1e6
      if (ms > 0) {
        bestMatmulMs = Math.min(bestMatmulMs, ms)
        lastCheck = FLOP / (ms / 1e3) / 1e9
        bestCheck = Math.max(bestCheck, lastCheck)
      }
    }
    read.unmap()
    for (const b of [qs, resolve, read]) b.destroy()
    return out
  }
  return {
    times,
    timesUs: async (reps, record) => (await times(reps, record)).map((ms) => ms * 1e3),
    lastCheckGflops: () => lastCheck,
    clockOf: (g) => (bestCheck > 0 ? g / bestCheck : 1),
  }
}
