/**
 * How much parallelism the machine gives right now: the throughput of `threads` threads running
 * the kernels module's register-only f32x4 loop (assembly/peak.ts) at once, against one thread.
 * On an idle machine with that many cores this is ~threads; on a machine shared with other jobs
 * it is what any multi-threaded code can hope for at that moment (the ceiling of bench/threads.ts).
 */
import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

const WORKER = `
const { parentPort } = require('node:worker_threads')
let ex
parentPort.on('message', (m) => {
  if (m.module) ex = new WebAssembly.Instance(m.module, {}).exports
  else { const t0 = performance.now(); ex.peakFlops(m.iterations); parentPort.postMessage(performance.now() - t0) }
})`

export class ParallelCeiling {
  private readonly main: { peakFlops(iterations: number): number }
  private readonly workers: Worker[] = []

  constructor(readonly threads: number, wasmPath = 'build/multilora-simd.wasm') {
    const module = new WebAssembly.Module(readFileSync(wasmPath))
    this.main = new WebAssembly.Instance(module, {}).exports as unknown as { peakFlops(iterations: number): number }
    for (let w = 1; w < threads; w++) {
      const worker = new Worker(WORKER, { eval: true })
      worker.postMessage({ module })
      this.workers.push(worker)
    }
  }

  /** One sample: threads x (work of one thread) / wall time, against one thread alone. */
  async sample(iterations = 400_000): Promise<number> {
    let t0 = performance.now()
    this.main.peakFlops(iterations)
    const alone = performance.now() - t0
    t0 = performance.now()
    const others = this.workers.map((w) => new Promise((resolve) => {
      w.once('message', resolve)
      w.postMessage({ iterations })
    }))
    this.main.peakFlops(iterations)
    await Promise.all(others)
    const together = performance.now() - t0
    return (this.threads * alone) / together
  }

  dispose(): void {
    for (const w of this.workers) void w.terminate()
  }
}
