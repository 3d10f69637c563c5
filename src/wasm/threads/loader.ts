/**
 * The threads build of the kernels (asconfig.json targets `threads`, `threads-relaxed`): the same
 * exports as the single-threaded builds, compiled with `--enable threads --sharedMemory
 * --importMemory`, so that the main thread and every worker instantiate it over one shared
 * WebAssembly.Memory that the host creates here.
 */
import { LoraError } from '../../errors.js'
import type { WasmExports, WasmSource, WasmVariant } from '../loader.js'
import type { PartExports } from './control.js'
import { importNode } from './support.js'

export interface ThreadsModuleOptions {
  /** Source of the threads + relaxed-SIMD build (default: build/multilora-threads-relaxed.wasm). */
  threadsRelaxed?: WasmSource
  /** Source of the threads + SIMD build (default: build/multilora-threads.wasm). */
  threads?: WasmSource
  /** Use the relaxed-SIMD build where valid (default true). */
  preferRelaxed?: boolean
}

export interface ThreadsModule {
  module: WebAssembly.Module
  memory: WebAssembly.Memory
  /** The main thread's instance. */
  exports: WasmExports & PartExports
  variant: WasmVariant
}

const DEFAULT_URLS = {
  relaxed: () => new URL('../../../build/multilora-threads-relaxed.wasm', import.meta.url),
  simd: () => new URL('../../../build/multilora-threads.wasm', import.meta.url),
}
/** Pages the module declares as its minimum (asconfig.json initialMemory). */
const INITIAL_PAGES = 16
/**
 * A shared memory reserves its maximum up front (it can never move): the 4 GiB of wasm32 where the
 * runtime grants it, else less.
 */
const MAXIMUM_PAGES = [65536, 32768, 16384, 4096]

/** Compile the threads build, create the shared memory and instantiate the main thread's copy. */
export async function loadThreadsModule(options: ThreadsModuleOptions = {}): Promise<ThreadsModule> {
  let module: WebAssembly.Module | null = null
  let variant: WasmVariant = 'simd'
  if (options.preferRelaxed ?? true) {
    module = await compileFrom(options.threadsRelaxed ?? DEFAULT_URLS.relaxed()).catch(() => null)
    if (module) variant = 'relaxed-simd'
  }
  if (!module) module = await compileFrom(options.threads ?? DEFAULT_URLS.simd())
  let memory: WebAssembly.Memory | null = null
  for (const maximum of MAXIMUM_PAGES) {
    try {
      memory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum, shared: true })
      break
    } catch {
      // try a smaller reservation
    }
  }
  if (!memory) throw new LoraError('OUT_OF_MEMORY', 'could not reserve a shared WebAssembly memory')
  try {
    const instance = await WebAssembly.instantiate(module, { env: { memory } })
    return { module, memory, exports: instance.exports as unknown as WasmExports & PartExports, variant }
  } catch (cause) {
    throw new LoraError('WASM_LOAD_FAILED', `could not instantiate the threads build (${variant}): ${String(cause)}`, { cause })
  }
}

async function compileFrom(src: WasmSource): Promise<WebAssembly.Module> {
  if (src instanceof WebAssembly.Module) return src
  let bytes: Uint8Array<ArrayBuffer>
  if (src instanceof ArrayBuffer) bytes = new Uint8Array(src)
  else if (ArrayBuffer.isView(src)) bytes = new Uint8Array(src.buffer as ArrayBuffer, src.byteOffset, src.byteLength)
  else {
    const url =
      typeof src === 'string' ? new URL(src, `file://${(globalThis as { process?: { cwd(): string } }).process?.cwd() ?? ''}/`) : src
    try {
      if (url.protocol === 'file:') {
        const fs = (await importNode('node:fs/promises')) as typeof import('node:fs/promises')
        const { fileURLToPath } = (await importNode('node:url')) as typeof import('node:url')
        bytes = new Uint8Array(await fs.readFile(fileURLToPath(url)))
      } else {
        const res = await fetch(url)
        if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`)
        bytes = new Uint8Array(await res.arrayBuffer())
      }
    } catch (cause) {
      throw new LoraError('WASM_LOAD_FAILED', `could not read the threads build from ${url.href}: ${String(cause)}`, { cause })
    }
  }
  if (!WebAssembly.validate(bytes)) throw new LoraError('WASM_LOAD_FAILED', 'the threads build does not validate in this runtime')
  return WebAssembly.compile(bytes)
}
