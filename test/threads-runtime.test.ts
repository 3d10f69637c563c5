/**
 * The threaded runtime's life cycle: option validation, detection of runtimes without threads
 * (single-threaded there, no error), concurrent calls, and clean shutdown (the process exits:
 * checked in child Node processes).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createRuntime } from '../src/index.js'
import {
  AUTO_THREAD_COST,
  AUTO_THREAD_COST_PHASES,
  AUTO_WORK_PER_THREAD,
  COPY_CAP_CORES,
  createThreadedWasmBackend,
  FEW_CORES,
  SMALL_ENTRIES,
  SOLO_CALLS,
  ThreadedWasmBackend,
} from '../src/wasm/threads/backend.js'
import type { WorkerPool } from '../src/wasm/threads/pool.js'
import { threadsUnavailableReason } from '../src/wasm/threads/support.js'
import { expectLoraError } from './compare.js'
import { Rng } from './random.js'
import { backendsOf } from '../src/runtime.js'
import { WasmBackend } from '../src/wasm/backend.js'

const SRC = fileURLToPath(new URL('../src/index.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * Run a TypeScript module in a fresh Node process (through tsx); resolves with its exit code and
 * output. A child still running after `timeoutMs` is killed (killed: true): it did not exit on its
 * own. The limit only ends a hang; it is far above a start on a loaded machine (not a speed check).
 */
function runChild(code: string, timeoutMs = 90_000): Promise<{ code: number | null; out: string; ms: number; killed: boolean }> {
  const file = join(mkdtempSync(join(tmpdir(), 'multilora-threads-')), 'child.mts')
  writeFileSync(file, code)
  const t0 = performance.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out, ms: performance.now() - t0, killed })
    })
  })
}

/** A child script: one threaded apply against the single-threaded result, printed as JSON. */
const APPLY = (prelude: string, dispose: boolean) => `
${prelude}
import { createRuntime } from ${JSON.stringify(SRC)}
const single = await createRuntime({ backend: 'wasm' })
const rt = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
const be = rt // its threads and threadsUnavailableReason are the wasm backend's
const ys = []
for (const r of [single, rt]) {
  const layer = r.createLayer({ inFeatures: 64, outFeatures: [40, 24], maxAdapters: 2, maxRank: 8 })
  layer.setAdapter(1, { rank: 8, scale: 0.5, A: [new Float32Array(512).fill(0.25), new Float32Array(512).fill(-0.5)], B: [new Float32Array(320).fill(0.125), new Float32Array(192).fill(1)] })
  const y = new Float32Array(3 * 64)
  await layer.apply(new Float32Array(3 * 64).fill(1), y, Int32Array.of(1, -1, 1))
  ys.push(Array.from(y))
}
single.dispose()
${dispose ? 'rt.dispose()' : ''}
console.log(JSON.stringify({ threads: be.threads, reason: be.threadsUnavailableReason, same: JSON.stringify(ys[0]) === JSON.stringify(ys[1]), sum: ys[1].reduce((a, b) => a + b, 0) }))
`

function parseLast(out: string): { threads: number; reason: string | null; same: boolean; sum: number } {
  const line = out
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop()
  if (!line) throw new Error(`no JSON from the child process:\n${out}`)
  return JSON.parse(line)
}

