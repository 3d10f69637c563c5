/**
 * The dispatcher: for an 'auto' call, predict the time of every usable backend with the cost model
 * (src/dispatch/cost.ts) and the runtime's calibration profile, and pick the fastest. 'auto' calls
 * ({@link Dispatcher.choose}, allocation-free) and `rt.explain()` ({@link Dispatcher.decide}, with
 * predictions and reason) share one decision function, so they cannot disagree.
 */
import { type BackendRates, type CallFeatures, predict, type Prediction, priorRates, type Residency } from './cost.js'
import { type DecisionMemo, EXPLORE_RATIO } from './memo.js'
import type { Profile } from './profile.js'
import { describe, LoraError } from '../errors.js'
import type { BackendName, WeightDtype } from '../types.js'
import { checkAdaptersPerToken, checkInt, WEIGHT_DTYPES } from '../validate.js'

export type { CallFeatures } from './cost.js'
export { DecisionMemo } from './memo.js'

/**
 * Data already on the GPU stays there unless the CPU is predicted at least this many times
 * faster, transfers included: moving it costs more than time (queue order, memory, power) and the
 * prediction is not exact.
 */
export const GPU_STICKINESS = 2

/**
 * Where a layer has measured one backend's calls and not the other's, the other goes by its
 * prediction, which must be this much lower to win (x (1 + margin)): predictions miss by 10-70%
 * on some hosts (two starts on the H100 host calibrated the cold weight rate at 5.8 and 14.9
 * GB/s), so leaving a measured backend for one predicted a few % faster is a coin toss that costs
 * calls. Not measured apart: it landed with the re-try by running (DecisionMemo.explore).
 */
export const PREDICTION_MARGIN = 0.1

/** The outcome of one decision: what `rt.explain()` returns. */
export interface Decision {
  backend: BackendName
  /** Predicted ms of each usable backend. */
  predictedMs: Partial<Record<BackendName, number>>
  /** One line saying why. */
  reason: string
}

/** What the dispatcher knows of a backend besides its rates. */
export interface BackendTraits {
  name: BackendName
  isSoftware: boolean
  /** Longest segment of its plans. */
  chunkSize?: number
  /**
   * Threads a call of this many multiply-adds runs on (a multi-threaded backend; default 1);
   * `fusedEntries`: its entries when each token has one adapter, else 0; `copies`: x and y are
   * copied into the backend's memory (not host arrays).
   */
  parts?: (multiplyAdds: number, fusedEntries: number, copies: boolean) => number
}

export class Dispatcher {
  private rates = new Map<BackendName, BackendRates>()
  /** Bumped whenever the rates change: memos of decisions made before no longer hold. */
  private epoch = 0
  private readonly traitOf = new Map<BackendName, BackendTraits>()
  /** The backend the previous call ran on (forced or chosen), null before the first. */
  private last: BackendName | null = null

  constructor(
    private readonly traits: readonly BackendTraits[],
    private profile: Profile | null,
  ) {
    for (const t of traits) this.traitOf.set(t.name, t)
    this.setProfile(profile)
  }

  get currentProfile(): Profile | null {
    return this.profile
  }

  /** Use a profile's rates; backends it does not cover keep their priors. */
  setProfile(profile: Profile | null): void {
    this.profile = profile
    this.epoch++
    for (const t of this.traits) this.rates.set(t.name, profile?.backends[t.name] ?? priorRates(t.name, t.isSoftware))
  }

  /** Changes whenever the rates do (what a DecisionMemo's decisions are valid for). */
  get ratesVersion(): number {
    return this.epoch
  }

  /** Record the backend a call runs on: the next call pays the other backend's switchMs. */
  ran(name: BackendName): void {
    this.last = name
  }

  /** The backend the previous call ran on (null before the first). */
  get previous(): BackendName | null {
    return this.last
  }

  /** Extra ms of a call on `name` after the previous call (0 on the same backend or at the first call). */
  switchMs(name: BackendName): number {
    return this.last !== null && this.last !== name ? (this.rates.get(name)!.switchMs ?? 0) : 0
  }

