/**
 * The runtime's side of calibration: which backends to measure, the machine fingerprint, and the
 * per-process cache of the short calibration (a second createRuntime on the same backends reuses
 * the first one's profile instead of measuring again).
 */
import type { Backend } from '../backend.js'
import { calibrate, type CalibrationTarget } from './calibrate.js'
import type { Profile, ProfileMachine } from './profile.js'

export function targetsOf(backends: readonly Backend[]): CalibrationTarget[] {
  return backends
    .filter((b) => !b.lost)
    .map((b) => {
      const parallel = b.threads > 1 ? { threads: b.threads, force: (n: number | null) => b.forceParts(n) } : undefined
      return { backend: b, isSoftware: b.isSoftware, parallel }
    })
}

/** Threads of the wasm backend among `backends` (1 when single-threaded or absent). */
export function wasmThreads(backends: readonly Backend[]): number {
  return backends.find((b) => b.name === 'wasm')?.threads ?? 1
}

export function machineOf(backends: readonly Backend[], wasmVariant: string | null): ProfileMachine {
  const g = backends.find((b) => b.name === 'webgpu')
  const info: GPUAdapterInfo | undefined = g?.device?.adapterInfo // undefined on older Dawn builds
  const description = info ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') : ''
  return { wasmVariant, gpu: g ? { description, isSoftware: g.isSoftware } : null, threads: wasmThreads(backends) }
}

const shortCache = new Map<string, Promise<Profile>>()

/** The short calibration of these backends, measured once per process per machine fingerprint. */
export function shortCalibration(backends: readonly Backend[], wasmVariant: string | null): Promise<Profile> {
  const machine = machineOf(backends, wasmVariant)
  const key = JSON.stringify({ machine, names: backends.map((b) => b.name) })
  let p = shortCache.get(key)
  if (!p) {
    p = calibrate(targetsOf(backends), machine, { kind: 'short' })
    p.catch(() => shortCache.delete(key))
    shortCache.set(key, p)
  }
  return p
}

/** Remember a profile (e.g. from rt.calibrate()) for later runtimes of this process. */
export function rememberProfile(backends: readonly Backend[], wasmVariant: string | null, profile: Profile): void {
  const machine = machineOf(backends, wasmVariant)
  shortCache.set(JSON.stringify({ machine, names: backends.map((b) => b.name) }), Promise.resolve(profile))
}
