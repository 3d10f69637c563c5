import type { CallFeatures, Residency } from './cost.js'
import type { BackendName, WeightDtype } from '../types.js'

/**
 * One caller's last 'auto' decisions (a layer keeps one): `Dispatcher.choose` returns a decision
 * again while the call's features, the usable backends and the rates are the same, without
 * predicting anything; one decision per backend the previous call ran on (the switching cost
 * depends on it), so a layer whose calls follow calls on either backend keeps both. A serving
 * loop repeats the same few shapes, and on calls 'auto' sends to wasm the prediction cost 3-7 us
 * after wasm calls, 12-20 us right after a lavapipe GPU call (cold caches; bench/auto-overhead.ts):
 * 5-25% of a T = 1 call.
 *
 * It also keeps what the calls of those features took on each backend (`observe`), and the
 * dispatcher decides on those times in place of its predictions where it has them: a cost model
 * calibrated in a few hundred ms misses by up to 1.7x on some machines (on the H100 host, f32
 * weights read cold at 10 GB/s against the probe's 17), and a layer that serves the same shape
 * call after call can simply see which backend is faster. A backend predicted slower is not tried
 * unless the measured one turns out slower than its prediction by PREDICTION_MARGIN (dispatch.ts).
 */
export class DecisionMemo {
  private tokens = -1
  private entries = -1
  private distinct = -1
  private rankSum = -1
  private rankEntries = -1
  private adaptersPerToken = -1
  private inFeatures = -1
  private outFeatures = -1
  private slices = -1
  private weightDtype: WeightDtype | null = null
  private resident: Residency | null = null
  private epoch = -1
  private usable: readonly BackendName[] | null = null
  /** The decision after a call on no backend (the first call), on wasm, on webgpu. */
  private readonly after: (BackendName | null)[] = [null, null, null]
  /** Per backend (wasm, webgpu): measured ms of its 'auto' calls with these features (NaN: none yet). */
  private readonly measured = new Float64Array([Number.NaN, Number.NaN])
  /** Per backend: its 'auto' calls with these features so far (the first is not measured). */
  private readonly calls = new Int32Array(2)
  /** Per backend: the measured ms the stored decisions were made with (NaN: the prediction). */
  private readonly decidedWith = new Float64Array([Number.NaN, Number.NaN])
  /** Per backend: calls of the other since it last ran, and how many it may sit out before its time is forgotten. */
  private readonly idle = new Int32Array(2)
  private readonly patience = new Int32Array([PATIENCE, PATIENCE])
  /** Per backend: RETRY_CALLS once its time was forgotten, then the calls of it left to try (explore). */
  private readonly retry = new Uint8Array(2)
  /** Per backend: 1 once it sat out `patience` calls without a measured time (candidate). */
  private readonly untried = new Uint8Array(2)
  /** The backend of the last observed call (0 wasm, 1 webgpu, -1 none), and whether that call was a switch left unmeasured. */
  private lastRan = -1
  private skippedSwitch = false
  /** The smallest margin (ms) between the chosen backend and the next of the stored decisions. */
  private gap = Number.POSITIVE_INFINITY

  /** The stored decision for `f` after a call on `previous`, or null (its fields compared one by one: no allocation). */
  lookup(f: CallFeatures, usable: readonly BackendName[], previous: BackendName | null, epoch: number): BackendName | null {
    return this.holds(f, usable, epoch) ? this.after[slot(previous)] : null
  }

  /** Store a decision; the ones stored for other features, usable backends or rates are dropped. */
  store(
    f: CallFeatures,
    usable: readonly BackendName[],
    previous: BackendName | null,
    epoch: number,
    backend: BackendName,
    gapMs = 0,
  ): void {
    if (!this.holds(f, usable, epoch)) {
      this.after.fill(null)
      this.measured.fill(Number.NaN)
      this.calls.fill(0)
      this.idle.fill(0)
      this.patience.fill(PATIENCE)
      this.retry.fill(0)
      this.untried.fill(0)
      this.gap = Number.POSITIVE_INFINITY
      this.tokens = f.tokens
      this.entries = f.entries
      this.distinct = f.distinct
      this.rankSum = f.rankSum
      this.rankEntries = f.rankEntries
      this.adaptersPerToken = f.adaptersPerToken ?? 1
      this.inFeatures = f.inFeatures
      this.outFeatures = f.outFeatures
      this.slices = f.slices
      this.weightDtype = f.weightDtype
      this.resident = f.resident
      this.epoch = epoch
      this.usable = usable
    }
    this.after[slot(previous)] = backend
    this.decidedWith.set(this.measured)
    this.gap = Math.min(this.gap, gapMs)
  }

