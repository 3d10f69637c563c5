/** bench/results/*.md and the README's headline figures from the JSON results: npx tsx scripts/results-md.mts [results dir] [README.md] */
import { writeResultsMarkdown } from '../bench/results-md.js'

const [dir, readme] = process.argv.slice(2)
const figures = writeResultsMarkdown(dir, readme)
console.log(`${dir ?? 'bench/results'}/*.md and ${figures.length} headline figures written from the JSON results`)
