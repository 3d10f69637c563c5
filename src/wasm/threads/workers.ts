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

/** The worker entry: a plain module next to this file (works from src/ and dist/). */
export const DEFAULT_WORKER_URL = (): URL => new URL('./worker.mjs', import.meta.url)

export async function startWorker(url: URL, events: WorkerEvents): Promise<WorkerHandle> {
  const g = globalThis as { process?: { versions?: { node?: string } }; Worker?: typeof Worker }
  if (g.process?.versions?.node !== undefined && !('Deno' in globalThis)) {
    const { Worker: NodeWorker } = (await importNode('node:worker_threads')) as typeof import('node:worker_threads')
    const w = new NodeWorker(url)
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