  /**
   * Time of a call of features `f` on `backend`, in ms from its start
   * on the backend to its result (`Dispatcher.choose` then uses it in place of the prediction).
   * The first call of each backend is not counted (a GPU's first call at a new size creates its
   * buffers), then an exponential average of weight MEASURED_WEIGHT, a call over SPIKE x the
   * average (+ PAUSE_MS) counted as that (a pause of the thread or a busy moment of the host, not
   * the backend: one such call must not move the average past the other backend's, which may be
   * only 20% away; a backend that has really slowed down still moves it by 15% a call. The
   * PAUSE_MS lets an average of 0 move, where a browser's coarse clock timed calls as 0). The
   * stored decisions are dropped at a backend's first measured time, and when its average moves
   * by more than half the margin between the backends they were made with (less could not change
   * them; deciding again costs microseconds, a noisy small call must not pay that every time). A
   * backend that has not run for PATIENCE calls (then 2x, 4x, ..) is tried again, RETRY_CALLS calls (explore): a
   * time measured in a bad moment does not keep it out for good. On the H100 host 'auto' kept a T = 64 call on wasm at
   * 2.1x the GPU's time after one slow GPU call; and judging the forgotten backend by its
   * prediction instead kept T = 1 calls on wasm at 1.4-1.5x the GPU's time, where the GPU was
   * predicted 1.5x slower than it ran.
   */
  observe(f: CallFeatures, backend: BackendName, ms: number): void {
    // (a call whose features the memo no longer holds: a later call of other features was chosen first)
    if (!this.sameFeatures(f)) return
    const i = backend === 'wasm' ? 0 : 1
    const j = 1 - i
    this.idle[i] = 0
    // the other backend's time is forgotten once it has sat out `patience` calls, so that a time
    // measured in a bad moment does not keep it out for good; twice as long each time
    if (++this.idle[j] >= this.patience[j] && this.retry[j] === 0) {
      this.idle[j] = 0
      this.patience[j] *= 2
      if (!Number.isNaN(this.measured[j])) {
        this.measured[j] = Number.NaN
        this.retry[j] = RETRY_CALLS
        this.after.fill(null)
      } else if (!Number.isNaN(this.measured[i])) {
        // never timed (predicted slower): the dispatcher may try it (candidate)
        this.untried[j] = 1
      }
    }
    const switched = this.lastRan !== -1 && this.lastRan !== i
    this.lastRan = i
    if (this.calls[i]++ === 0 || !(ms >= 0)) return
    // the first call after the other backend's is not counted either (its idle GPU or cold wasm
    // caches: the dispatcher adds the switch on its own, switchMs), unless the last call was
    // such a one too (calls that go back and forth are all switches)
    if (switched && !this.skippedSwitch) {
      this.skippedSwitch = true
      return
    }
    this.skippedSwitch = false
    const m = this.measured[i]
    const v = Number.isNaN(m) ? ms : (1 - MEASURED_WEIGHT) * m + MEASURED_WEIGHT * Math.min(ms, SPIKE * m + PAUSE_MS)
    this.measured[i] = v
    const d = this.decidedWith[i]
    if (Number.isNaN(d) || Math.abs(v - d) > 0.5 * this.gap) this.after.fill(null)
  }

  /**
   * The backend whose time was forgotten (observe) and has not been tried since, or null; it is
   * tried for RETRY_CALLS calls in a row (the first is a switch, not counted): the call after
   * those decides as usual, on its new time if the last was timed.
   */
  explore(f: CallFeatures, usable: readonly BackendName[], epoch: number): BackendName | null {
    if (!this.holds(f, usable, epoch)) return null
    for (let i = 0; i < 2; i++) {
      const name: BackendName = i === 0 ? 'wasm' : 'webgpu'
      if (this.retry[i] > 0 && usable.includes(name)) {
        this.retry[i]--
        return name
      }
    }
    return null
  }

