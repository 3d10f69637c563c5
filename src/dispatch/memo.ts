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

  /** The stored decision for `f` after a call on `previous`, or null (its fields compared one by one: no allocation). */
  lookup(f: CallFeatures, usable: readonly BackendName[], previous: BackendName | null, epoch: number): BackendName | null {
    return this.holds(f, usable, epoch) ? this.after[slot(previous)] : null
  }

  /** Store a decision; the ones stored for other features, usable backends or rates are dropped. */
  store(f: CallFeatures, usable: readonly BackendName[], previous: BackendName | null, epoch: number, backend: BackendName): void {
    if (!this.holds(f, usable, epoch)) {
      this.after.fill(null)
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
  }

  private holds(f: CallFeatures, usable: readonly BackendName[], epoch: number): boolean {
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
      f.chunkSize === undefined &&
      this.epoch === epoch &&
      this.usable === usable
    )
  }
}

function slot(previous: BackendName | null): number {
  return previous === null ? 0 : previous === 'wasm' ? 1 : 2
}
