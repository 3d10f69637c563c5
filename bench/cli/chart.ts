/**
 * The SVG chart: time per call against T (log-log) for every backend, 'auto' and peer, one panel
 * per shape x rank x distinct adapters x dtype, the dispatcher's choice marked on each point. Drawn with
 * vega-lite, rendered to SVG by vega (headless, no canvas needed for SVG).
 */
import type { Row } from './report.js'

export async function chartSvg(rows: Row[]): Promise<string> {
  const vega = await import('vega')
  const vl = await import('vega-lite')
  const data: Record<string, unknown>[] = []
  const shapes = [...new Set(rows.map((r) => r.shape))]
  for (const r of rows) {
    const panel = `${r.shape.split(' ')[0]} rank ${r.rank}, ${r.distinct} adapter${r.distinct > 1 ? 's' : ''}, ${r.dtype}`
    for (const [id, ms] of Object.entries(r.ms)) {
      const series = id.includes('/') ? id.split('/')[0] : `${id} (f32)`
      const order = shapes.indexOf(r.shape) * 1e7 + r.rank * 1e4 + r.distinct * 10 + (r.dtype === 'f32' ? 0 : 1)
      data.push({ panel, order, T: r.T, ms, series, auto: series === 'auto' ? `auto -> ${r.choice}` : null })
    }
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values: data },
    facet: { field: 'panel', type: 'nominal', title: null, sort: { field: 'order', op: 'min' } },
    columns: 2,
    spec: {
      width: 300,
      height: 200,
      layer: [
        {
          mark: { type: 'line', point: true },
          encoding: {
            x: { field: 'T', type: 'quantitative', scale: { type: 'log' }, title: 'tokens T' },
            y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'ms per call' },
            color: { field: 'series', type: 'nominal', title: 'backend / peer' },
            strokeDash: { condition: { test: "datum.series === 'auto'", value: [4, 3] }, value: [1, 0] },
          },
        },
        {
          transform: [{ filter: "datum.series === 'auto'" }],
          mark: { type: 'point', size: 90, filled: true },
          encoding: {
            x: { field: 'T', type: 'quantitative' },
            y: { field: 'ms', type: 'quantitative' },
            shape: { field: 'auto', type: 'nominal', title: "dispatcher's choice" },
            color: { value: 'black' },
          },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  }
  const compiled = vl.compile(spec as never).spec
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' })
  return view.toSVG()
}
