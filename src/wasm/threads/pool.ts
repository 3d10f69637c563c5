/**
 * The worker pool of the threaded wasm backend: W workers over one shared linear memory, each
 * with its own instance of the threads build; the main thread takes part in every job. See
 * protocol.ts for the job protocol: the main thread never blocks, it awaits Atomics.waitAsync
 * (or a worker's message where waitAsync is missing).
 */
import { LoraError } from '../../errors.js'
import * as C from './control.js'
import type { PartExports } from './control.js'
import { type JobArgs, type JobCopies, writeJob } from './job.js'
import * as P from './protocol.js'
import { startWorker, type WorkerHandle } from './workers.js'

type WaitAsync = (a: Int32Array, i: number, v: number) => { async: boolean; value: Promise<string> | string }

export class WorkerPool {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(C.CTRL_INTS * 4))
  private readonly workers: WorkerHandle[] = []
  private readonly waitAsync: WaitAsync | null
  private gen = 0
  private failure: string | null = null
  private disposed = false
  private wakeMain: () => void = () => {}
  private spinMs = 0 // how long the main thread spins before it awaits a flag (run)
  /** ms the main thread spent waiting for workers in the last job (at the barriers and the end). */
  waited = 0

  private constructor(
    private readonly main: PartExports,
    private readonly cores: number,
  ) {
    const wa = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync
    this.waitAsync = typeof wa === 'function' ? wa.bind(Atomics) : null
    this.ctrl[C.BY_MESSAGE] = this.waitAsync ? 0 : 1
  }

  /** Workers (the main thread adds one more part). */
  get size(): number {
    return this.workers.length
  }

  /** Why the pool can no longer run jobs (a worker failed), or null. */
  get failed(): string | null {
    return this.failure
  }

  /**
   * Start `count` workers and wait until each instantiated the module over `memory`; `main`: the
   * main thread's instance of it (the main thread takes part in every job); `cores`: the machine's
   * (the main thread spins only where the woken workers leave it a core).
   */
  static async create(
    count: number,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    main: PartExports,
    url: URL,
    timeoutMs = 10_000,
    cores = Number.POSITIVE_INFINITY,
  ): Promise<WorkerPool> {
    const pool = new WorkerPool(main, cores)
    count = Math.min(count, C.MAX_WORKERS)
    let ready = 0
    let settle: (error?: string) => void = () => {}
    const allReady = new Promise<void>((resolve, reject) => {
      settle = (error) => (error ? reject(new Error(error)) : resolve())
    })
    try {
      for (let w = 0; w < count; w++) {
        const handle = await startWorker(url, {
          message: (m) => {
            const msg = m as { ready?: number; error?: string }
            if (msg && typeof msg === 'object' && msg.error !== undefined) {
              pool.fail(msg.error)
              settle(msg.error)
            } else if (msg && typeof msg === 'object' && msg.ready !== undefined) {
              if (++ready === count) settle()
            } else pool.wakeMain() // a barrier flag, posted in message mode
          },
          failed: (reason) => {
            pool.fail(reason)
            settle(reason)
          },
        })
        pool.workers.push(handle)
        handle.post({ module, memory, ctrl: pool.ctrl.buffer, index: w })
      }
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        allReady,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`workers not ready after ${timeoutMs} ms`)), timeoutMs)
        }),
      ]).finally(() => clearTimeout(timer))
    } catch (e) {
      pool.dispose()
      throw new LoraError(
        'BACKEND_UNAVAILABLE',
        `could not start ${count} wasm worker threads: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      )
    }
    for (const w of pool.workers) w.keepAlive(false) // idle workers do not keep the process alive
    return pool
  }

  /**
   * Run one job on the main thread and up to `parts - 1` workers (1 <= parts <= size + 1)
   * that claim its granules. The main thread makes the host copies (`copies`) once the workers are
   * started: in two phases, y before its shrink granules (the expand waits for it); fused, the x
   * rows (with xByGranule) and y rows of every granule in claim order (a worker's granule waits
   * for its rows, XIN and YIN), then
   * granules, copying the rows of finished ones out between them.
   */
  async run(job: JobArgs, parts: number, copies: JobCopies): Promise<void> {
    this.check()
    this.waited = 0
    const c = this.ctrl
    const gen = (this.gen = (this.gen + 1) | 0)
    const granules = writeJob(c, job, gen)
    const woken = Math.min(parts - 1, this.workers.length)
    // spin at the end of a job only with a core for each woken worker besides the main thread's
    // (a `threads: 4` runtime on 2 cores: a worker may need this one)
    this.spinMs = woken >= P.SPIN_MAIN_MIN_WORKERS && woken < this.cores ? P.SPIN_MAIN_MS : 0
    c[C.HELPERS] = woken
    Atomics.store(c, C.GEN, gen) // publishes the job to spinning workers
    for (let w = 0; w < woken; w++) P.wakeIfSleeping(c, w) // and wakes sleeping ones
    this.keepAlive(woken, true)
    if (job.fused) return this.runFused(gen, granules, woken, copies, job.xByGranule)
    let copyError: unknown = null
    try {
      try {
        copies.beforeShrink()
      } catch (e) {
        copyError = e // finish the job first: workers are reading its arguments
      }
      P.finish(c, C.DONE1, granules + 1, C.GO2, gen)
      P.claimShrink(c, this.main, gen)
      await this.until(C.GO2, gen)
      P.claimExpand(c, this.main, gen)
      await this.until(C.DONE, gen)
    } catch (e) {
      this.mainThrew(e)
    } finally {
      this.keepAlive(woken, false)
    }
    this.afterJob(copyError)
  }

  /**
   * The main thread's part of a fused job: copies in (with the copies out of the granules done so
   * far between them, while their y rows are still in cache), granules (with copies out between),
   * the last copies out.
   */
  private async runFused(gen: number, granules: number, woken: number, copies: JobCopies, xByGranule: boolean): Promise<void> {
    const c = this.ctrl
    let copyError: unknown = null
    const copied = new Uint8Array(granules)
    let left = granules
    let first = 0 // granules before it are copied out
    // granules are claimed in order and done about in order: while copying in, look at a window
    // of them past the first not copied out (a scan of all would cost O(granules^2) per job)
    const window = 2 * (woken + 1)
    const drain = (all = true) => {
      while (first < granules && copied[first] === 1) first++
      const end = all ? granules : Math.min(granules, first + window)
      for (let i = first; i < end; i++) {
        if (copied[i] === 0 && Atomics.load(c, C.GDONE + i) === 1) {
          copied[i] = 1
          left--
          if (copyError === null) {
            try {
              copies.copyOut(i)
            } catch (e) {
              copyError = e
            }
          }
        }
      }
    }
    try {
      try {
        for (let i = 0; i < granules; i++) {
          if (xByGranule) {
            copies.copyXIn(i)
            Atomics.store(c, C.XIN, i + 1)
          }
          copies.copyIn(i)
          Atomics.store(c, C.YIN, i + 1)
          drain(false)
        }
      } catch (e) {
        copyError = e // finish the job first: workers are reading its arguments
        Atomics.store(c, C.XIN, granules)
        Atomics.store(c, C.YIN, granules)
      }
      Atomics.notify(c, C.XIN)
      Atomics.notify(c, C.YIN)
      P.claimFused(c, this.main, gen, woken, undefined, () => drain(false))
      drain()
      // the job ends at DONE, not at the last GDONE: a worker counts its granule in DONE2 after
      // setting GDONE, and a count that came after the next job's reset would end that job early
      while (left > 0 || Atomics.load(c, C.DONE) !== gen) {
        await this.until(C.DONE, gen)
        drain()
      }
    } catch (e) {
      this.mainThrew(e)
    } finally {
      this.keepAlive(woken, false)
    }
    this.afterJob(copyError)
  }

  /** The kernels trapped on the main thread: the job may be half done, so no job may follow it. */
  private mainThrew(e: unknown): never {
    this.fail(`the main thread's part of a job threw: ${String(e)}`)
    throw e
  }

  /** After a job: a copy's error (the job was finished first), then any worker's failure. */
  private afterJob(copyError: unknown): void {
    if (copyError !== null) throw copyError
    if (Atomics.load(this.ctrl, C.ERROR) !== 0) this.fail('a worker threw while running a job')
    this.check()
  }

  /**
   * Get the workers of a job of `parts` threads spinning (call before preparing the job, so that
   * their wake-up overlaps the preparation; run() wakes any that went back to sleep).
   */
  wake(parts: number): void {
    if (this.disposed) return
    for (let w = 0; w < Math.min(parts - 1, this.workers.length); w++) P.wakeWorker(this.ctrl, w)
  }

  /** Wait (without blocking the thread) until ctrl[flag] = gen, or the pool fails. */
  private async until(flag: number, gen: number): Promise<void> {
    const t0 = performance.now()
    for (;;) {
      let v = Atomics.load(this.ctrl, flag)
      if (v === gen) break
      this.check()
      // the last granules are in flight: a short spin sees the flag without the event loop's
      // round trip that waitAsync's promise costs
      if (this.spinMs > 0) v = P.spinWhile(this.ctrl, flag, v, this.spinMs)
      if (v === gen) break
      if (this.waitAsync) {
        const r = this.waitAsync(this.ctrl, flag, v)
        if (r.async) await r.value
      } else {
        await new Promise<void>((resolve) => (this.wakeMain = resolve))
      }
    }
    this.waited += performance.now() - t0
  }

  private keepAlive(woken: number, on: boolean): void {
    // a pending waitAsync does not keep Node alive: the woken workers do, for the job's length
    for (let w = 0; w < woken; w++) this.workers[w].keepAlive(on)
  }

  private fail(reason: string): void {
    if (this.failure !== null || this.disposed) return
    this.failure = reason
    // release a main thread waiting at a barrier; it sees the failure and throws
    Atomics.notify(this.ctrl, C.GO2)
    Atomics.notify(this.ctrl, C.DONE)
    this.wakeMain()
  }

  private check(): void {
    if (this.disposed) throw new LoraError('DISPOSED', 'the wasm worker pool was disposed')
    if (this.failure !== null) throw new LoraError('BACKEND_UNAVAILABLE', `the wasm worker pool failed: ${this.failure}`)
  }

  /** End the workers (they leave their loop; terminated as well in case one is stuck). */
  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    Atomics.store(this.ctrl, C.QUIT, 1)
    for (let w = 0; w < this.workers.length; w++) {
      Atomics.add(this.ctrl, C.WAKE + w, 1)
      Atomics.notify(this.ctrl, C.WAKE + w)
    }
    Atomics.notify(this.ctrl, C.GO2)
    Atomics.notify(this.ctrl, C.DONE)
    for (const w of this.workers) w.terminate()
    this.wakeMain()
  }
}
