/**
 * What a test file needs that `npm install` cannot provide: a WebGPU adapter in Node and Deno (a
 * Vulkan driver; lavapipe at least) and Chromium. Every such file asks here, at its top level:
 *
 *   const gpu = await has('webgpu')
 *   describe.runIf(gpu)(...)
 *
 * When the piece is missing, has() prints one line (the file, what it skips, what is missing and
 * why, and the command that installs it) and resolves false, so the file skips what needs it. Under CI=true
 * the same absence throws instead: the file fails, naming what is missing.
 */
import { existsSync } from 'node:fs'
import { relative } from 'node:path'
import { expect } from 'vitest'
import { acquireDevice } from '../src/webgpu/device.js'

export type Need = 'webgpu' | 'chromium'

/** Chromium for the browser tests: CHROMIUM_PATH, else Debian's package. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** The command that installs both (scripts/setup-system.sh; .ci/run runs the same script). */
export const SETUP = 'npm run setup:system'

const LABEL: Record<Need, string> = { webgpu: 'WebGPU adapter (Vulkan driver)', chromium: 'Chromium' }

/** Dawn's GPU object of the probe, kept for the life of the process (see DeviceContext.keepAlive). */
const kept: unknown[] = []

/** Why `need` is missing here, or null when it is present. */
async function whyMissing(need: Need): Promise<string | null> {
  if (need === 'chromium') return existsSync(CHROMIUM) ? null : `${CHROMIUM} not found; CHROMIUM_PATH picks another`
  process.env.XDG_RUNTIME_DIR ??= '/tmp'
  try {
    const dc = await acquireDevice()
    kept.push(dc.keepAlive)
    dc.device.destroy()
    return null
  } catch (e) {
    return (e as Error).message
  }
}

const cache = new Map<Need, Promise<string | null>>()

/**
 * Resolves true when `need` is here. Otherwise: under CI=true it throws (the calling file fails);
 * else it prints one line saying what the calling file skips (`skips`, e.g. "skipped its WebGPU
 * parts" for a file that runs the rest on wasm) and why, and resolves false.
 */
export async function has(need: Need, skips = 'skipped'): Promise<boolean> {
  if (!cache.has(need)) cache.set(need, whyMissing(need))
  const why = await cache.get(need)!
  if (why === null) return true
  const file = relative(process.cwd(), expect.getState().testPath ?? 'this file')
  const missing = `no ${LABEL[need]} here (${why}). \`${SETUP}\` installs it.`
  if (process.env.CI === 'true') throw new Error(`CI=true and ${file} needs it: ${missing}`)
  console.warn(`${file} ${skips}: ${missing}`)
  return false
}
