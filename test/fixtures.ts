/**
 * Real disks for tests and benchmarks: GPT made by sgdisk (fdisk for 4 KiB
 * sectors), an ESP formatted by mkfs.vfat and filled with mtools, ext4 root
 * and /srv populated by mkfs.ext4 -d, a large mostly-zero partition, then
 * packed with our own cosi-pack. Also archives written by other tar writers.
 *
 * Builds are cached under the OS temp dir, keyed by a recipe hash, and
 * published with an atomic rename, so parallel test files share one build.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/**
 * The COSI reference material (specification, JSON schema, sample documents) is not ours to ship:
 * CI checks it out beside the repository, COSI_REFERENCE points elsewhere. Tests that compare
 * against it skip when it is absent; everything else uses TEST_DATA, which the project owns.
 */
export const REFERENCE = process.env['COSI_REFERENCE'] || join(REPO, '..', 'shared', 'reference');
export const TEST_DATA = join(REPO, 'test', 'data');

/** A node:test `skip` value: false when these reference files exist, else the one-line reason. */
export function needsReference(...files: string[]): string | false {
  const missing = files.find((f) => !existsSync(join(REFERENCE, f)));
  return missing === undefined ? false : `needs the COSI reference material (${join(REFERENCE, missing)} not found; set COSI_REFERENCE)`;
}
export const PACK_CLI = join(REPO, 'dist', 'shared', 'pack', 'cli.js');
const MiB = 1024 * 1024;