  /**
   * A backend never timed with these features that has sat out `patience` calls (then 2x, ..), or
   * null: the dispatcher tries it (tryNow) if its prediction is near the other's measured time.
   */
  candidate(f: CallFeatures, usable: readonly BackendName[], epoch: number): BackendName | null {
    // (every 'auto' call asks: the flags first, the features only when one is set)
    if ((this.untried[0] | this.untried[1]) === 0 || !this.holds(f, usable, epoch)) return null
    for (let i = 0; i < 2; i++) {
      if (this.untried[i] === 0) continue
      this.untried[i] = 0
      const name: BackendName = i === 0 ? 'wasm' : 'webgpu'
      if (usable.includes(name)) return name
    }
    return null
  }

  /** The call being chosen runs on `backend` to time it: it and RETRY_CALLS - 1 more (explore). */
  tryNow(backend: BackendName): void {
    this.retry[backend === 'wasm' ? 0 : 1] = RETRY_CALLS - 1
    this.after.fill(null) // the next call goes through explore
  }

  /** The measured ms of `backend`'s calls with these features, or NaN (none yet, or other features). */
  measuredMs(f: CallFeatures, usable: readonly BackendName[], epoch: number, backend: BackendName): number {
    return this.holds(f, usable, epoch) ? this.measured[backend === 'wasm' ? 0 : 1] : Number.NaN
  }

  private holds(f: CallFeatures, usable: readonly BackendName[], epoch: number): boolean {
    return this.epoch === epoch && this.usable === usable && this.sameFeatures(f)
  }

  private sameFeatures(f: CallFeatures): boolean {
    return (
      this.tokens === f.tokens &&
      this.entries === f.entries &&
      this.distinct === f.distinct &&
      this.rankSum === f.rankSum &&
      this.rankEntries === f.rankEntries &&
      this.adaptersPerToken === (f.adaptersPerToken ?? 1) &&
      this.inFeatures === f.inFeatures &&
      this.outFeatures === f.outFeatures &&
      this.slices === f.slices &&
      this.weightDtype === f.weightDtype &&
      this.resident === f.resident &&
      f.chunkSize === undefined
    )
  }
}

/** Weight of a new measurement in a backend's average (DecisionMemo.observe). */
export const MEASURED_WEIGHT = 0.3
/** Calls a backend sits out before its measured time is forgotten, doubled each time (DecisionMemo.observe). */
export const PATIENCE = 8
/**
 * Calls in a row a forgotten backend runs to be timed again (DecisionMemo.explore): the first
 * follows a call on the other backend and is not counted. On the H100 host (regret, T = 1 o r64,
 * f32) 'auto' ran 58 of 60 timed calls on wasm at 0.253 ms where the GPU took 0.189 ms forced:
 * its re-tries, one call each right after wasm calls, were what the memo timed.
 */
export const RETRY_CALLS = 2
/**
 * A backend that has not run with a layer's features is tried (RETRY_CALLS calls) after PATIENCE
 * calls of the other (then 2x, 4x, ..) if its prediction, switch included, is at most this times
 * the other's measured time (Dispatcher.choose). Predictions miss by up to 2.5x on some hosts: on
 * the H100 host (regret, o r64 f32 T = 1, 32 adapters) the GPU was predicted at 0.444 ms and ran
 * in 0.180, so at 1.5 'auto' ran every call on wasm (0.233); at o r16 bf16 T = 16 wasm was
 * predicted at 0.373 ms, 1.3x the GPU's measured 0.29, and ran in 0.246. A try costs RETRY_CALLS
 * calls at most this much slower, at intervals that double: a few calls in a serving loop.
 */
export const EXPLORE_RATIO = 3
/**
 * A measured time counts as at most SPIKE x the average + PAUSE_MS (ms; DecisionMemo.observe). At
 * 3x + 0.1 ms (before), one call of 0.5 ms would move a T = 1 average of 0.16 ms to 0.26, past a
 * backend at 0.19: the two backends of the H100 host's worst point (o r64, 32 adapters, T = 1:
 * GPU 0.178 ms, wasm 0.216), where 'auto' ran slower than either. Not yet run there.
 */
export const SPIKE = 1.5
export const PAUSE_MS = 0.02

function slot(previous: BackendName | null): number {
  return previous === null ? 0 : previous === 'wasm' ? 1 : 2
}
