// After tsc (npm run build:ts): copy what tsc does not emit into dist/, next to the compiled
// modules that import it: the plain-JavaScript modules of src/ (*.mjs, e.g. the threads worker
// and its protocol, loaded as is from src/ in tests) and their types (*.d.mts).
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'src')
const dist = join(root, 'dist')

function* walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield* walk(p)
    else yield p
  }
}

let copied = 0
for (const file of walk(src)) {
  if (!file.endsWith('.mjs') && !file.endsWith('.d.mts')) continue
  const to = join(dist, relative(src, file))
  mkdirSync(dirname(to), { recursive: true })
  copyFileSync(file, to)
  copied++
}
console.log(`copy-dist-assets: ${copied} file(s) from src/ into dist/`)
