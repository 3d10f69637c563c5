import type { BackendName } from './types.js'

/**
 * The order of slot writes and applies of one layer, per backend. An async backend (WebGPU, wasm
 * threads) reads a slot's weights until its apply resolves. So a write to a slot that running
 * applies use waits for them (they finish with the old weights), and applies started after the
 * write wait for it: every call sees the slots as they were when it was made.
 */
export class SlotOrder {
  /** Per backend: slot -> running applies. */
  private readonly running = new Map<BackendName, Map<number, Set<Promise<void>>>>()
  /** Per backend: slot -> the pending write. */
  private readonly pendingWrites = new Map<BackendName, Map<number, Promise<void>>>()

  /** Start (or start again, for a rebuilt backend) with nothing running or pending on `name`. */
  reset(name: BackendName): void {
    this.running.set(name, new Map())
    this.pendingWrites.set(name, new Map())
  }

  /**
   * Run `op` (a write to `slot` on backend `name`) now, or after the applies that use the slot
   * and the writes before it; `skip()` is asked just before a deferred write runs.
   */
  write(name: BackendName, slot: number, op: () => void, skip: () => boolean): void {
    const users = this.running.get(name)?.get(slot)
    const pending = this.pendingWrites.get(name)
    const before = pending?.get(slot)
    if (!users?.size && !before) {
      op()
      return
    }
    const after = Promise.allSettled([...(users ?? []), before]).then(() => {
      if (pending!.get(slot) === after) pending!.delete(slot)
      // A deferred write can only fail on a dead backend (device lost), whose calls fail or move to
      // another backend anyway; the slot state of the other backends is already written.
      if (skip()) return
      try {
        op()
      } catch {
        // see above
      }
    })
    pending!.set(slot, after)
  }

  /** The writes pending now on `slots`, per backend: a call made now must see them (null: none). */
  pendingFor(slots: Iterable<number>): Map<BackendName, Promise<void>[]> | null {
    let before: Map<BackendName, Promise<void>[]> | null = null
    for (const [name, p] of this.pendingWrites) {
      if (p.size === 0) continue
      const waits: Promise<void>[] = []
      for (const s of slots) {
        const w = p.get(s)
        if (w) waits.push(w)
      }
      if (waits.length) (before ??= new Map()).set(name, waits)
    }
    return before
  }

  /**
   * Count `run` as a user of `slots` on backend `name` (null: on every backend, for a call that
   * may end on any of them) until it settles.
   */
  async track(run: Promise<void>, slots: readonly number[] | Int32Array, name: BackendName | null): Promise<void> {
    const watched = name === null ? [...this.running.values()] : [this.running.get(name)!]
    for (const users of watched) {
      for (const s of slots) {
        let set = users.get(s)
        if (!set) users.set(s, (set = new Set()))
        set.add(run)
      }
    }
    try {
      await run
    } finally {
      for (const users of watched) {
        for (const s of slots) {
          const set = users.get(s)
          set?.delete(run)
          if (set?.size === 0) users.delete(s)
        }
      }
    }
  }
}
