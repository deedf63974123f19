/**
 * The detail view of one image: every fact the index holds, in full: the
 * archive and disk, the whole metadata.json SHA-384 and each partition's,
 * osRelease, the bootloader and its entries, the package list with a search
 * box, the validation findings, and the commands for the disk, inspect and
 * each partition.
 */
import { html, raw } from 'hono/html';
import type { CosiMetadata, PartitionInfo } from '../../shared/format/metadata.js';
import type { IndexRecord } from '../catalog/indexer.js';
import { parseOsRelease, summarize, type ImageSummary, type PartitionSummary } from '../summary.js';
import { diskCommand, inspectCommand, partitionCommand } from './commands.js';
import { badges, copyable, humanBytes, ratio, verifiedBadge } from './parts.js';

function hash(hex: string, label: string) {
  return copyable(hex, label, 'hash');
}

const when = (iso: string) => `${iso.replace('T', ' ').slice(0, 19)} UTC`;

function overview(origin: string, img: ImageSummary) {
  const disk = diskCommand(origin, img);
  return html`<section class="card detail" aria-labelledby="title">
  <div class="head">
    <div class="title">
      <h2 id="title">${img.prettyName ?? img.id}</h2>
      <div class="id">${img.id}</div>
      ${badges(img)}
    </div>
    <div class="links">
      <a href="${img.rawUrl}">download .cosi</a>
      ${img.metadataSha384 ? html`<a href="${img.metadataUrl}">metadata.json</a>` : ''}
      <a href="${img.url}">JSON</a>
      ${img.valid ? html`<a href="${`${img.url}/plan.txt`}">install plan</a>` : ''}
    </div>
  </div>
  <dl class="kv">
    <dt>Archive</dt><dd>${humanBytes(img.size)} (${img.size.toLocaleString('en-US')} bytes), modified ${when(img.mtime)}</dd>
    ${img.disk ? html`<dt>Disk</dt><dd>${humanBytes(img.disk.size)}, ${img.disk.lbaSize}-byte sectors</dd>` : ''}
    ${img.version ? html`<dt>COSI version</dt><dd>${img.version}</dd>` : ''}
    ${img.cosiId ? html`<dt>COSI id</dt><dd class="mono">${img.cosiId}</dd>` : ''}
    ${img.osArch ? html`<dt>Architecture</dt><dd>${img.osArch}</dd>` : ''}
    ${img.uncompressedTotal ? html`<dt>Partitions</dt><dd>${img.partitions.length}: ${humanBytes(img.uncompressedTotal)} stored as ${humanBytes(img.compressedTotal)}</dd>` : ''}
    ${img.metadataSha384 ? html`<dt>metadata.json SHA-384</dt><dd>${hash(img.metadataSha384, 'the SHA-384 of metadata.json')}</dd>` : ''}
    <dt>Indexed</dt><dd>${when(img.indexedAt)}</dd>
  </dl>
  ${img.valid ? '' : html`<div class="reason"><b>Not valid:</b> ${img.reason ?? 'unknown reason'}${img.errors.length ? html`<ul>${img.errors.map((e) => html`<li>${e.message}</li>`)}</ul>` : ''}</div>`}
  ${img.warnings.length ? html`<div class="reason warnings"><b>Warnings:</b><ul>${img.warnings.map((w) => html`<li>${w.message}</li>`)}</ul></div>` : ''}
  ${img.partitions.length
    ? html`<div class="cmds">
    ${disk ? html`<span class="what">Whole disk</span>${copyable(disk, 'the command that fetches the whole disk')}` : ''}
    <span class="what">Inspect</span>${copyable(inspectCommand(origin, img), 'the inspect command')}
  </div>`
    : ''}
</section>`;
}

