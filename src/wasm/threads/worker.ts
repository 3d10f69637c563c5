// Worker of the threaded wasm backend (pool.ts): receives the compiled threads build, the shared
// linear memory and the control block by postMessage, instantiates the module over that memory,
// answers 'ready', then helps with every job until told to quit (protocol.ts).
// Runs under Node's worker_threads and as a web/Deno module worker.
import type { PartExports } from './control.js'
import { workerLoop } from './protocol.js'
import { importNode } from './support.js'

interface Start {
  module: WebAssembly.Module
  memory: WebAssembly.Memory
  ctrl: SharedArrayBuffer
  index: number
}
interface Port {
  postMessage(message: unknown): void
}

const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== undefined && !('Deno' in globalThis)
const nodePort = node ? ((await importNode('node:worker_threads')) as typeof import('node:worker_threads')).parentPort : null
const port: Port = nodePort ?? (globalThis as unknown as Port)

function start(msg: Start): void {
  let exports: PartExports
  try {
    exports = new WebAssembly.Instance(msg.module, { env: { memory: msg.memory } }).exports as unknown as PartExports
  } catch (e) {
    port.postMessage({ error: `could not instantiate the threads build in a worker: ${String(e)}` })
    return
  }
  port.postMessage({ ready: msg.index })
  workerLoop(new Int32Array(msg.ctrl), exports, msg.index, (m) => port.postMessage(m))
  // QUIT: leave the event loop empty so that the worker ends
  if (nodePort) nodePort.close()
  else (globalThis as unknown as { close(): void }).close()
}

if (nodePort) nodePort.once('message', start)
else (globalThis as unknown as EventTarget).addEventListener('message', (e) => start((e as MessageEvent).data as Start), { once: true })
