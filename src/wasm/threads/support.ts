/**
 * Where the threaded wasm backend can run, and how many threads the machine offers. Everything
 * here reads an environment object (globalThis by default) so that tests can describe one.
 */
import { LoraError } from '../../errors.js'

/** `createRuntime({ threads })`: a thread count (1 = single-threaded), or 'auto'. */
export type ThreadsOption = number | 'auto'

/** Validate the threads option (LoraError INVALID_ARGUMENT otherwise). */
export function checkThreads(value: unknown): ThreadsOption {
  if (value === 'auto') return value
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 64) return value
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value)
  throw new LoraError('INVALID_ARGUMENT', `threads must be 'auto' or an integer in 1..64, got ${shown}`)
}

/** The parts of a JavaScript environment that threads depend on. */
export interface ThreadEnv {
  SharedArrayBuffer?: unknown
  Atomics?: unknown
  Worker?: unknown
  WebAssembly?: typeof WebAssembly
  crossOriginIsolated?: boolean
  navigator?: { userAgent?: string; hardwareConcurrency?: number }
  process?: { versions?: Record<string, string | undefined> }
}

/**
 * Why threads cannot be used here, or null when they can: shared memory needs SharedArrayBuffer
 * (in browsers only on cross-origin isolated pages), Atomics and a Worker constructor; Cloudflare
 * Workers (workerd) has none of them.
 */
export function threadsUnavailableReason(env: ThreadEnv = globalThis as ThreadEnv): string | null {
  if (env.navigator?.userAgent === 'Cloudflare-Workers') return 'Cloudflare Workers (workerd) has no threads'
  if (typeof env.SharedArrayBuffer !== 'function') {
    return env.crossOriginIsolated === false
      ? 'the page is not cross-origin isolated (COOP/COEP headers), so SharedArrayBuffer is unavailable'
      : 'SharedArrayBuffer is not available in this runtime'
  }
  if (env.crossOriginIsolated === false) return 'the page is not cross-origin isolated (COOP/COEP headers)'
  if (typeof env.Atomics !== 'object' || env.Atomics === null) return 'Atomics is not available in this runtime'
  if (typeof env.Worker !== 'function' && env.process?.versions?.node === undefined) return 'this runtime has no Worker'
  const wasm = env.WebAssembly
  if (!wasm) return 'WebAssembly is not available in this runtime'
  try {
    new wasm.Memory({ initial: 1, maximum: 1, shared: true })
  } catch {
    return 'this runtime cannot create shared WebAssembly memory'
  }
  return null
}

/** Logical cores of this machine (os.availableParallelism in Node, navigator.hardwareConcurrency elsewhere). */
export async function machineThreads(env: ThreadEnv = globalThis as ThreadEnv): Promise<number> {
  if (env.process?.versions?.node !== undefined) {
    try {
      const os = (await importNode('node:os')) as typeof import('node:os')
      return Math.max(1, os.availableParallelism?.() ?? os.cpus().length)
    } catch {
      // fall through to navigator
    }
  }
  return Math.max(1, env.navigator?.hardwareConcurrency ?? 1)
}

/** A Node built-in, through a variable: bundlers for browsers and workers leave it alone. */
export function importNode(name: string): Promise<unknown> {
  return import(/* @vite-ignore */ name)
}
