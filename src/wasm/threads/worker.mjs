// Worker of the threaded wasm backend (pool.ts): receives the compiled threads build, the shared
// linear memory and the control block by postMessage, instantiates the module over that memory,
// answers 'ready', then runs its part of every job until told to quit (protocol.mjs).
// Runs under Node's worker_threads and as a web/Deno module worker.
import { workerLoop } from './protocol.mjs'

const node = typeof globalThis.process === 'object' && globalThis.process?.versions?.node !== undefined
const port = node ? (await import('node:worker_threads')).parentPort : globalThis

/** @param {{ module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: SharedArrayBuffer, index: number }} msg */
function start(msg) {
  let exports
  try {
    exports = new WebAssembly.Instance(msg.module, { env: { memory: msg.memory } }).exports
  } catch (e) {
    port.postMessage({ error: `could not instantiate the threads build in a worker: ${String(e)}` })
    return
  }
  port.postMessage({ ready: msg.index })
  workerLoop(new Int32Array(msg.ctrl), exports, msg.index, (m) => port.postMessage(m))
  // QUIT: leave the event loop empty so that the worker ends
  if (node) port.close()
  else globalThis.close()
}

if (node) port.once('message', start)
else globalThis.addEventListener('message', (e) => start(e.data), { once: true })