function partitionCard(origin: string, img: ImageSummary, p: PartitionSummary, info: PartitionInfo | undefined, meta: CosiMetadata | undefined, i: number) {
  const name = p.dpsName ?? p.role;
  const roothash = meta?.images?.find((f) => f?.image?.path === p.path)?.verity?.roothash;
  return html`<article class="part-card" aria-labelledby="${`p${i}`}">
    <h3 id="${`p${i}`}">${p.number !== undefined ? `#${p.number} ` : ''}${name} <span class="muted">${p.mountPoint ?? ''}</span> ${verifiedBadge(p.verified)}</h3>
    <dl class="kv">
      <dt>Role</dt><dd>${p.role === 'verity-hash' ? `verity hash${info?.verityOf ? ` of ${info.verityOf}` : ''}` : p.role}</dd>
      ${p.partType ? html`<dt>Type GUID</dt><dd class="mono">${p.partType}</dd>` : ''}
      ${p.fsType ? html`<dt>Filesystem</dt><dd>${p.fsType}${p.fsUuid ? html` <span class="mono muted">${p.fsUuid}</span>` : ''}</dd>` : ''}
      <dt>Image</dt><dd class="mono">${p.path}</dd>
      <dt>Sizes</dt><dd>${humanBytes(p.compressedSize)} stored, ${humanBytes(p.uncompressedSize)} original${p.partitionSize !== undefined ? `, partition ${humanBytes(p.partitionSize)}` : ''}${p.shrunk ? html` <span class="badge warn">shrunk</span>` : ''}</dd>
      <dt>Ratio</dt><dd>${ratio(p.compressedSize, p.uncompressedSize)}</dd>
      <dt>SHA-384</dt><dd>${p.sha384 ? hash(p.sha384, `the SHA-384 of ${name}`) : html`<span class="corrupt">none declared</span>`}</dd>
      ${roothash ? html`<dt>Verity root hash</dt><dd>${hash(roothash, `the verity root hash of ${name}`)}</dd>` : ''}
      ${p.dataOffset !== undefined ? html`<dt>In the archive</dt><dd>bytes ${p.dataOffset.toLocaleString('en-US')} to ${(p.dataOffset + (p.storedSize ?? 0)).toLocaleString('en-US')}</dd>` : ''}
      ${p.verified && p.verified !== 'ok' ? html`<dt>Verification</dt><dd class="corrupt">${p.verified}</dd>` : ''}
    </dl>
    ${copyable(partitionCommand(origin, img, p), `the command that fetches ${name}`)}
  </article>`;
}

function osReleaseSection(text: string) {
  const fields = Object.entries(parseOsRelease(text));
  return html`<section class="card detail" aria-labelledby="os-h">
  <h2 id="os-h">osRelease</h2>
  ${fields.length ? html`<dl class="kv">${fields.map(([k, v]) => html`<dt class="mono">${k}</dt><dd>${v}</dd>`)}</dl>` : html`<p class="kv muted">empty</p>`}
  ${text ? html`<details><summary>As written in metadata.json</summary><pre class="raw">${text}</pre></details>` : ''}
</section>`;
}

function bootloaderSection(meta: CosiMetadata) {
  const b = meta.bootloader;
  const entries = Array.isArray(b?.systemdBoot?.entries) ? b.systemdBoot.entries : [];
  return html`<section class="card detail" aria-labelledby="boot-h">
  <h2 id="boot-h">Bootloader</h2>
  <dl class="kv"><dt>Type</dt><dd>${b?.type ?? 'not declared'}</dd>${entries.length ? html`<dt>Entries</dt><dd>${entries.length}</dd>` : ''}</dl>
  ${entries.length
    ? html`<div class="scroll"><table>
      <caption class="sr-only">systemd-boot entries</caption>
      <thead><tr><th scope="col">Type</th><th scope="col">Path</th><th scope="col">Kernel</th><th scope="col">Command line</th></tr></thead>
      <tbody>${entries.map((e) => html`<tr><td>${String(e?.type ?? '')}</td><td class="mono">${String(e?.path ?? '')}</td><td class="mono">${String(e?.kernel ?? '')}</td><td class="mono">${String(e?.cmdline ?? '')}</td></tr>`)}</tbody>
    </table></div>`
    : ''}
</section>`;
}

/** Every package; `q` (the no-script search) keeps the rows holding each of its words. */
function packagesSection(meta: CosiMetadata, q: string) {
  const all = Array.isArray(meta.osPackages) ? meta.osPackages : [];
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  const cells = (p: (typeof all)[number]) => [p?.name, p?.version, p?.release, p?.arch].map((v) => (v === undefined || v === null ? '' : String(v)));
  const rows = all.map(cells).map((c) => ({ c, hit: words.every((w) => c.join(' ').toLowerCase().includes(w)) }));
  const shown = rows.filter((r) => r.hit).length;
  const count = shown === all.length ? `${all.length} packages` : `${shown} of ${all.length} packages`;
  return html`<section class="card detail" aria-labelledby="pkg-h">
  <h2 id="pkg-h">Packages</h2>
  <form class="pkgtools" role="search" method="get">
    <label for="pkgq">Search packages</label>
    <input id="pkgq" name="pkg" type="search" value="${q}" placeholder="name, version, arch…" autocomplete="off" aria-controls="pkgs" aria-describedby="pkgcount">
    <span id="pkgcount" class="count" aria-live="polite">${count}</span>
  </form>
  ${all.length
    ? html`<div class="pkgs" id="pkgs" tabindex="0" role="region" aria-label="Package list"><table>
      <thead><tr><th scope="col">Name</th><th scope="col">Version</th><th scope="col">Release</th><th scope="col">Arch</th></tr></thead>
      <tbody>${rows.map(({ c, hit }) => html`<tr${hit ? '' : raw(' hidden')}><td>${c[0]}</td><td class="mono">${c[1]}</td><td class="mono">${c[2]}</td><td>${c[3]}</td></tr>`)}</tbody>
    </table></div>`
    : html`<p class="kv muted">The metadata lists no packages.</p>`}
</section>`;
}

/** The whole view for one record; `pkg` is the package search as given in the URL. */
export function detailView(origin: string, r: IndexRecord, pkg: string) {
  const img = summarize(r);
  const meta = r.archive?.metadata;
  const infos = r.archive?.partitions.map((p) => p.info) ?? [];
  return html`<p class="crumb"><a href="/">← All images</a></p>
${overview(origin, img)}
${img.partitions.length
  ? html`<section class="card detail" aria-labelledby="parts-h">
  <h2 id="parts-h">Partitions</h2>
  <div class="parts">${img.partitions.map((p, i) => partitionCard(origin, img, p, infos[i], meta, i))}</div>
</section>`
  : ''}
${meta ? osReleaseSection(typeof meta.osRelease === 'string' ? meta.osRelease : '') : ''}
${meta ? bootloaderSection(meta) : ''}
${meta ? packagesSection(meta, pkg) : ''}`;
}