export async function sh(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): Promise<string> {
  if (opts.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = execFile(cmd, args, { cwd: opts.cwd, maxBuffer: 64 * MiB }, (err, stdout, stderr) =>
        err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
      );
      child.stdin!.end(opts.input);
    });
  }
  try {
    const { stdout } = await run(cmd, args, { cwd: opts.cwd, maxBuffer: 64 * MiB });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

export interface DiskRecipe {
  name: string;
  lbaSize?: 512 | 4096;
  /** Partition sizes in MiB. */
  espMiB?: number;
  rootMiB?: number;
  srvMiB?: number;
  /** Adds a partition of this many MiB that is all zeros but for a small header. */
  zeroMiB?: number;
  /** Make the root filesystem smaller than its partition (as if shrunk by another writer). */
  rootFsMiB?: number;
  /** Extra bytes of real files copied into the root filesystem (from /usr/lib). */
  rootFillMiB?: number;
  /** Fill with shared libraries only (about 3.6:1 at level 9, as real OS images compress), never the rest of /usr/lib. */
  rootFillLibrariesOnly?: boolean;
}

export interface BuiltDisk {
  dir: string;
  disk: string;
  osRelease: string;
  recipe: DiskRecipe;
}

/** Partition table of a fixture disk, in MiB offsets from the disk start. */
interface Layout {
  number: number;
  startMiB: number;
  sizeMiB: number;
  code: string; // sgdisk type code
  name: string;
  image?: string;
}

async function placeImage(disk: string, image: string, offset: number): Promise<void> {
  await sh('dd', [`if=${image}`, `of=${disk}`, 'bs=1M', `seek=${offset}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
}

async function makeRootTree(dir: string, fillMiB: number, librariesOnly = false): Promise<string> {
  const osRelease = 'NAME="Fixture Linux"\nVERSION="1.0"\nID=fixture\nVERSION_ID="1.0"\nPRETTY_NAME="Fixture Linux 1.0"\n';
  await mkdir(join(dir, 'usr/lib'), { recursive: true });
  await mkdir(join(dir, 'etc'), { recursive: true });
  await mkdir(join(dir, 'var/log'), { recursive: true });
  await writeFile(join(dir, 'usr/lib/os-release'), osRelease);
  await symlink('../usr/lib/os-release', join(dir, 'etc/os-release'));
  await writeFile(join(dir, 'etc/hostname'), 'fixture\n');
  // Incompressible-ish content so partitions are not trivially tiny.
  await writeFile(join(dir, 'usr/lib/random.bin'), createHash('sha512').update('seed').digest().toString('hex').repeat(4096));
  if (fillMiB > 0) {
    // Real files, as an OS image holds, copied in name order until the budget is spent: shared libraries
    // first (about 3.6:1 at level 9), then the rest for budgets larger than the libraries (the bench's).
    // Libraries first because which other files lead /usr/lib depends on what the machine installed
    // (kernel modules or firmware would change a small fixture's size and ratio from host to host).
    const prune = `\\( -path ./modules -o -path ./firmware -o -path ./debug \\) -prune -o -type f -size -4M`;
    const lib = `\\( -name '*.so' -o -name '*.so.*' \\)`;
    const rest = librariesOnly ? '' : ` find . ${prune} ! ${lib} -printf '%s %p\\n' | LC_ALL=C sort -t ' ' -k2;`;
    const pick = `{ find . ${prune} ${lib} -printf '%s %p\\n' | LC_ALL=C sort -t ' ' -k2;${rest} } 2>/dev/null`;
    // The budget is cut in one awk pass and the files move in one tar pipe: a process per file took
    // most of an hour for the bench's 720 MiB on a loaded machine.
    const upTo = `awk -v max=${fillMiB * MiB} '{ n += $1; if (n > max) exit; sub(/^[0-9]+ /, ""); print }'`;
    const fill = join(dir, 'usr/lib/fill');
    await mkdir(fill, { recursive: true });
    await sh('bash', ['-c', `cd /usr/lib && ${pick} | ${upTo} | tar -cf - --no-recursion --ignore-failed-read -T - 2>/dev/null | tar -C '${fill}' -xmf - --no-same-owner`]);
  }
  return osRelease;
}

async function buildDiskUncached(out: string, r: DiskRecipe): Promise<BuiltDisk> {
  const lba = r.lbaSize ?? 512;
  const disk = join(out, 'disk.raw');
  const esp = r.espMiB ?? 34;
  const root = r.rootMiB ?? 48;
  const srv = r.srvMiB ?? 16;
  const layout: Layout[] = [];
  let at = 1;
  layout.push({ number: 1, startMiB: at, sizeMiB: esp, code: 'ef00', name: 'esp' });
  at += esp;
  layout.push({ number: 2, startMiB: at, sizeMiB: root, code: '8304', name: 'root' });
  at += root;
  layout.push({ number: 3, startMiB: at, sizeMiB: srv, code: '8306', name: 'srv' });
  at += srv;
  if (r.zeroMiB) {
    layout.push({ number: 4, startMiB: at, sizeMiB: r.zeroMiB, code: '8300', name: 'data' });
    at += r.zeroMiB;
  }
  const diskMiB = at + 1; // room for the backup GPT
  await sh('truncate', ['-s', `${diskMiB}M`, disk]);

  // ESP: FAT with a boot loader path and a loader entry, written with mtools (no mount needed).
  const espImg = join(out, 'esp.img');
  await sh('truncate', ['-s', `${esp}M`, espImg]);
  await sh('mkfs.vfat', ['-n', 'ESP', ...(lba === 4096 ? ['-S', '4096'] : []), espImg]);
  await sh('mmd', ['-i', espImg, '::/EFI', '::/EFI/BOOT', '::/loader', '::/loader/entries']);
  const bootBin = join(out, 'BOOTX64.EFI');
  await writeFile(bootBin, createHash('sha256').update('boot').digest().toString('base64').repeat(2000));
  await sh('mcopy', ['-i', espImg, bootBin, '::/EFI/BOOT/BOOTX64.EFI']);
  const entry = join(out, 'fixture.conf');
  await writeFile(entry, 'title Fixture Linux\nlinux /vmlinuz\noptions root=PARTLABEL=root ro\n');
  await sh('mcopy', ['-i', espImg, entry, '::/loader/entries/fixture.conf']);
  layout[0]!.image = espImg;

  // Root: ext4 populated from a directory tree, optionally smaller than its partition.
  const tree = join(out, 'rootfs');
  const osRelease = await makeRootTree(tree, r.rootFillMiB ?? 0, r.rootFillLibrariesOnly);
  await writeFile(join(out, 'os-release.txt'), osRelease);
  const rootImg = join(out, 'root.img');
  const rootFs = r.rootFsMiB ?? root;
  await sh('mkfs.ext4', ['-q', '-F', '-L', 'root', '-b', '4096', '-d', tree, rootImg, `${rootFs}M`]);
  layout[1]!.image = rootImg;

  const srvTree = join(out, 'srvfs');
  await mkdir(join(srvTree, 'www'), { recursive: true });
  await writeFile(join(srvTree, 'www/index.html'), '<h1>fixture</h1>\n');
  const srvImg = join(out, 'srv.img');
  await sh('mkfs.ext4', ['-q', '-F', '-L', 'srv', '-d', srvTree, srvImg, `${srv}M`]);
  layout[2]!.image = srvImg;

  if (lba === 512) {
    const args: string[] = [];
    for (const p of layout) {
      args.push('-n', `${p.number}:${(p.startMiB * MiB) / 512}:+${p.sizeMiB}M`, '-t', `${p.number}:${p.code}`, '-c', `${p.number}:${p.name}`);
    }
    await sh('sgdisk', [...args, disk]);
  } else {
    // sgdisk assumes 512-byte sectors on image files; util-linux fdisk takes -b 4096.
    const types: Record<string, string> = {
      ef00: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
      '8304': '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
      '8306': '3B8F8425-20E0-4F3B-907F-1A25A76F98E8',
      '8300': '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
    };
    let script = 'g\n';
    for (const p of layout) {
      script += `n\n${p.number}\n${(p.startMiB * MiB) / 4096}\n+${p.sizeMiB * 256 - 1}\n`;
    }
    // Types after creation, via the expert-free 't' with GUIDs; names are left empty.
    for (const p of layout) script += `t\n${p.number}\n${types[p.code]}\n`;
    script += 'w\n';
    await sh('fdisk', ['-b', '4096', disk], { input: script });
  }
  for (const p of layout) {
    if (p.image) await placeImage(disk, p.image, p.startMiB * MiB);
  }
  if (r.zeroMiB) {
    // A small marker at the start, zeros elsewhere: GiB-scale logical size, tiny compressed.
    const marker = join(out, 'zero-head.bin');
    await writeFile(marker, Buffer.from('mostly-zero partition\n'));
    await placeImage(disk, marker, layout[3]!.startMiB * MiB);
  }
  await Promise.all([rm(espImg), rm(rootImg), rm(srvImg), rm(tree, { recursive: true }), rm(srvTree, { recursive: true })]);
  return { dir: out, disk, osRelease, recipe: r };
}

/**
 * Cached builds are keyed by the code that made them (the writer and this
 * file), so a change to cosi-pack never leaves a test reading a stale archive.
 */
const CACHE_VERSION = codeHash([join(REPO, 'dist', 'shared'), fileURLToPath(import.meta.url)]);

function codeHash(paths: string[]): string {
  const h = createHash('sha256');
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const name of readdirSync(p).sort()) walk(join(p, name));
    } else if (p.endsWith('.js')) {
      h.update(p).update(readFileSync(p));
    }
  };
  paths.forEach(walk);
  return h.digest('hex').slice(0, 16);
}

async function cached<T>(key: string, build: (dir: string) => Promise<T>): Promise<string> {
  const root = join(tmpdir(), 'cosi-stream-fixtures');
  await mkdir(root, { recursive: true });
  const final = join(root, key);
  if (existsSync(join(final, '.done'))) return final;
  const work = await mkdtemp(join(root, `.${key}-`));
  try {
    await build(work);
    await writeFile(join(work, '.done'), '');
    try {
      await rename(work, final);
    } catch {
      // Another process published the same build first: use theirs.
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return final;
}

function keyOf(kind: string, obj: unknown): string {
  return `${kind}-${createHash('sha256').update(CACHE_VERSION + JSON.stringify(obj)).digest('hex').slice(0, 16)}`;
}

export async function buildDisk(r: DiskRecipe): Promise<BuiltDisk> {
  const dir = await cached(keyOf(`disk-${r.name}`, r), async (w) => void (await buildDiskUncached(w, r)));
  return { dir, disk: join(dir, 'disk.raw'), osRelease: await readFile(join(dir, 'os-release.txt'), 'utf8').catch(() => ''), recipe: r };
}

export interface PackedFixture extends BuiltDisk {
  cosi: string;
}

/** A disk packed by our cosi-pack CLI (the real command, as a publisher runs it). */
export async function packedDisk(r: DiskRecipe, packArgs: string[] = []): Promise<PackedFixture> {
  const d = await buildDisk(r);
  const dir = await cached(keyOf(`cosi-${r.name}`, { r, packArgs }), async (w) => {
    await sh(process.execPath, [PACK_CLI, d.disk, '-o', join(w, `${r.name}.cosi`), '-q', '--packages', await packagesFile(w), ...packArgs]);
  });
  return { ...d, cosi: join(dir, `${r.name}.cosi`) };
}

async function packagesFile(dir: string): Promise<string> {
  const p = join(dir, 'packages.txt');
  await writeFile(p, 'bash 5.2.15 1.fx1 x86_64\ncoreutils 9.1 2.fx1 x86_64\nfixture-release 1.0 1 noarch\n');
  return p;
}

/** The standard small disk most tests use. */
export const SMALL: DiskRecipe = { name: 'small' };
export const SMALL_4K: DiskRecipe = { name: 'small4k', lbaSize: 4096 };
/** A root with megabytes of real libraries: enough compressed bytes for cuts, resumes and "never read image data" checks. */
export const FILLED: DiskRecipe = { name: 'clientfill', rootFillMiB: 6 };
export const SHRINKABLE: DiskRecipe = { name: 'shrinkable', rootMiB: 64 };
export const PRESHRUNK: DiskRecipe = { name: 'preshrunk', rootMiB: 64, rootFsMiB: 40 };
export const SPARSE_BIG: DiskRecipe = { name: 'sparsebig', zeroMiB: 1024 };

/** Extract a COSI file's members into a directory (with GNU tar, a foreign reader). */
export async function extract(cosi: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await sh('tar', ['-xf', cosi, '-C', dir]);
}

export type ForeignFormat = 'gnu-tar-gnu' | 'gnu-tar-pax' | 'python-pax' | 'python-gnu';

export interface ForeignOptions {
  format: ForeignFormat;
  /** Move images into images/<subdir>/ (and rewrite metadata to match). */
  subdir?: string;
  /** Add an unknown extra file after the images. */
  extraFile?: boolean;
  /** Append bytes after the end-of-archive marker. */
  trailing?: number;
  /** Give every image a name over 100 bytes (PAX path records / GNU long names). */
  longNames?: boolean;
}

/**
 * Re-archive a packed COSI with another writer. Metadata is rewritten only
 * when paths change; the images' bytes stay the same, so hashes still hold.
 */
export async function foreignArchive(src: PackedFixture, o: ForeignOptions): Promise<string> {
  const dir = await cached(keyOf(`foreign-${src.recipe.name}`, o), async (w) => {
    const x = join(w, 'x');
    await extract(src.cosi, x);
    const meta = JSON.parse(await readFile(join(x, 'metadata.json'), 'utf8'));
    const rename_ = (p: string) => {
      let base = p.slice('images/'.length);
      if (o.longNames) base = `${'l'.repeat(110)}-${base}`;
      return o.subdir ? `images/${o.subdir}/${base}` : `images/${base}`;
    };
    const order: string[] = meta.disk.gptRegions.map((g: { image: { path: string } }) => g.image.path);
    if (o.subdir || o.longNames) {
      for (const p of order) {
        const np = rename_(p);
        await mkdir(dirname(join(x, np)), { recursive: true });
        await rename(join(x, p), join(x, np));
      }
      const fix = (img: { path: string }) => void (img.path = rename_(img.path));
      for (const g of meta.disk.gptRegions) fix(g.image);
      for (const f of meta.images) {
        fix(f.image);
        if (f.verity) fix(f.verity.image);
      }
      await writeFile(join(x, 'metadata.json'), JSON.stringify(meta, null, 2));
    }
    const members = ['cosi-marker', 'metadata.json', ...order.map((p) => ((o.subdir || o.longNames) ? rename_(p) : p))];
    if (o.extraFile) {
      await writeFile(join(x, 'EXTRA-NOTES.txt'), 'an extra file a reader must ignore\n');
      members.push('EXTRA-NOTES.txt');
    }
    const out = join(w, 'out.cosi');
    if (o.format.startsWith('gnu-tar')) {
      const fmt = o.format === 'gnu-tar-gnu' ? 'gnu' : 'pax';
      await sh('tar', [`--format=${fmt}`, '--no-recursion', '--owner=0', '--group=0', '-cf', out, '-C', x, ...members]);
    } else {
      const fmt = o.format === 'python-pax' ? 'PAX_FORMAT' : 'GNU_FORMAT';
      const py = `import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w', format=tarfile.${fmt}) as t:\n    for m in sys.argv[3:]:\n        t.add(sys.argv[2] + '/' + m, arcname=m, recursive=False)\n`;
      await sh('python3', ['-c', py, out, x, ...members]);
    }
    if (o.trailing) {
      const { appendFile } = await import('node:fs/promises');
      await appendFile(out, Buffer.alloc(o.trailing, 0xab));
    }
    await rm(x, { recursive: true });
  });
  return join(dir, 'out.cosi');
}

/** Member offsets as Python's tarfile sees them: an independent oracle for our walker. */
export async function pythonTarOffsets(path: string): Promise<Array<{ name: string; offset: number; offsetData: number; size: number }>> {
  const py = `import sys, json, tarfile\nwith tarfile.open(sys.argv[1], 'r:') as t:\n    print(json.dumps([dict(name=m.name, offset=m.offset, offsetData=m.offset_data, size=m.size) for m in t.getmembers()]))\n`;
  return JSON.parse(await sh('python3', ['-c', py, path]));
}

/** True when [aOff, aOff+len) of a equals [bOff, bOff+len) of b. */
export async function sameBytes(a: string, aOff: number, b: string, bOff: number, len: number): Promise<boolean> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    const CH = 4 << 20;
    const ba = Buffer.alloc(CH);
    const bb = Buffer.alloc(CH);
    for (let done = 0; done < len; ) {
      const n = Math.min(CH, len - done);
      const ra = await fa.read(ba, 0, n, aOff + done);
      const rb = await fb.read(bb, 0, n, bOff + done);
      if (ra.bytesRead !== n || rb.bytesRead !== n) return false;
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
      done += n;
    }
    return true;
  } finally {
    await fa.close();
    await fb.close();
  }
}
