/** Redraw the benchmark chart from a results JSON: npx tsx scripts/bench-chart.mts [bench/results/bench.json] */
import { readFileSync, writeFileSync } from 'node:fs'
import { chartSvg } from '../bench/cli/chart.ts'

const json = process.argv[2] ?? 'bench/results/bench.json'
const { rows } = JSON.parse(readFileSync(json, 'utf8'))
writeFileSync(json.replace(/\.json$/, '.svg'), await chartSvg(rows))
