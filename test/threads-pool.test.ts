/**
 * The worker pool's job protocol (pool.ts, protocol.ts) with a worker's steps played by the test
 * at chosen points, so that an interleaving that is rare on real threads happens every time.
 */
import { describe, expect, it } from 'vitest'
import { claim } from '../src/wasm/threads/claims.js'
import * as C from '../src/wasm/threads/control.js'
import type { JobArgs, JobCopies } from '../src/wasm/threads/job.js'
import { WorkerPool } from '../src/wasm/threads/pool.js'
import { finish } from '../src/wasm/threads/protocol.js'

/** A pool without workers (create() would start real ones) whose control block the test plays on. */
function bare(): { pool: WorkerPool; ctrl: Int32Array } {
  const Pool = WorkerPool as unknown as new (main: C.PartExports, cores: number) => WorkerPool
  const pool = new Pool({} as C.PartExports, 1)
  return { pool, ctrl: (pool as unknown as { ctrl: Int32Array }).ctrl }
}

/** A fused job of granules without tasks: no kernel runs, only the protocol. */
function emptyFusedJob(granules: number): JobArgs {
  const zero = {
    dtype: 0,
    x: 0,
    inF: 0,
    rows: 0,
    segs: 0,
    numSeg: 0,
    slots: 0,
    numSlices: 0,
    h: 0,
    hRow: 0,
    tasks: 0,
    y: 0,
    outF: 0,
    widths: 0,
  }
  const bounds = new Int32Array(granules + 1)
  return { ...zero, partStart: bounds, cuts: bounds, fused: true, xByGranule: false, homes: 0 }
}

describe('worker pool protocol', () => {
  it('ends a fused job only once every granule is counted (a late count would end the next job early)', async () => {
    const { pool, ctrl } = bare()
    const granules = 4
    let held = -1
    const none = () => {}
    const copies: JobCopies = {
      beforeShrink: none,
      copyXIn: none,
      copyOut: none,
      copyIn: (i) => {
        // a worker claims the first granule and stops between setting its GDONE and counting it
        if (i === 0) {
          held = claim(ctrl, C.NEXT1, Atomics.load(ctrl, C.GEN) & C.TAG_MASK)
          Atomics.store(ctrl, C.GDONE + held, 1)
        }
      },
    }
    let ended = false
    const run = pool.run(emptyFusedJob(granules), 2, copies).then(() => (ended = true))
    await new Promise((resolve) => setTimeout(resolve, 0))
    expect(held).toBe(0)
    expect(ended).toBe(false)
    // the worker goes on: its count publishes DONE
    finish(ctrl, C.DONE2, granules, C.DONE, Atomics.load(ctrl, C.GEN))
    await run
    expect(Atomics.load(ctrl, C.DONE2)).toBe(granules)
    pool.dispose()
  })
})
