/** The kernel test grid, run against the float64 reference for one backend. */
import { describe, expect, it } from 'vitest'
import { createRuntime, type Runtime } from '../src/index.js'
import type { BackendName } from '../src/types.js'
import { caseGrid, makeCase } from './grid.js'
import { expectDelta, expectUntouchedRows, TOLERANCE } from './compare.js'
import { sgmv } from './reference.js'

export function gridSuite(backend: BackendName, getRuntime: () => Runtime, label: string = backend): void {
  describe.each(caseGrid(2).map((c) => [c.name, c] as const))(`${label}: %s`, (_name, c) => {
    it('matches the float64 reference', async () => {
      const rt = getRuntime()
      const data = makeCase(c)
      const layer = rt.createLayer(data.options)
      try {
        for (const [slot, ad] of data.adapters) layer.setAdapter(slot, ad)
        const y = new Float32Array(data.y)
        await layer.apply(data.x, y, data.ids, { backend, adaptersPerToken: c.adaptersPerToken, weights: data.weights })
        const delta = sgmv(data.ref, data.x, data.ids, c.adaptersPerToken, data.weights)
        const out = data.ref.sliceWidths.reduce((a, b) => a + b, 0)
        expectDelta(y, data.y, delta, TOLERANCE[c.dtype], c.name)
        expectUntouchedRows(y, data.y, data.ids, c.adaptersPerToken, out)
        expect(y.length).toBe(c.tokens * out)
      } finally {
        layer.dispose()
      }
    })
  })
}

export async function runtimeFor(backend: BackendName): Promise<Runtime> {
  return createRuntime({ backend })
}
