/**
 * Dawn (the `webgpu` package) runs on Vulkan in Linux. Without the Vulkan loader or any driver,
 * loading it prints the loader's failure from native code straight to stderr (a path from Dawn's
 * build machine included), where the library cannot catch it. So Node on Linux looks first, where
 * the loader would, and names what is missing instead.
 */
import { importNode } from '../platform.js'

type Fs = typeof import('node:fs')

const LOADER = 'libvulkan.so.1'

/** Where the dynamic linker finds the Vulkan loader: its cache, LD_LIBRARY_PATH, the usual folders. */
function hasLoader(fs: Fs, env: NodeJS.ProcessEnv): boolean {
  const dirs = [...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/lib', '/usr/lib', '/lib64', '/usr/lib64', '/usr/local/lib']
  dirs.push(...dirs.map((d) => `${d}/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`))
  if (dirs.some((d) => fs.existsSync(`${d}/${LOADER}`))) return true
  try {
    return fs.readFileSync('/etc/ld.so.cache').includes(LOADER)
  } catch {
    return false
  }
}

/** The loader's driver manifest search (VK_DRIVER_FILES / VK_ICD_FILENAMES replace the folders). */
function driverPaths(env: NodeJS.ProcessEnv): string[] {
  const list = (v: string | undefined): string[] => (v ?? '').split(':').filter(Boolean)
  const given = list(env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES)
  const extra = list(env.VK_ADD_DRIVER_FILES)
  if (given.length) return [...extra, ...given]
  const home = env.HOME ?? ''
  const config = [env.XDG_CONFIG_HOME ?? `${home}/.config`, ...list(env.XDG_CONFIG_DIRS ?? '/etc/xdg'), '/usr/local/etc', '/etc']
  const data = [env.XDG_DATA_HOME ?? `${home}/.local/share`, ...list(env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share')]
  return [...extra, ...[...config, ...data].map((d) => `${d}/vulkan/icd.d`)]
}

function hasManifest(fs: Fs, path: string): boolean {
  try {
    if (!fs.statSync(path).isDirectory()) return path.endsWith('.json')
    return fs.readdirSync(path).some((f) => f.endsWith('.json'))
  } catch {
    return false
  }
}

/** Why Dawn cannot find a Vulkan driver here, or null when it may (and off Linux). */
export async function vulkanMissing(): Promise<string | null> {
  if (process.platform !== 'linux') return null
  const fs = (await importNode('node:fs')) as Fs
  const env = process.env
  if (!hasLoader(fs, env)) return `no Vulkan loader (${LOADER}) for Dawn`
  const paths = driverPaths(env)
  if (paths.some((p) => hasManifest(fs, p))) return null
  const where = env.VK_DRIVER_FILES
    ? `VK_DRIVER_FILES=${env.VK_DRIVER_FILES}`
    : env.VK_ICD_FILENAMES
      ? `VK_ICD_FILENAMES=${env.VK_ICD_FILENAMES}`
      : 'vulkan/icd.d'
  return `no Vulkan driver for Dawn (no driver manifest in ${where})`
}
