/**
 * The installer kernel and initramfs for the netboot VM test: the kernel of
 * the installed linux-image-*-amd64 package, and deploy/netboot/build-initramfs.sh's
 * output for each installer path, cached by a hash of everything that goes
 * into it, so a rerun skips the build (a cosi-fetch initramfs compresses
 * ~100 MB of Node).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, sh } from './fixtures.js';

export type Installer = 'cosi-fetch' | 'curl';

const NETBOOT = join(REPO, 'deploy', 'netboot');
// Per user and private: the VM boots what is in here, so nobody else may plant an image in it.
const CACHE = join(tmpdir(), `cosi-stream-netboot-${process.getuid?.() ?? 'user'}`);
const SYS_PATH = `${process.env['PATH'] ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`;

export interface Kernel {
  version: string;
  vmlinuz: string;
}

/** The newest Debian amd64 kernel whose modules are installed too (build-initramfs.sh needs them). */
export async function debianKernel(): Promise<Kernel> {
  const names = (await readdir('/boot').catch(() => [] as string[])).filter((n) => /^vmlinuz-.*-amd64$/.test(n));
  const versions = names.map((n) => n.slice('vmlinuz-'.length)).filter((v) => existsSync(`/lib/modules/${v}/modules.dep`));
  versions.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const version = versions.at(-1);
  if (!version) throw new Error('no Debian kernel with modules in /boot and /lib/modules: apt-get install linux-image-amd64 (.ci/run does)');
  return { version, vmlinuz: `/boot/vmlinuz-${version}` };
}

async function which(cmd: string): Promise<string> {
  for (const dir of SYS_PATH.split(':')) if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  throw new Error(`${cmd} is not installed (.ci/run installs what test:netboot needs)`);
}

/** Files hashed by content. */
async function hashFiles(h: ReturnType<typeof createHash>, paths: string[]): Promise<void> {
  for (const p of paths.sort()) h.update(p).update('\0').update(await readFile(p)).update('\0');
}

/** Every file under dir, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** What decides the image's bytes: our scripts, the kernel's modules, the host binaries copied in, and for cosi-fetch the built code and lock file. */
async function cacheKey(kernel: Kernel, installer: Installer): Promise<string> {
  const h = createHash('sha256').update(`v1 ${installer} ${kernel.version}\0`);
  await hashFiles(h, (await readdir(NETBOOT)).map((n) => join(NETBOOT, n)));
  await hashFiles(h, [`/lib/modules/${kernel.version}/modules.dep`]);
  const bins = ['busybox', 'sgdisk', 'sha384sum', installer === 'curl' ? 'curl' : 'node'];
  for (const b of bins) {
    const p = await which(b);
    const st = await stat(p);
    h.update(`${p} ${st.size} ${st.mtimeMs}\0`);
  }
  if (installer === 'cosi-fetch') {
    const code = [...(await filesUnder(join(REPO, 'dist', 'client'))), ...(await filesUnder(join(REPO, 'dist', 'shared')))];
    await hashFiles(h, [...code.filter((p) => p.endsWith('.js') || p.endsWith('.wasm')), join(REPO, 'package.json'), join(REPO, 'package-lock.json')]);
  }
  return h.digest('hex').slice(0, 16);
}

export interface Initramfs {
  path: string;
  bytes: number;
  /** Milliseconds spent building; 0 when it came from the cache. */
  buildMs: number;
}

/** The initramfs for one installer path, built once per distinct input. */
export async function installerInitramfs(kernel: Kernel, installer: Installer): Promise<Initramfs> {
  await mkdir(CACHE, { recursive: true, mode: 0o700 });
  if (((await stat(CACHE)).mode & 0o077) !== 0) throw new Error(`${CACHE} is open to other users; remove it`);
  const key = await cacheKey(kernel, installer);
  const path = join(CACHE, `initrd-${installer}-${key}.img`);
  let buildMs = 0;
  if (!existsSync(path)) {
    // Older builds of this flavour are stale by construction.
    for (const n of await readdir(CACHE)) if (n.startsWith(`initrd-${installer}-`)) await rm(join(CACHE, n), { force: true });
    const t0 = performance.now();
    // Built under a name of its own, then renamed: a concurrent run never boots half an image.
    const tmp = join(CACHE, `.initrd-${installer}-${key}-${process.pid}.tmp`);
    const args = [join(NETBOOT, 'build-initramfs.sh'), '-o', tmp, '-k', kernel.version, ...(installer === 'cosi-fetch' ? ['--cosi-fetch', REPO] : [])];
    try {
      await sh('sh', args);
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
    buildMs = performance.now() - t0;
  }
  return { path, bytes: (await stat(path)).size, buildMs };
}