describe('threads option', () => {
  it.each([[0], [-1], [1.5], ['many'], ['2'], [65]])('rejects threads = %s with INVALID_ARGUMENT', async (value) => {
    await expectLoraError(() => createRuntime({ backend: 'wasm', threads: value as never }), 'INVALID_ARGUMENT', ['threads'])
  })

  it('a pool of any size gives a call threads by its work: small calls stay on one thread', async () => {
    // the rule itself, on a 16-core machine: a pool's size as the backend sees it, no workers
    const planner = (n: number, cores: number) =>
      new ThreadedWasmBackend(null as unknown as WasmBackend, { size: n - 1, failed: null } as WorkerPool, n, null, null, cores)
    for (const n of [2, 4, 8, 16]) {
      const b = planner(n, 16)
      expect(b.threads).toBe(n)
      // T = 1 and T = 4 of a 4096 -> 4096 r16 layer (131 K and 524 K multiply-adds): one thread
      expect(b.partsFor(16 * 8192, 1)).toBe(1)
      expect(b.partsFor(4 * 16 * 8192, 4)).toBe(1)
      // a large call: every thread; one in between: as many as its work gains from
      expect(b.partsFor(1e10, 1024)).toBe(n)
      expect(b.partsFor(2 * AUTO_WORK_PER_THREAD, 64)).toBe(2)
      expect(b.partsFor(1e10, 6)).toBe(Math.min(n, 6)) // no more threads than entries
      // past a few threads, as many as the square root of the work over a thread's cost
      expect(b.partsFor(64 * AUTO_THREAD_COST, 64)).toBe(Math.min(n, 8))
      expect(b.partsFor(4e6, 64)).toBe(Math.min(n, 7))
      expect(b.partsFor(64 * AUTO_THREAD_COST_PHASES, 0)).toBe(Math.min(n, 8))
      // calls of a few entries: by their work (on a machine of a few cores, one thread: below)
      expect(b.partsFor(1e10, SMALL_ENTRIES)).toBe(Math.min(n, SMALL_ENTRIES))
    }
    // never more threads than cores: a pool of 8 on 2 cores ran T = 16 calls 3-5x slower on 8
    // threads than on one (bench/threads-scaling.ts), the threads taking turns on the cores
    expect(planner(8, 2).partsFor(1e10, 1024)).toBe(2)
    expect(planner(16, 12).partsFor(1e10, 1024)).toBe(12)
    expect(planner(8, 2).partsFor(1e10, SMALL_ENTRIES), 'a few entries on a few cores (FEW_CORES)').toBe(1)
    expect(planner(8, FEW_CORES).partsFor(1e10, SMALL_ENTRIES)).toBe(SMALL_ENTRIES)
    // ordinary arrays (the main thread copies x and y): at most half the cores, from COPY_CAP_CORES
    expect(planner(16, 16).partsFor(1e10, 1024, true)).toBe(8)
    expect(planner(16, 16).partsFor(1e10, 1024, false)).toBe(16)
    expect(planner(16, COPY_CAP_CORES).partsFor(1e10, 1024, true)).toBe(COPY_CAP_CORES / 2)
    expect(planner(16, COPY_CAP_CORES - 1).partsFor(1e10, 1024, true)).toBe(COPY_CAP_CORES - 1)
    expect(planner(2, 2).partsFor(1e10, 1024, true)).toBe(2)
    const fixed = new ThreadedWasmBackend(null as unknown as WasmBackend, { size: 15, failed: null } as WorkerPool, 16, null, 1, 16)
    expect(fixed.partsFor(1e10, 1024, true), 'threadsMinWork set: its own rule').toBe(16)
    // a real pool: the machine's cores
    for (const n of [2, 8]) {
      const rt = await createRuntime({ backend: 'wasm', threads: n })
      const b = backendsOf(rt)[0]
      expect(b.threads).toBe(n)
      expect(b.partsFor(1e10, 1024)).toBe(Math.min(n, availableParallelism()))
      expect(b.partsFor(16 * 8192, 1)).toBe(1)
      rt.dispose()
    }
    const always = await createRuntime({ backend: 'wasm', threads: 4, threadsMinWork: 0 })
    expect(backendsOf(always)[0].partsFor(1, 1)).toBe(4)
    always.dispose()
    await expectLoraError(() => createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: -1 }), 'OUT_OF_RANGE', ['threadsMinWork'])
  })

  it('threads: 1 is the plain single-threaded backend', async () => {
    const rt = await createRuntime({ backend: 'wasm', threads: 1 })
    const b = backendsOf(rt)[0]
    expect(b).toBeInstanceOf(WasmBackend)
    expect(b.threads).toBe(1)
    rt.dispose()
  })
})

