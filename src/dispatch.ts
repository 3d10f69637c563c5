/**
 * The dispatcher: for an 'auto' call, predict the time of every usable backend with the cost model
 * (src/cost.ts) and the runtime's calibration profile, and pick the fastest. `rt.explain()` and
 * 'auto' calls both go through {@link Dispatcher.decide}, so they cannot disagree.
 */
import { type BackendRates, type CallFeatures, predict, type Prediction, priorRates, type Residency } from './cost.js'
import type { Profile } from './cost-profile.js'
import { describe, LoraError } from './errors.js'
import type { BackendName, WeightDtype } from './types.js'
import { checkInt } from './validate.js'

export type { CallFeatures } from './cost.js'

/**
 * Data already on the GPU stays there unless the CPU is predicted at least this many times
 * faster, transfers included: moving it costs more than time (queue order, memory, power) and the
 * prediction is not exact.
 */
export const GPU_STICKINESS = 2

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
}

export class Dispatcher {
  private rates = new Map<BackendName, BackendRates>()

  constructor(private readonly traits: readonly BackendTraits[], private profile: Profile | null) {
    this.setProfile(profile)
  }

  get currentProfile(): Profile | null {
    return this.profile
  }

  /** Use a profile's rates; backends it does not cover keep their priors. */
  setProfile(profile: Profile | null): void {
    this.profile = profile
    for (const t of this.traits) this.rates.set(t.name, profile?.backends[t.name] ?? priorRates(t.name, t.isSoftware))
  }

  ratesOf(name: BackendName): BackendRates | undefined {
    return this.rates.get(name)
  }

  /** Choose among `usable` (non-empty) for a call with features `f`. */
  decide(f: CallFeatures, usable: readonly BackendName[]): Decision {
    const gpuRates = this.rates.get('webgpu')
    const preds = new Map<BackendName, Prediction>()
    for (const name of usable) {
      const rates = this.rates.get(name)!
      const chunkSize = this.traits.find((t) => t.name === name)?.chunkSize
      const g = { ...f, chunkSize }
      if (name === 'webgpu') preds.set(name, predict(rates, g, f.resident === 'host'))
      else {
        // GPU-resident data run on the CPU: read x and y back and upload y, one more round trip
        const fetch = f.resident === 'gpu' && gpuRates
          ? gpuRates.callMs + (f.tokens * (f.inFeatures + 2 * f.outFeatures) * 4) / gpuRates.hostGBs / 1e6
          : 0
        preds.set(name, predict(rates, g, true, fetch))
      }
    }
    const predictedMs: Partial<Record<BackendName, number>> = {}
    for (const [n, p] of preds) predictedMs[n] = round(p.ms)
    const ranked = [...preds].sort((a, b) => a[1].ms - b[1].ms)
    const [best, bestP] = ranked[0]
    if (ranked.length === 1) return { backend: best, predictedMs, reason: `${best} is the only usable backend` }
    const gpu = preds.get('webgpu')
    if (f.resident === 'gpu' && gpu && best !== 'webgpu' && bestP.ms * GPU_STICKINESS > gpu.ms) {
      return {
        backend: 'webgpu', predictedMs,
        reason: `data on the GPU stays there: ${best} (${fmt(bestP.ms)} ms with transfers) is not ${GPU_STICKINESS}x faster than webgpu (${fmt(gpu.ms)} ms)`,
      }
    }
    const [second, secondP] = ranked[1]
    const sw = this.traits.find((t) => t.name === 'webgpu')?.isSoftware ? ' on a software GPU adapter' : ''
    const why = best === 'webgpu' || second === 'webgpu' ? sw : ''
    return {
      backend: best, predictedMs,
      reason: `${best} predicted ${fmt(bestP.ms)} ms vs ${second} ${fmt(secondP.ms)} ms (${bestP.bound}-bound on ${best}${why}${this.profile ? `, ${this.profile.kind} calibration` : ', uncalibrated priors'})`,
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
  const K = checkInt('adaptersPerToken', r.adaptersPerToken ?? 1, 1, 64)
  const distinct = checkInt('adapters', r.adapters ?? (Array.isArray(r.rank) ? r.rank.length : 1), 1)
  const ranks = typeof r.rank === 'number' ? new Array<number>(distinct).fill(r.rank) : Array.isArray(r.rank) ? [...r.rank] : null
  if (!ranks || ranks.length !== distinct) {
    throw new LoraError('SHAPE_MISMATCH', `rank must be a number or an array of ${distinct} ranks (one per adapter), got ${describe(r.rank)}`)
  }
  ranks.forEach((v, i) => checkInt(`rank[${i}]`, v, 1, 4096))
  const widths = typeof r.outFeatures === 'number' ? [r.outFeatures] : Array.isArray(r.outFeatures) ? [...r.outFeatures] : null
  if (!widths || widths.length === 0) throw new LoraError('INVALID_ARGUMENT', `outFeatures must be a number or an array of numbers, got ${describe(r.outFeatures)}`)
  widths.forEach((w, i) => checkInt(`outFeatures[${i}]`, w, 1))
  const dtype = r.weightDtype ?? 'f32'
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new LoraError('UNSUPPORTED_DTYPE', `weightDtype must be f32, bf16 or f16, got ${describe(dtype)}`)
  const resident = r.resident ?? 'host'
  if (resident !== 'host' && resident !== 'gpu') throw new LoraError('INVALID_ARGUMENT', `resident must be 'host' or 'gpu', got ${describe(resident)}`)
  const entries = tokens * K
  const used = Math.min(distinct, entries)
  const rankSum = ranks.slice(0, used).reduce((a, b) => a + b, 0)
  return {
    tokens, entries, distinct: used, rankSum, rankEntries: used > 0 ? (entries * rankSum) / used : 0,
    inFeatures: checkInt('inFeatures', r.inFeatures, 1), outFeatures: widths.reduce((a, b) => a + b, 0), slices: widths.length,
    weightDtype: dtype as WeightDtype, resident,
  }
}

function round(ms: number): number {
  return Number(ms.toPrecision(3))
}

function fmt(ms: number): string {
  return ms < 0.1 ? ms.toFixed(3) : ms < 10 ? ms.toFixed(2) : ms.toFixed(0)
}
