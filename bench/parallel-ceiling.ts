/**
 * How much parallelism the machine gives right now, two ways, against one thread:
 * - compute: `threads` threads running the kernels module's register-only f32x4 loop
 *   (assembly/peak.ts) at once. On an idle machine with that many cores this is ~threads; on a
 *   machine shared with other jobs it is what any multi-threaded code can hope for at that moment.
 * - memory: `threads` threads each copying its own 32 MB buffer (TypedArray.set, a memcpy: reads
 *   and writes DRAM). Cores share the memory bus: on the 2-core development VM one thread already
 *   gets most of it (2 threads: ~1.2x), which bounds calls whose time goes to moving data (cold
 *   weights at small T, the host copies of x and y).
 * The ceilings of bench/threads.ts.
 */
import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { PEAK_ADD, PEAK_MUL } from './ceilings.js'

const COPY_FLOATS = 8 << 20 // 32 MB

const READ_PAGES = 1024 // 64 MiB of wasm memory per thread for readGBs

const WORKER = `
const { parentPort } = require('node:worker_threads')
let ex, readAt = -1
const src = new Float32Array(${COPY_FLOATS}).fill(1), dst = new Float32Array(${COPY_FLOATS})
parentPort.on('message', (m) => {
  if (m.module) ex = new WebAssembly.Instance(m.module, {}).exports
  else if (m.read) {
    if (readAt < 0) { readAt = ex.memory.grow(${READ_PAGES}) * 65536; new Uint8Array(ex.memory.buffer, readAt, ${READ_PAGES} * 65536).fill(1) }
    parentPort.postMessage('ready')
    Atomics.wait(m.go, 0, 0)
    const t0 = performance.now(); for (let i = 0; i < m.read; i++) ex.readBytes(readAt, ${READ_PAGES} * 65536, 1); parentPort.postMessage(performance.now() - t0)
  }
  else if (m.copies) { const t0 = performance.now(); for (let i = 0; i < m.copies; i++) dst.set(src); parentPort.postMessage(performance.now() - t0) }
  else { const t0 = performance.now(); ex.peakFlops(m.iterations, ${PEAK_MUL}, ${PEAK_ADD}); parentPort.postMessage(performance.now() - t0) }
})`

export class ParallelCeiling {
  private readonly main: {
    peakFlops(iterations: number, mul: number, add: number): number
    readBytes(p: number, bytes: number, reps: number): number
    memory: WebAssembly.Memory
  }
  private readAt = -1
  private readonly workers: Worker[] = []
  private readonly src = new Float32Array(COPY_FLOATS).fill(1)
  private readonly dst = new Float32Array(COPY_FLOATS)

  constructor(
    readonly threads: number,
    wasmPath = 'build/multilora-simd.wasm',
  ) {
    const module = new WebAssembly.Module(readFileSync(wasmPath))
    this.main = new WebAssembly.Instance(module, {}).exports as unknown as ParallelCeiling['main']
    for (let w = 1; w < threads; w++) {
      const worker = new Worker(WORKER, { eval: true })
      worker.postMessage({ module })
      this.workers.push(worker)
    }
  }

  /** One sample of the compute ceiling: threads x (work of one thread) / wall time, against one thread alone. */
  async sample(iterations = 400_000): Promise<number> {
    return this.ratio(() => this.main.peakFlops(iterations, PEAK_MUL, PEAK_ADD), { iterations })
  }

  /** One sample of the memory ceiling: the same with copies of 32 MB per thread. */
  async sampleMemory(copies = 4): Promise<number> {
    return this.ratio(
      () => {
        for (let i = 0; i < copies; i++) this.dst.set(this.src)
      },
      { copies },
    )
  }

  /**
   * The machine's read bandwidth with all `threads` threads at once (GB/s, summed over them):
   * each thread sums its own 64 MiB `passes` times with the kernels module's readBytes
   * (assembly/peak.ts), all released together; bytes read by all over the wall time until the
   * last one is done. What memory-bound work on `threads` threads can stream at most.
   */
  async readGBs(passes = 4): Promise<number> {
    const bytes = READ_PAGES * 65536
    if (this.readAt < 0) {
      this.readAt = this.main.memory.grow(READ_PAGES) * 65536
      new Uint8Array(this.main.memory.buffer, this.readAt, bytes).fill(1)
    }
    const go = new Int32Array(new SharedArrayBuffer(4))
    // each worker fills its buffer (first time), says 'ready' and waits on `go`, then sends its
    // time (that message cannot come before `go`: listened for first)
    const next = (w: Worker) => new Promise((resolve) => w.once('message', resolve))
    await Promise.all(
      this.workers.map((w) => {
        const ready = next(w)
        w.postMessage({ read: passes, go })
        return ready
      }),
    )
    const done = this.workers.map(next)
    const t0 = performance.now()
    Atomics.store(go, 0, 1)
    Atomics.notify(go, 0)
    for (let i = 0; i < passes; i++) this.main.readBytes(this.readAt, bytes, 1)
    await Promise.all(done)
    return (this.threads * passes * bytes) / (performance.now() - t0) / 1e6
  }

  private async ratio(work: () => void, message: object): Promise<number> {
    let t0 = performance.now()
    work()
    const alone = performance.now() - t0
    t0 = performance.now()
    const others = this.workers.map(
      (w) =>
        new Promise((resolve) => {
          w.once('message', resolve)
          w.postMessage(message)
        }),
    )
    work()
    await Promise.all(others)
    const together = performance.now() - t0
    return (this.threads * alone) / together
  }

  dispose(): void {
    for (const w of this.workers) void w.terminate()
  }
}