  /** Predicted ms of backend `name` for `f` (transfers included; not the switch, see switchMs). */
  predictMs(name: BackendName, f: CallFeatures): Prediction {
    const rates = this.rates.get(name)!
    const trait = this.traitOf.get(name)
    // (no copy of f with the backend's chunk size: an 'auto' call predicts every backend)
    const chunk = trait?.chunkSize ?? 64
    if (name === 'webgpu') return predict(rates, f, f.resident !== 'gpu', 0, 1, chunk)
    // GPU-resident data run on the CPU: read x and y back and upload y, one more round trip
    const gpu = this.rates.get('webgpu')
    const fetch =
      f.resident === 'gpu' && gpu
        ? gpu.callMs + (gpu.roundTripMs ?? 0) + (f.tokens * (f.inFeatures + 2 * f.outFeatures) * 4) / gpu.hostGBs / 1e6
        : 0
    const parts = trait?.parts
      ? trait.parts(
          f.rankEntries * (f.inFeatures * f.slices + f.outFeatures),
          (f.adaptersPerToken ?? 1) === 1 ? f.entries : 0,
          f.resident !== 'wasm',
        )
      : 1
    return predict(rates, f, f.resident !== 'wasm', fetch, parts, chunk)
  }

  /**
   * The decision itself, shared by 'auto' calls ({@link choose}) and explain ({@link decide}):
   * the fastest predicted backend (measured, where `memo` holds times of these calls), the cost
   * of switching away from the previous call's backend
   * included, except that GPU-resident data stays on the GPU unless another backend is
   * GPU_STICKINESS times faster. Writes the predictions into `ms` (same order as usable).
   */
  private pickIndex(f: CallFeatures, usable: readonly BackendName[], ms: number[], memo?: DecisionMemo): number {
    let best = 0
    let gpu = -1
    // what this layer's calls of these features took on each backend, where it has run them
    let measured = false
    for (let i = 0; i < usable.length; i++) {
      ms[i] = memo ? memo.measuredMs(f, usable, this.epoch, usable[i]) : Number.NaN
      measured ||= !Number.isNaN(ms[i])
    }
    for (let i = 0; i < usable.length; i++) {
      // a prediction against a measured time needs the margin to win
      if (Number.isNaN(ms[i])) ms[i] = this.predictMs(usable[i], f).ms * (measured ? 1 + PREDICTION_MARGIN : 1)
      ms[i] += this.switchMs(usable[i])
      if (ms[i] < ms[best]) best = i
      if (usable[i] === 'webgpu') gpu = i
    }
    if (f.resident === 'gpu' && gpu >= 0 && best !== gpu && ms[best] * GPU_STICKINESS > ms[gpu]) return gpu
    return best
  }

  private readonly scratch: number[] = []

  /**
   * The backend of an 'auto' call: {@link decide}'s choice, without building its explanation.
   * With a memo (the caller's last decision), that decision when it still holds; the memo is kept
   * up to date. `usable` must be the same array while the usable backends do not change.
   */
  choose(f: CallFeatures, usable: readonly BackendName[], memo?: DecisionMemo): BackendName {
    if (usable.length === 1) return usable[0]
    // a backend never run with these features is tried where predicted near the other's measured time
    const untried = memo ? memo.candidate(f, usable, this.epoch) : null
    if (untried !== null) {
      const measured = memo!.measuredMs(f, usable, this.epoch, untried === 'wasm' ? 'webgpu' : 'wasm')
      if (this.predictMs(untried, f).ms + this.switchMs(untried) <= EXPLORE_RATIO * measured) {
        memo!.tryNow(untried)
        return untried
      }
    }
    const known = memo ? memo.lookup(f, usable, this.last, this.epoch) : null
    if (known !== null) return known
    // a backend whose measured time was forgotten runs again, to be measured again (memo.observe)
    const retry = memo ? memo.explore(f, usable, this.epoch) : null
    if (retry !== null) return retry
    const ms = this.scratch
    const i = this.pickIndex(f, usable, ms, memo)
    const backend = usable[i]
    if (memo) {
      let gap = Number.POSITIVE_INFINITY
      for (let j = 0; j < usable.length; j++) if (j !== i) gap = Math.min(gap, Math.abs(ms[j] - ms[i]))
      memo.store(f, usable, this.last, this.epoch, backend, gap)
    }
    return backend
  }

