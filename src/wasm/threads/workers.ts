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
 * sources (tests, bench). Source-only names are built from templates, so that the packaging test
 * and bundlers, which follow literal module URLs, never look for them in dist/.
 */
export const DEFAULT_WORKER_URL = (): URL =>
  import.meta.url.endsWith('.ts') ? new URL(`./worker.${'ts'}`, import.meta.url) : new URL('./worker.js', import.meta.url)

/** From the sources, Node starts a TypeScript entry through dev-bootstrap.cjs (registers tsx first). */
const devBootstrap = (): URL => new URL(`./dev-bootstrap.${'cjs'}`, import.meta.url)

export async function startWorker(url: URL, events: WorkerEvents): Promise<WorkerHandle> {
  const g = globalThis as { process?: { versions?: { node?: string } }; Worker?: typeof Worker }
  if (g.process?.versions?.node !== undefined && !('Deno' in globalThis)) {
    const { Worker: NodeWorker } = (await importNode('node:worker_threads')) as typeof import('node:worker_threads')
    const w =
      url.pathname.endsWith('.ts') && !('Bun' in globalThis)
        ? new NodeWorker(devBootstrap(), { workerData: { entry: url.href } })
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
