/**
 * Netboot proven in a virtual machine (`npm run test:netboot`, not part of
 * `npm test`: it needs qemu-system-x86, ipxe-qemu, busybox-static and a
 * linux-image-amd64 kernel, which .ci/run installs). A QEMU guest with no
 * disk contents PXE-boots Debian's iPXE ROM, which fetches
 * /v1/images/{id}/boot.ipxe from cosi-server; the script boots the installer
 * kernel and initramfs that the same server serves from --netboot-dir, and
 * the installer writes the image to the blank virtio disk and powers off.
 * Then the host checks the disk: sgdisk -v passes, every partition is
 * byte-identical to the source disk's, and the backup GPT sits at the end of
 * this (larger) disk. Both installer paths run, cosi-fetch and the curl + dd
 * fallback over plan.txt; and for each, an archive corrupted on the server
 * must stop the install with a clear error and leave no partition table.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseGpt } from '../shared/disk/gpt.js';
import { startServer, type RunningServer } from '../server/server.js';
import { packedDisk, pythonTarOffsets, sameBytes, sh, type DiskRecipe, type PackedFixture } from './fixtures.js';
import { debianKernel, installerInitramfs, type Initramfs, type Installer, type Kernel } from './netboot-initramfs.js';
import { bootVm, SERVER_IN_GUEST, type BootResult } from './netboot-qemu.js';

/** Small, so each boot stays well inside its five minutes of emulated time. */
const NETBOOT: DiskRecipe = { name: 'netboot', espMiB: 8, rootMiB: 16, srvMiB: 8 };
const BOOT_TIMEOUT_MS = 5 * 60_000;
/** The target disk is larger than the source: the backup GPT must move to its real end. */
const EXTRA_DISK_BYTES = 3 << 20;
const MEM_MIB: Record<Installer, number> = { 'cosi-fetch': 1024, curl: 512 };

let work: string;
let kernel: Kernel;
let source: PackedFixture;
const initrds = new Map<Installer, Initramfs>();

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cosi-netboot-'));
  kernel = await debianKernel();
  source = await packedDisk(NETBOOT);
  await mkdir(join(work, 'catalog', 'os'), { recursive: true });
  await mkdir(join(work, 'netboot'));
  await copyFile(source.cosi, join(work, 'catalog', 'os', 'netboot.cosi'));
  await corruptCopy(source.cosi, join(work, 'catalog', 'os', 'broken.cosi'));
  await symlink(kernel.vmlinuz, join(work, 'netboot', 'vmlinuz'));
  for (const installer of ['cosi-fetch', 'curl'] as const) {
    const img = await installerInitramfs(kernel, installer);
    initrds.set(installer, img);
    await symlink(img.path, join(work, 'netboot', `initrd-${installer}.img`));
  }
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/**
 * The archive with bytes flipped in the middle of its largest partition
 * image: metadata.json (and so the pinned cosi.sha384) is untouched, so only
 * checking the image's bytes can catch it.
 */
async function corruptCopy(from: string, to: string): Promise<void> {
  await copyFile(from, to);
  const members = (await pythonTarOffsets(from)).filter((m) => m.name !== 'metadata.json');
  const big = members.reduce((a, b) => (b.size > a.size ? b : a));
  const fh = await open(to, 'r+');
  try {
    const at = big.offsetData + Math.floor(big.size / 2);
    const buf = Buffer.alloc(64);
    await fh.read(buf, 0, buf.length, at);
    for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0xa5;
    await fh.write(buf, 0, buf.length, at);
  } finally {
    await fh.close();
  }
}

interface Served {
  server: RunningServer;
  /** Host milliseconds (performance.now) when each boot file's request completed. */
  fetched: Map<string, number>;
}