  /** Choose among `usable` (non-empty) for a call with features `f`, with every prediction and the reason. */
  decide(f: CallFeatures, usable: readonly BackendName[]): Decision {
    const ms: number[] = []
    const pick = this.pickIndex(f, usable, ms)
    const backend = usable[pick]
    const predictedMs: Partial<Record<BackendName, number>> = {}
    usable.forEach((n, i) => (predictedMs[n] = round(ms[i])))
    if (usable.length === 1) return { backend, predictedMs, reason: `${backend} is the only usable backend` }
    const order = usable.map((_, i) => i).sort((a, b) => ms[a] - ms[b])
    if (order[0] !== pick) {
      const other = usable[order[0]]
      return {
        backend,
        predictedMs,
        reason: `data on the GPU stays there: ${other} (${fmt(ms[order[0]])} ms with transfers) is not ${GPU_STICKINESS}x faster than webgpu (${fmt(ms[pick])} ms)`,
      }
    }
    const second = usable[order[1]]
    const bound = this.predictMs(backend, f).bound
    const switching = this.switchMs(second)
    if (switching > 0 && ms[order[1]] - switching < ms[pick]) {
      return {
        backend,
        predictedMs,
        reason: `${backend} ran the previous call and stays: ${second} (${fmt(ms[order[1]] - switching)} ms) is not faster by its switching cost (${fmt(switching)} ms; ${backend} ${fmt(ms[pick])} ms)`,
      }
    }
    const sw = (backend === 'webgpu' || second === 'webgpu') && this.traitOf.get('webgpu')?.isSoftware ? ' on a software GPU adapter' : ''
    return {
      backend,
      predictedMs,
      reason: `${backend} predicted ${fmt(ms[pick])} ms vs ${second} ${fmt(ms[order[1]])} ms (${bound}-bound on ${backend}${sw}${this.profile ? `, ${this.profile.kind} calibration` : ', uncalibrated priors'})`,
    }
  }
}

/** What `rt.explain()` takes: a call described by its sizes instead of its arrays. */
export interface ExplainRequest {
  /** T: tokens in the batch. */
  tokens: number
  /** Distinct adapters in the batch (default 1; at most tokens * adaptersPerToken). */
  adapters?: number
  /** Rank of every adapter, or one rank per distinct adapter. */
  rank: number | readonly number[]
  inFeatures: number
  /** Output width, or the widths of its slices. */
  outFeatures: number | readonly number[]
  weightDtype?: WeightDtype
  /** Where x and y live (default 'host'). */
  resident?: Residency
  /** Adapters per token (default 1). */
  adaptersPerToken?: number
}

/** Validate an explain request into call features (tokens spread evenly over the adapters). */
export function featuresOf(r: ExplainRequest): CallFeatures {
  if (typeof r !== 'object' || r === null) throw new LoraError('INVALID_ARGUMENT', `explain() takes an object, got ${describe(r)}`)
  const tokens = checkInt('tokens', r.tokens, 0)
  const K = checkAdaptersPerToken('adaptersPerToken', r.adaptersPerToken ?? 1)
  const distinct = checkInt('adapters', r.adapters ?? (Array.isArray(r.rank) ? r.rank.length : 1), 1)
  const ranks = typeof r.rank === 'number' ? new Array<number>(distinct).fill(r.rank) : Array.isArray(r.rank) ? [...r.rank] : null
  if (!ranks || ranks.length !== distinct) {
    throw new LoraError(
      'SHAPE_MISMATCH',
      `rank must be a number or an array of ${distinct} ranks (one per adapter), got ${describe(r.rank)}`,
    )
  }
  ranks.forEach((v, i) => checkInt(`rank[${i}]`, v, 1, 4096))
  const widths = typeof r.outFeatures === 'number' ? [r.outFeatures] : Array.isArray(r.outFeatures) ? [...r.outFeatures] : null
  if (!widths || widths.length === 0)
    throw new LoraError('INVALID_ARGUMENT', `outFeatures must be a number or an array of numbers, got ${describe(r.outFeatures)}`)
  widths.forEach((w, i) => checkInt(`outFeatures[${i}]`, w, 1))
  const dtype = r.weightDtype ?? 'f32'
  if (!WEIGHT_DTYPES.includes(dtype))
    throw new LoraError('UNSUPPORTED_DTYPE', `weightDtype must be f32, bf16 or f16, got ${describe(dtype)}`)
  const resident = r.resident ?? 'host'
  if (resident !== 'host' && resident !== 'wasm' && resident !== 'gpu')
    throw new LoraError('INVALID_ARGUMENT', `resident must be 'host', 'wasm' or 'gpu', got ${describe(resident)}`)
  const entries = tokens * K
  const used = Math.min(distinct, entries)
  const rankSum = ranks.slice(0, used).reduce((a, b) => a + b, 0)
  return {
    tokens,
    entries,
    distinct: used,
    rankSum,
    rankEntries: used > 0 ? (entries * rankSum) / used : 0,
    adaptersPerToken: K,
    inFeatures: checkInt('inFeatures', r.inFeatures, 1),
    outFeatures: widths.reduce((a, b) => a + b, 0),
    slices: widths.length,
    weightDtype: dtype as WeightDtype,
    resident,
  }
}

function round(ms: number): number {
  return Number(ms.toPrecision(3))
}

function fmt(ms: number): string {
  return ms < 0.1 ? ms.toFixed(3) : ms < 10 ? ms.toFixed(2) : ms.toFixed(0)
}