describe('where threads are unavailable', () => {
  it('names the reason for each kind of runtime', () => {
    const node = { SharedArrayBuffer, Atomics, WebAssembly, process: { versions: { node: '20' } } }
    expect(threadsUnavailableReason(node)).toBeNull()
    expect(threadsUnavailableReason({ ...node, SharedArrayBuffer: undefined })).toMatch(/SharedArrayBuffer/)
    expect(threadsUnavailableReason({ Atomics, WebAssembly, crossOriginIsolated: false, Worker: class {} })).toMatch(
      /cross-origin isolated/,
    )
    expect(threadsUnavailableReason({ ...node, crossOriginIsolated: false })).toMatch(/cross-origin isolated/)
    expect(threadsUnavailableReason({ ...node, navigator: { userAgent: 'Cloudflare-Workers' } })).toMatch(/workerd/)
    expect(threadsUnavailableReason({ SharedArrayBuffer, Atomics, WebAssembly, crossOriginIsolated: true })).toMatch(/no Worker/)
    expect(threadsUnavailableReason({ ...node, Atomics: undefined })).toMatch(/Atomics/)
  })

  it('runs single-threaded, with the same results, in a process without SharedArrayBuffer', async () => {
    const r = await runChild(APPLY('delete (globalThis as any).SharedArrayBuffer', true))
    expect(r.code, r.out).toBe(0)
    const res = parseLast(r.out)
    expect(res.threads).toBe(1)
    expect(res.reason).toMatch(/SharedArrayBuffer/)
    expect(res.same).toBe(true)
    expect(res.sum).not.toBe(0)
  })

  it('falls back to one thread when the workers cannot start', async () => {
    const b = await createThreadedWasmBackend(2, { workerUrl: new URL('./no-such-worker.mjs', import.meta.url) })
    expect(b.threads).toBe(1)
    expect(b.threadsUnavailableReason).toMatch(/worker/)
    b.dispose()
  })
})

