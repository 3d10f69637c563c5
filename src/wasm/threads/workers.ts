/**
 * Starting the worker threads of the pool: Node's worker_threads, or module Workers (browsers,
 * Deno, Bun), behind one small interface.
 */
import { importNode } from './support.js'

/** One worker, whatever the runtime's Worker API. */
export interface WorkerHandle {
  post(message: unknown): void
  /** Stop the thread now. */
  terminate(): void
  /** Node: whether the worker keeps the process alive (no-op elsewhere). */
  keepAlive(on: boolean): void
}

export interface WorkerEvents {
  message(data: unknown): void
  /** The worker failed or ended on its own. */
  failed(reason: string): void
}

/**
 * The worker entry next to this module: worker.js in dist/, worker.ts when running from the
 * sources (tests, bench). The .ts name is built from a template so that packaging checks and
 * bundlers, which follow `new URL('./x', import.meta.url)` literals, never look for it in dist/.
 */
export const DEFAULT_WORKER_URL = (): URL =>
  import.meta.url.endsWith('.ts') ? new URL(`./worker.${'ts'}`, import.meta.url) : new URL('./worker.js', import.meta.url)

/**
 * Node cannot load a TypeScript worker by itself: from the sources, the worker first registers
 * tsx (a dev dependency, found from the entry's location), then imports the entry.
 */
function sourceBootstrap(entry: URL): string {
  return [
    "const { createRequire } = require('node:module')",
    "const { dirname, join } = require('node:path')",
    "const { fileURLToPath, pathToFileURL } = require('node:url')",
    `const pkg = createRequire(fileURLToPath(${JSON.stringify(entry.href)})).resolve('tsx/package.json')`,
    "const api = join(dirname(pkg), require(pkg).exports['./esm/api'].import.default)",
    `import(pathToFileURL(api).href).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}) })`,
  ].join('\n')
}

export async function startWorker(url: URL, events: WorkerEvents): Promise<WorkerHandle> {
  const g = globalThis as { process?: { versions?: { node?: string } }; Worker?: typeof Worker }
  if (g.process?.versions?.node !== undefined && !('Deno' in globalThis)) {
    const { Worker: NodeWorker } = (await importNode('node:worker_threads')) as typeof import('node:worker_threads')
    const w = url.pathname.endsWith('.ts') && !('Bun' in globalThis)
      ? new NodeWorker(sourceBootstrap(url), { eval: true })
      : new NodeWorker(url)
    let ending = false
    w.on('message', (m: unknown) => events.message(m))
    w.on('error', (e: Error) => events.failed(`worker error: ${e.message}`))
    w.on('exit', (code: number) => {
      if (!ending) events.failed(`worker exited with code ${code}`)
    })
    return {
      post: (m) => w.postMessage(m),
      terminate: () => {
        ending = true
        void w.terminate()
      },
      keepAlive: (on) => (on ? w.ref() : w.unref()),
    }
  }
  if (typeof g.Worker !== 'function') throw new Error('this runtime has no Worker')
  const w = new g.Worker(url, { type: 'module' })
  w.addEventListener('message', (e: MessageEvent) => events.message(e.data))
  w.addEventListener('error', (e: ErrorEvent) => {
    e.preventDefault?.()
    events.failed(`worker error: ${e.message}`)
  })
  return { post: (m) => w.postMessage(m), terminate: () => w.terminate(), keepAlive: () => {} }
}
