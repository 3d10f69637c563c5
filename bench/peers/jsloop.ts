/** Peer: the plain JavaScript loop (bench/jsloop.ts) over the same plan. */
import { jsSgmv } from '../jsloop.js'
import type { Peer } from './types.js'

export const jsLoopPeer: Peer = {
  name: 'js',
  async setup(layer) {
    return {
      run: (x, y, plan) => jsSgmv(x, y, layer.inF, layer.widths, layer.slots, plan),
      dispose() {},
    }
  },
}
