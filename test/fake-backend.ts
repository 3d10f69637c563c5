/**
 * A `Backend` (src/backend.ts) that computes nothing: its layers run `apply` (the caller's: record
 * the call, take some time) and hold no weights. For tests of the choice between backends.
 */
import type { Backend, BackendLayer } from '../src/backend.js'
import type { BackendName } from '../src/types.js'

export function fakeBackend(name: BackendName, apply: BackendLayer['apply']): Backend {
  const layer: BackendLayer = { setAdapter() {}, clearAdapter() {}, dispose() {}, apply }
  return {
    name,
    chunkSize: 64,
    isSoftware: false,
    lost: false,
    device: null,
    transfers: null,
    kernels: null,
    hostMemory: null,
    threads: 1,
    threadsUnavailableReason: null,
    partsFor: () => 1,
    forceParts() {},
    settled: () => Promise.resolve(),
    createLayer: () => layer,
    dispose() {},
  }
}
