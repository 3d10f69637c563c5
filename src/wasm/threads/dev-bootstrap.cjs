// Development only (never in dist/): Node cannot load the TypeScript worker entry (worker.ts)
// when the library runs from its sources (tests, bench). This worker registers tsx (a dev
// dependency, found from the entry's location) in its own thread, then imports the entry.
const { workerData } = require('node:worker_threads')
const { createRequire } = require('node:module')
const { dirname, join } = require('node:path')
const { fileURLToPath, pathToFileURL } = require('node:url')

const pkg = createRequire(fileURLToPath(workerData.entry)).resolve('tsx/package.json')
const api = join(dirname(pkg), require(pkg).exports['./esm/api'].import.default)
import(pathToFileURL(api).href).then(({ register }) => {
  register()
  return import(workerData.entry)
})