/** cosi-server as a user runs it for netboot, with the installer of one path. */
async function serve(installer: Installer): Promise<Served> {
  const fetched = new Map<string, number>();
  const server = await startServer({
    root: join(work, 'catalog'),
    port: 0,
    rescanSeconds: 0,
    watch: false,
    netbootDir: join(work, 'netboot'),
    ipxeKernel: '/netboot/vmlinuz',
    ipxeInitrd: `/netboot/initrd-${installer}.img`,
    ipxeCmdline: 'console=ttyS0,115200n8 panic=-1 cosi.then=poweroff',
    ipxeDisk: '/dev/vda',
    log: (line) => {
      const url = typeof line['url'] === 'string' ? line['url'] : '';
      if (/boot\.ipxe$|^\/netboot\//.test(url) && !fetched.has(url)) fetched.set(url, performance.now());
    },
  });
  return { server, fetched };
}

/** A blank disk a little larger than the source disk. */
async function blankDisk(name: string): Promise<string> {
  const disk = join(work, `${name}.raw`);
  const fh = await open(disk, 'w');
  try {
    await fh.truncate((await diskSize(source.disk)) + EXTRA_DISK_BYTES);
  } finally {
    await fh.close();
  }
  return disk;
}

interface Boot extends BootResult {
  disk: string;
  serialLog: string;
}

async function netboot(t: TestContext, installer: Installer, id: string): Promise<Boot> {
  const name = `${installer}-${id.replace(/\W/g, '_')}`;
  const disk = await blankDisk(name);
  const serialLog = join(work, `${name}.serial.log`);
  const { server, fetched } = await serve(installer);
  const t0 = performance.now();
  let r: BootResult;
  try {
    r = await bootVm({ port: server.port, bootPath: `/v1/images/${id}/boot.ipxe`, disk, serialLog, timeoutMs: BOOT_TIMEOUT_MS, memMiB: MEM_MIB[installer] });
  } finally {
    await server.close(500);
  }
  const at = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`);
  const served = (path: string) => at(fetched.has(path) ? fetched.get(path)! - t0 : undefined);
  const img = initrds.get(installer)!;
  t.diagnostic(
    `${installer} ${id}: ${at(r.ms)} in all; boot.ipxe ${served(`/v1/images/${id}/boot.ipxe`)}, kernel ${served('/netboot/vmlinuz')}, ` +
      `initramfs (${(img.bytes / 2 ** 20).toFixed(1)} MiB${img.buildMs ? `, built in ${at(img.buildMs)}` : ', cached'}) ${served(`/netboot/initrd-${installer}.img`)}, ` +
      `kernel console ${at(r.marks['console'])}, /init ${at(r.marks['init'])}, network ${at(r.marks['network'])}, install ${at(r.marks['install'])}, ` +
      `done ${at(r.marks['done'])}, power off ${at(r.ms)}${r.timedOut ? ' (TIMED OUT: killed)' : ''}`,
  );
  return { ...r, disk, serialLog };
}

/** Run checks on a boot; on failure, print its serial console first. */
async function checked(boot: Boot, fn: () => Promise<void>): Promise<void> {
  try {
    assert.ok(!boot.timedOut, `the VM did not power off within ${BOOT_TIMEOUT_MS / 60_000} minutes`);
    assert.equal(boot.code, 0, 'QEMU exits 0 when the guest powers off');
    await fn();
  } catch (err) {
    process.stderr.write(`\n---- serial console (${boot.serialLog}) ----\n${await readFile(boot.serialLog, 'utf8').catch(() => boot.serial)}\n---- end of serial console ----\n`);
    throw err;
  }
}

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function diskSize(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

/** The installed disk: valid GPT, partitions identical to the source, backup header on the last LBA. */
async function assertInstalled(disk: string): Promise<void> {
  const verify = await sh('sgdisk', ['-v', disk]);
  assert.match(verify, /No problems found/, verify);
  const src = parseGpt(await readAt(source.disk, 0, 64 * 1024));
  const got = parseGpt(await readAt(disk, 0, 64 * 1024));
  assert.equal(got.partitions.length, src.partitions.length);
  assert.equal(got.diskGuid, src.diskGuid);
  for (const p of src.partitions) {
    const q = got.partitions.find((x) => x.number === p.number);
    assert.ok(q && q.offset === p.offset && q.size === p.size && q.partGuid === p.partGuid, `partition ${p.number} has its source entry`);
    assert.ok(await sameBytes(source.disk, p.offset, disk, p.offset, p.size), `partition ${p.number} (${p.name}) is byte-identical to the source`);
  }
  const lastLba = (await diskSize(disk)) / src.lbaSize - 1;
  assert.equal(got.backupLba, lastLba, 'the primary header points at the last LBA of this disk');
  const backup = await readAt(disk, lastLba * src.lbaSize, src.lbaSize);
  assert.equal(backup.subarray(0, 8).toString('latin1'), 'EFI PART', 'a GPT header on the last LBA');
  assert.equal(Number(backup.readBigUInt64LE(24)), lastLba, 'the backup header says it is on the last LBA');
  assert.equal(Number(backup.readBigUInt64LE(32)), 1, 'and that the primary is on LBA 1');
}

/** No partition table anywhere a reader would look: no MBR signature, no GPT header at LBA 1 or the last LBA. */
async function assertNoPartitionTable(disk: string): Promise<void> {
  const head = await readAt(disk, 0, 8192);
  assert.notEqual(head.readUInt16LE(510), 0xaa55, 'no MBR boot signature');
  assert.notEqual(head.subarray(512, 520).toString('latin1'), 'EFI PART', 'no GPT header at LBA 1 (512)');
  assert.notEqual(head.subarray(4096, 4104).toString('latin1'), 'EFI PART', 'no GPT header at LBA 1 (4096)');
  const tail = await readAt(disk, (await diskSize(disk)) - 512, 512);
  assert.notEqual(tail.subarray(0, 8).toString('latin1'), 'EFI PART', 'no backup GPT header');
  const print = await sh('sh', ['-c', 'sgdisk -p "$1" 2>&1; true', 'sh', disk]);
  assert.doesNotMatch(print, /^\s+1\s+\d+/m, `sgdisk lists no partition:\n${print}`);
}

describe('netboot in a VM: iPXE -> boot.ipxe -> installer -> disk', { concurrency: 1 }, () => {
  test('cosi-fetch in the initramfs installs the image', { timeout: BOOT_TIMEOUT_MS + 60_000 }, async (t) => {
    const boot = await netboot(t, 'cosi-fetch', 'os/netboot');
    await checked(boot, async () => {
      assert.match(boot.serial, /cosi-install: streaming http:\/\/10\.0\.2\.100\/cosi\/os\/netboot\.cosi to \/dev\/vda with cosi-fetch/);
      assert.match(boot.serial, /cosi-fetch: disk of .* written to \/dev\/vda \(3 partitions\)/);
      assert.match(boot.serial, /cosi-init: install finished/);
      await assertInstalled(boot.disk);
    });
  });

  test('the curl + dd fallback installs the image from plan.txt', { timeout: BOOT_TIMEOUT_MS + 60_000 }, async (t) => {
    const boot = await netboot(t, 'curl', 'os/netboot');
    await checked(boot, async () => {
      assert.match(boot.serial, new RegExp(`cosi-install: fetching the install plan http://${SERVER_IN_GUEST.replaceAll('.', '\\.')}/v1/images/os/netboot/plan\\.txt`));
      assert.match(boot.serial, /cosi-install: writing partition 2: \d+ bytes at offset \d+/);
      assert.match(boot.serial, /cosi-install: writing primary-gpt/);
      assert.doesNotMatch(boot.serial, /cosi-fetch/, 'the curl initramfs has no cosi-fetch');
      assert.match(boot.serial, /cosi-init: install finished/);
      await assertInstalled(boot.disk);
    });
  });

  test('cosi-fetch: a corrupted archive stops the install with a clear error and no partition table', { timeout: BOOT_TIMEOUT_MS + 60_000 }, async (t) => {
    const boot = await netboot(t, 'cosi-fetch', 'os/broken');
    await checked(boot, async () => {
      assert.match(boot.serial, /cosi-fetch: error: .*(SHA-384 mismatch|zstd|corrupt)/i);
      assert.match(boot.serial, /cosi-init: install FAILED \(exit [45]\)/);
      await assertNoPartitionTable(boot.disk);
    });
  });

  test('curl + dd: a corrupted archive stops the install with a clear error and no partition table', { timeout: BOOT_TIMEOUT_MS + 60_000 }, async (t) => {
    const boot = await netboot(t, 'curl', 'os/broken');
    await checked(boot, async () => {
      assert.match(boot.serial, /cosi-install: error: download of partition \d+ failed or was cut short/);
      assert.match(boot.serial, /cosi-init: install FAILED \(exit 3\)/);
      assert.doesNotMatch(boot.serial, /writing primary-gpt/, 'the partition table is never written');
      await assertNoPartitionTable(boot.disk);
    });
  });
});
