/**
 * Shared by the page tests: a catalog of real archives for the page to show
 * (the small fixtures, a "rich" one with HTML-special os-release text, many
 * packages and systemd-boot entries, a non-COSI file, and a fleet of copies
 * for the paging figures), and the server started on it.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packedDisk, SMALL, SMALL_4K, type PackedFixture } from './fixtures.js';
import { tempCatalog } from './server-helpers.js';
import { startServer, type RunningServer } from '../server/server.js';

const OS_RELEASE = 'NAME="Rich <b>Linux</b>"\nID=rich\nVERSION_ID="2.0"\nPRETTY_NAME="Rich <b>Linux</b> & <i>friends</i> 2.0"\nHOME_URL="https://example.invalid/?a=1&b=<2>"\n';
/** 300 packages, one with markup in its name. */
export const RICH_PACKAGES = [
  'bash 5.2.15 1.rich x86_64',
  'coreutils 9.1 2.rich x86_64',
  '<img-src-x> 1 1 noarch',
  ...Array.from({ length: 297 }, (_, i) => `lib-fixture-${String(i).padStart(3, '0')} 1.${i} ${i % 7} x86_64`),
];
const BOOTLOADER = {
  type: 'systemd-boot',
  systemdBoot: { entries: [{ type: 'uki-standalone', path: 'EFI/Linux/rich-6.1.efi', cmdline: 'root=PARTLABEL=root ro quiet', kernel: '6.1.0-rich' }] },
};

/** The rich fixture: inputs under a folder named by their content, so the fixture cache stays right. */
export async function richArchive(): Promise<PackedFixture> {
  const inputs = [OS_RELEASE, RICH_PACKAGES.join('\n') + '\n', JSON.stringify(BOOTLOADER)];
  const dir = join(tmpdir(), `cosi-page-inputs-${createHash('sha256').update(inputs.join('\0')).digest('hex').slice(0, 12)}`);
  await mkdir(dir, { recursive: true });
  const [os, pkgs, boot] = ['os-release', 'packages.txt', 'bootloader.json'].map((n) => join(dir, n));
  await Promise.all([writeFile(os!, inputs[0]!), writeFile(pkgs!, inputs[1]!), writeFile(boot!, inputs[2]!)]);
  return packedDisk({ ...SMALL, name: 'rich' }, ['--os-release', os!, '--packages', pkgs!, '--bootloader', boot!]);
}

export interface PageCatalog {
  dir: string;
  srv: RunningServer;
  /** Every archive listed; valid ones sort first. */
  count: number;
  close: () => Promise<void>;
}

/** small, lab/small4k, rich, broken/notes (not COSI) and `fleet` copies as fleet/node-NNNN. */
export async function pageCatalog(fleet: number, log?: (line: Record<string, unknown>) => void): Promise<PageCatalog> {
  const [a, b, rich] = await Promise.all([packedDisk(SMALL), packedDisk(SMALL_4K), richArchive()]);
  const cat = await tempCatalog({ 'small.cosi': a.cosi, 'lab/small4k.cosi': b.cosi, 'rich.cosi': rich.cosi });
  await mkdir(join(cat.dir, 'broken'));
  await writeFile(join(cat.dir, 'broken/notes.cosi'), '<html><body>not an archive</body></html>\n');
  if (fleet > 0) await mkdir(join(cat.dir, 'fleet'), { recursive: true });
  for (let i = 0; i < fleet; i++) await copyFile(a.cosi, join(cat.dir, 'fleet', `node-${String(i).padStart(4, '0')}.cosi`));
  const srv = await startServer({ root: cat.dir, port: 0, log: log ?? false, rescanSeconds: 0, watch: false });
  return {
    dir: cat.dir,
    srv,
    count: fleet + 4,
    close: async () => {
      await srv.close(1000);
      await cat.cleanup();
    },
  };
}
