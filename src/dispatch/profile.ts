/**
 * A calibration profile: the measured rates of each backend on one machine, as plain JSON that can
 * be saved and passed back (`createRuntime({ profile })`).
 */
import type { BackendRates, ParallelRates } from './cost.js'
import { describe, LoraError } from '../errors.js'
import type { BackendName, WeightDtype } from '../types.js'
import { WEIGHT_DTYPES } from '../validate.js'

/** Where a profile was measured: what decides whether it applies to another runtime. */
export interface ProfileMachine {
  /** 'relaxed-simd' | 'simd', or null without wasm. */
  wasmVariant: string | null
  /** The GPU adapter, or null without WebGPU. */
  gpu: { description: string; isSoftware: boolean } | null
  /** Threads of the wasm backend (1: single-threaded). */
  threads?: number
}

/** Rates of one backend and which of them were measured (the others are priors). */
export interface ProfileEntry extends BackendRates {
  measured: string[]
}

export interface Profile {
  version: 1
  /** 'prior': nothing measured; 'short': the quick calibration at createRuntime; 'full': rt.calibrate(). */
  kind: 'prior' | 'short' | 'full'
  createdAt: string
  machine: ProfileMachine
  /** Wall time the calibration took (ms). */
  calibrationMs: number
  backends: Partial<Record<BackendName, ProfileEntry>>
}

const NAMES: BackendName[] = ['wasm', 'webgpu']

function bad(path: string, value: unknown, want: string): never {
  throw new LoraError('INVALID_ARGUMENT', `profile${path} must be ${want}, got ${describe(value)}`)
}

function rate(path: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) bad(path, value, 'a finite number >= 0')
  return value
}

function positive(path: string, value: unknown): number {
  const v = rate(path, value)
  if (v === 0) bad(path, 0, 'a number > 0')
  return v
}

function perDtype(path: string, value: unknown): Record<WeightDtype, number> {
  if (typeof value !== 'object' || value === null) bad(path, value, 'an object { f32, bf16, f16 }')
  const v = value as Record<string, unknown>
  const out = {} as Record<WeightDtype, number>
  for (const d of WEIGHT_DTYPES) {
    out[d] = rate(`${path}.${d}`, v[d])
    if (out[d] === 0) bad(`${path}.${d}`, 0, 'a number > 0')
  }
  return out
}

function entry(path: string, value: unknown): ProfileEntry {
  if (typeof value !== 'object' || value === null) bad(path, value, 'an object of rates')
  const v = value as Record<string, unknown>
  const hostGBs = rate(`${path}.hostGBs`, v.hostGBs)
  if (hostGBs === 0) bad(`${path}.hostGBs`, 0, 'a number > 0')
  const measured = Array.isArray(v.measured) ? v.measured.filter((m): m is string => typeof m === 'string') : []
  return {
    callMs: rate(`${path}.callMs`, v.callMs),
    ...(v.roundTripMs !== undefined ? { roundTripMs: rate(`${path}.roundTripMs`, v.roundTripMs) } : {}),
    segmentMs: rate(`${path}.segmentMs`, v.segmentMs),
    weightGBs: perDtype(`${path}.weightGBs`, v.weightGBs),
    ...(v.coldReadGBs !== undefined ? { coldReadGBs: positive(`${path}.coldReadGBs`, v.coldReadGBs) } : {}),
    gflops: perDtype(`${path}.gflops`, v.gflops),
    hostGBs,
    ...(v.parallel !== undefined ? { parallel: parallel(`${path}.parallel`, v.parallel) } : {}),
    ...(v.switchMs !== undefined ? { switchMs: rate(`${path}.switchMs`, v.switchMs) } : {}),
    measured,
  }
}

function parallel(path: string, value: unknown): ParallelRates {
  if (typeof value !== 'object' || value === null) bad(path, value, 'an object { threads, speedup }')
  const v = value as Record<string, unknown>
  const threads = rate(`${path}.threads`, v.threads)
  if (!Number.isInteger(threads) || threads < 1) bad(`${path}.threads`, threads, 'an integer >= 1')
  const speedup = rate(`${path}.speedup`, v.speedup)
  if (speedup === 0) bad(`${path}.speedup`, 0, 'a number > 0')
  return { threads, speedup }
}

/** Validate a profile given by the user (e.g. parsed from a saved JSON file). Throws LoraError INVALID_ARGUMENT. */
export function checkProfile(value: unknown): Profile {
  if (typeof value !== 'object' || value === null) bad('', value, 'an object (from rt.calibrate())')
  const v = value as Record<string, unknown>
  if (v.version !== 1) bad('.version', v.version, '1')
  if (v.kind !== 'prior' && v.kind !== 'short' && v.kind !== 'full') bad('.kind', v.kind, "'prior', 'short' or 'full'")
  if (typeof v.backends !== 'object' || v.backends === null) bad('.backends', v.backends, 'an object')
  const backends: Profile['backends'] = {}
  for (const [name, e] of Object.entries(v.backends as Record<string, unknown>)) {
    if (!NAMES.includes(name as BackendName)) bad(`.backends`, name, `keyed by ${NAMES.join(' | ')}`)
    backends[name as BackendName] = entry(`.backends.${name}`, e)
  }
  const m = (v.machine ?? {}) as Record<string, unknown>
  const gpu = m.gpu as ProfileMachine['gpu'] | undefined
  return {
    version: 1,
    kind: v.kind,
    createdAt: typeof v.createdAt === 'string' ? v.createdAt : '',
    machine: {
      wasmVariant: typeof m.wasmVariant === 'string' ? m.wasmVariant : null,
      gpu: gpu && typeof gpu === 'object' ? { description: String(gpu.description ?? ''), isSoftware: gpu.isSoftware === true } : null,
      threads: typeof m.threads === 'number' ? m.threads : 1,
    },
    calibrationMs: typeof v.calibrationMs === 'number' ? v.calibrationMs : 0,
    backends,
  }
}
