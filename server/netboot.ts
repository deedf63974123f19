/**
 * Network installs: the iPXE script that boots the installer environment
 * for one image, and the install plan that deploy/netboot/install.sh's
 * curl + dd fallback follows. Both carry absolute URLs, built from
 * --public-url or else from the request's Host, so they work unchanged
 * from a DHCP filename, a chain command or `curl | sh`-style tooling.
 * With --netboot-dir, the installer's kernel and initramfs themselves are
 * served at /netboot/NAME, so one server is all a network install needs.
 */
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Hono } from 'hono';
import { streamRange } from '../shared/transport/handle-source.js';
import { CosiError } from '../shared/errors.js';
import { baseUrl } from './http/base-url.js';
import { getCounted, type AppDeps, type AppEnv, type NetbootConfig } from './http/env.js';
import { transfer } from './http/transfer.js';
import { HttpError, notFound } from './errors.js';
import { encodePath } from './catalog/ids.js';
import type { ArchiveView, IndexRecord } from './catalog/indexer.js';

function archiveOf(r: IndexRecord): ArchiveView {
  if (!r.archive) throw new HttpError(422, 'COSI_ERR_INVALID', `${r.id} is not a readable COSI file: ${r.reason}`);
  return r.archive;
}

/** An absolute URL (http, https, tftp...), or a path on this server (kept under a --public-url prefix). */
function resolveOn(base: string, v: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `${base}${v.startsWith('/') ? '' : '/'}${v}`;
}

/** Control characters would end an iPXE comment line early. */
function commentSafe(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, '?');
}

export function ipxeScript(r: IndexRecord, base: string, cfg: NetbootConfig): string {
  const view = archiveOf(r);
  const pretty = /^PRETTY_NAME=["']?(.*?)["']?$/m.exec(typeof view.metadata.osRelease === 'string' ? view.metadata.osRelease : '')?.[1];
  const words = [
    'initrd=initrd.img',
    ...(cfg.cmdline ? [cfg.cmdline] : []),
    `cosi.url=${base}/cosi/${encodePath(r.relPath)}`,
    `cosi.sha384=${view.metadataSha384}`,
    ...(cfg.disk ? [`cosi.disk=${cfg.disk}`] : []),
  ];
  return [
    '#!ipxe',
    `# Network install of ${commentSafe(r.id)}${pretty ? ` (${commentSafe(pretty)})` : ''}, served by cosi-server.`,
    '# The initramfs runs an installer like deploy/netboot/install.sh, which reads the cosi.* words;',
    '# cosi.sha384 pins metadata.json, so the install refuses any other image.',
    ...(cfg.disk ? [] : ['# No cosi.disk= is configured (--ipxe-disk): the installer stops until one is given.']),
    '',
    `kernel ${resolveOn(base, cfg.kernel)} ${words.join(' ')} || goto failed`,
    `initrd --name initrd.img ${resolveOn(base, cfg.initrd)} || goto failed`,
    'boot || goto failed',
    '',
    ':failed',
    `echo Network install of ${encodePath(r.id)} failed; dropping to the iPXE shell.`,
    'shell',
    '',
  ].join('\n');
}

/**
 * The install plan (format `cosi-plan 1`, documented in install.sh): the
 * metadata to pin, the disk size, and each region's disk offset, size,
 * image hash and decompressing URL. The primary GPT is listed first here;
 * the installer writes it last.
 */
export function installPlan(r: IndexRecord, base: string): string {
  const view = archiveOf(r);
  const disk = view.metadata.disk;
  const regions = disk?.gptRegions;
  if (!disk || !regions || !regions.some((g) => g.type === 'primary-gpt')) {
    throw new HttpError(422, 'COSI_ERR_UNSUPPORTED', `${r.id} has no disk layout (disk.gptRegions with a primary-gpt, COSI 1.2+): it cannot be installed region by region`);
  }
  const img = `${base}/v1/images/${encodePath(r.id)}`;
  const lines = ['cosi-plan 1', `metadata ${view.metadataSha384} ${img}/metadata.json`, `disk ${disk.size} ${disk.lbaSize}`];
  for (const g of regions) {
    const sha = g.image.sha384?.toLowerCase();
    if (!sha) throw new HttpError(422, 'COSI_ERR_INVALID', `${r.id}: ${g.image.path} has no sha384 in metadata.json`);
    if (g.type === 'primary-gpt') {
      lines.push(`region primary-gpt 0 ${g.image.uncompressedSize} ${sha} ${img}/partitions/primary-gpt?decompress=1`);
      continue;
    }
    const p = view.partitions.find((x) => x.info.number === g.number && x.info.path === g.image.path);
    const gp = p?.info.gptPartition;
    if (!p?.entry || !gp || g.number === undefined) {
      throw new HttpError(422, 'COSI_ERR_INVALID', `${r.id}: region ${g.image.path} has no GPT entry ${g.number ?? '(no number)'} or no tar entry`);
    }
    lines.push(`region ${g.number} ${gp.firstLba * disk.lbaSize} ${g.image.uncompressedSize} ${sha} ${img}/partitions/${g.number}?decompress=1`);
  }
  return lines.join('\n') + '\n';
}

/** A file name in --netboot-dir: no paths, no hidden files. */
const NETBOOT_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** Refuses to start on a --netboot-dir that is not a readable directory. */
export async function checkNetbootDir(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new CosiError('COSI_ERR_USAGE', `--netboot-dir ${dir} is not a directory; give the folder holding the installer's kernel and initramfs`);
}

/**
 * GET/HEAD /netboot/NAME: a regular file of `dir`, read at request time (a
 * rebuilt initramfs is served without a restart), with ranges and a strong
 * ETag from its size, mtime and inode like the archive routes.
 */
export function netbootFileRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  getCounted(app, '/netboot/:name', 'netboot', async (c) => {
    const dir = deps.netbootDir;
    if (!dir) throw new HttpError(404, 'NOT_CONFIGURED', '/netboot/ is not configured on this server: start it with --netboot-dir DIR');
    const name = c.req.param('name');
    // One open handle for the whole answer, and its fstat for the headers: a rebuild that renames a new
    // initramfs into place mid-download cannot mix its bytes into the old ETag and length.
    const fh = NETBOOT_NAME.test(name) ? await open(join(dir, name), 'r').catch(() => undefined) : undefined;
    try {
      const st = await fh?.stat();
      if (!fh || !st?.isFile()) throw notFound(`no file ${JSON.stringify(name)} in --netboot-dir`);
      return await transfer(c, deps, {
        size: st.size,
        etag: `"nb-${st.ino.toString(16)}-${st.size.toString(16)}-${Math.trunc(st.mtimeMs).toString(16)}"`,
        lastModified: st.mtime,
        contentType: 'application/octet-stream',
        headers: { 'Cache-Control': 'no-cache' },
        open: (start, end) => streamRange(fh, start, end - start + 1),
        file: { fd: fh.fd, offset: 0 },
      });
    } finally {
      await fh?.close();
    }
  });
  return app;
}
