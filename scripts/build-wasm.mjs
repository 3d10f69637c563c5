// Build the WebAssembly targets of the kernels (plain SIMD, relaxed SIMD, and both again with
// threads over an imported shared memory for src/wasm/threads/) into build/.
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const require = createRequire(import.meta.url)
const asc = join(dirname(require.resolve('assemblyscript/package.json')), 'bin', 'asc.js')
for (const target of ['simd', 'relaxed', 'threads', 'threads-relaxed']) {
  execFileSync(process.execPath, [asc, 'assembly/index.ts', '--config', 'asconfig.json', '--target', target], { stdio: 'inherit' })
}