describe('threaded runtime', () => {
  it('serves concurrent calls on several layers like one thread', async () => {
    const rt = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
    const single = await createRuntime({ backend: 'wasm' })
    try {
      const rng = new Rng(3)
      const opts = { inFeatures: 96, outFeatures: [70, 33], maxAdapters: 3, maxRank: 12 }
      const ad = () => ({ rank: 12, scale: 1.5, A: [rng.array(12 * 96), rng.array(12 * 96)], B: [rng.array(70 * 12), rng.array(33 * 12)] })
      const adapters = [ad(), ad(), ad()]
      const calls = Array.from({ length: 12 }, (_, i) => ({
        x: rng.array(20 * 96),
        y: rng.array(20 * 103),
        ids: Int32Array.from({ length: 40 }, () => rng.int(4) - 1).map((v, j, a) => (j % 2 === 1 && v === a[j - 1] ? -1 : v)),
        layer: i % 3,
      }))
      const run = async (r: typeof rt, concurrent: boolean) => {
        const layers = [0, 1, 2].map(() => r.createLayer(opts))
        for (const l of layers) adapters.forEach((a, s) => l.setAdapter(s, a))
        const ys = calls.map((c) => new Float32Array(c.y))
        const go = (i: number) => layers[calls[i].layer].apply(calls[i].x, ys[i], calls[i].ids, { adaptersPerToken: 2 })
        if (concurrent) await Promise.all(calls.map((_, i) => go(i)))
        else for (let i = 0; i < calls.length; i++) await go(i)
        return ys
      }
      const [got, want] = [await run(rt, true), await run(single, false)]
      for (let i = 0; i < calls.length; i++) expect(Array.from(got[i]), `call ${i}`).toEqual(Array.from(want[i]))
      expect(got.some((y, i) => y.some((v, j) => v !== calls[i].y[j]))).toBe(true)
    } finally {
      rt.dispose()
      single.dispose()
    }
  })

  it('stays exact over many small calls on more threads than cores (late workers find nothing to claim)', async () => {
    const rt = await createRuntime({ backend: 'wasm', threads: 4, threadsMinWork: 0 })
    const single = await createRuntime({ backend: 'wasm' })
    try {
      const rng = new Rng(11)
      const opts = { inFeatures: 40, outFeatures: [24, 17], maxAdapters: 4, maxRank: 8 }
      const layers = [rt.createLayer(opts), single.createLayer(opts)]
      for (let s = 0; s < 4; s++) {
        const ad = {
          rank: 1 + s * 2,
          scale: 0.7,
          A: [rng.array((1 + s * 2) * 40), rng.array((1 + s * 2) * 40)],
          B: [rng.array(24 * (1 + s * 2)), rng.array(17 * (1 + s * 2))],
        }
        for (const l of layers) l.setAdapter(s, ad)
      }
      let differing = 0
      let changed = 0
      for (let call = 0; call < 300; call++) {
        const T = 1 + rng.int(9)
        const x = rng.array(T * 40)
        const ids = Int32Array.from({ length: T }, () => rng.int(5) - 1)
        const ys = layers.map(() => new Float32Array(T * 41))
        await Promise.all(layers.map((l, i) => l.apply(x, ys[i], ids)))
        if (ys[0].some((v, i) => !Object.is(v, ys[1][i]))) differing++
        if (ys[0].some((v) => v !== 0)) changed++
      }
      expect(differing).toBe(0)
      expect(changed).toBeGreaterThan(250)
    } finally {
      rt.dispose()
      single.dispose()
    }
  })

  it('rejects calls after dispose', async () => {
    const rt = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 })
    const layer = rt.createLayer({ inFeatures: 8, outFeatures: 8, maxAdapters: 1, maxRank: 1 })
    rt.dispose()
    await expectLoraError(() => layer.apply(new Float32Array(8), new Float32Array(8), Int32Array.of(0)), 'DISPOSED')
  })

  it('lets the process exit after dispose (workers ended)', async () => {
    const r = await runChild(APPLY('', true))
    expect(r.killed, r.out).toBe(false)
    expect(r.code, r.out).toBe(0)
    const res = parseLast(r.out)
    expect(res.threads).toBe(2)
    expect(res.same).toBe(true)
  })

  it('works where Atomics.waitAsync is missing (workers post a message instead)', async () => {
    const r = await runChild(APPLY('delete (Atomics as any).waitAsync', true))
    expect(r.code, r.out).toBe(0)
    const res = parseLast(r.out)
    expect(res.threads).toBe(2)
    expect(res.same).toBe(true)
  })

  it('does not keep the process alive when idle, even without dispose', async () => {
    const r = await runChild(APPLY('', false))
    expect(r.killed, r.out).toBe(false)
    expect(r.code, r.out).toBe(0)
    expect(parseLast(r.out).threads).toBe(2)
  })
})

describe("'auto' on a loaded machine", () => {
  it('runs SOLO_CALLS calls on one thread after two starved calls in a row, then threads again', async () => {
    const be = await createThreadedWasmBackend('auto')
    try {
      expect(be.takeSolo()).toBe(false)
      be.settle(5, 10) // waited half the call
      be.settle(0.05, 10) // not starved: the count starts again
      be.settle(5, 10)
      expect(be.takeSolo()).toBe(false)
      be.settle(5, 10)
      for (let i = 0; i < SOLO_CALLS; i++) expect(be.takeSolo()).toBe(true)
      expect(be.takeSolo()).toBe(false)
      be.settle(0.15, 0.2) // a short call's wait below STARVED_MS
      be.settle(0.15, 0.2)
      expect(be.takeSolo()).toBe(false)
    } finally {
      be.dispose()
    }
  })

  it('never with a fixed thread count', async () => {
    const be = await createThreadedWasmBackend(2)
    try {
      be.settle(5, 10)
      be.settle(5, 10)
      expect(be.takeSolo()).toBe(false)
    } finally {
      be.dispose()
    }
  })
})
