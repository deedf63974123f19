/**
 * Folder server/page/: the HTML catalog page (no build step, no external assets): the list with its filter and
 * pages, and one detail view per image. Imports server/summary.ts, catalog/ids.ts and shared/; routes/page.ts
 * imports it.
 *
 * The list: every image matching the filter as a card (badges, sizes, a
 * ratio bar per partition, copyable commands), PAGE_SIZE cards a page, so
 * a catalog of thousands of images stays a page of a few hundred KiB.
 */
import { html } from 'hono/html';
import { encodePath } from '../catalog/ids.js';
import type { IndexRecord } from '../catalog/indexer.js';
import { osSummary, summarize, type ImageSummary, type PartitionSummary } from '../summary.js';
import { diskCommand, inspectCommand, partitionCommand } from './commands.js';
import { badges, copyable, humanBytes, ratio, verifiedBadge } from './parts.js';

export const PAGE_SIZE = 50;

export interface ListQuery {
  /** The filter as typed; every word must match. */
  q: string;
  /** 1-based; past the last page means the last page. */
  page: number;
}

export function listQuery(get: (name: string) => string | undefined): ListQuery {
  const page = Number.parseInt(get('page') ?? '', 10);
  return { q: (get('q') ?? '').trim().slice(0, 200), page: Number.isSafeInteger(page) && page > 0 ? page : 1 };
}

export function detailUrl(img: Pick<ImageSummary, 'id'>): string {
  return `/images/${encodePath(img.id)}`;
}

/**
 * Everything a filter word may match: names, versions, architecture, state and
 * each partition's type, mount point and filesystem. Made from the record, not
 * its summary (choosing selectors is the costly part of a summary, and only
 * the shown page needs them), once per record while the index keeps it.
 */
const haystacks = new WeakMap<IndexRecord, string>();
function haystack(r: IndexRecord): string {
  let h = haystacks.get(r);
  if (h !== undefined) return h;
  const m = r.archive?.metadata;
  const os = m ? osSummary(m) : {};
  const parts = r.archive?.partitions.flatMap(({ info }) => [info.dpsName, info.mountPoint, info.fsType]) ?? [];
  h = [r.id, os.prettyName, os.osId, os.versionId, m?.osArch, m?.version && `cosi ${m.version}`, m?.bootloader?.type, r.valid ? 'valid' : 'invalid', r.origin ? 'remote' : '', ...parts]
    .filter((x) => typeof x === 'string' && x !== '')
    .join(' ')
    .toLowerCase();
  haystacks.set(r, h);
  return h;
}

export function filterRecords(records: IndexRecord[], q: string): IndexRecord[] {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return records;
  return records.filter((r) => {
    const h = haystack(r);
    // 'valid' is inside 'invalid': as a word of its own it means the state.
    return words.every((w) => (w === 'valid' ? r.valid : h.includes(w)));
  });
}

function partitionRows(origin: string, img: ImageSummary, p: PartitionSummary) {
  const name = p.dpsName ?? p.role;
  return html`<tr class="part">
    <td class="num">${p.number ?? '–'}</td>
    <td><span class="type">${name}</span> <span class="muted">${p.mountPoint ?? (p.role === 'verity-hash' ? 'verity hash' : 'not mounted')}</span></td>
    <td>${p.fsType ?? '–'}${p.shrunk ? html` <span class="badge warn" title="image smaller than its partition">shrunk</span>` : ''}</td>
    <td class="num">${humanBytes(p.compressedSize)}</td>
    <td class="num">${humanBytes(p.uncompressedSize)}${p.partitionSize !== undefined && p.partitionSize !== p.uncompressedSize ? html`<span class="muted of">of ${humanBytes(p.partitionSize)}</span>` : ''}</td>
    <td>${ratio(p.compressedSize, p.uncompressedSize)}</td>
    <td class="sha" title="${p.sha384 ?? ''}">${p.sha384 ? `${p.sha384.slice(0, 8)}…` : 'none'} ${verifiedBadge(p.verified)}</td>
  </tr>
  <tr class="cmdrow"><td></td><td colspan="6">${copyable(partitionCommand(origin, img, p), `the command that fetches ${name}`)}</td></tr>`;
}

function imageCommands(origin: string, img: ImageSummary) {
  const disk = diskCommand(origin, img);
  return html`<div class="cmds">
    ${disk ? html`<span class="what">Whole disk</span>${copyable(disk, `the command that fetches the whole disk of ${img.id}`)}` : ''}
    <span class="what">Inspect</span>${copyable(inspectCommand(origin, img), `the command that inspects ${img.id}`)}
  </div>`;
}

function imageCard(origin: string, img: ImageSummary) {
  const anchor = `img-${img.id.replace(/\s/g, '_')}`;
  return html`<section class="card${img.valid ? '' : ' invalid'}" id="${anchor}" aria-labelledby="${`${anchor}-t`}">
    <div class="head">
      <div class="title">
        <h2 id="${`${anchor}-t`}"><a href="${detailUrl(img)}">${img.prettyName ?? img.id}</a></h2>
        <div class="id">${img.id}</div>
        ${badges(img)}
      </div>
      <div class="links">
        <a href="${detailUrl(img)}">details</a>
        <a href="${img.rawUrl}">download .cosi</a>
        ${img.metadataSha384 ? html`<a href="${img.metadataUrl}">metadata.json</a>` : ''}
        <a href="${img.url}">JSON</a>
      </div>
    </div>
    <div class="facts">
      <span>archive <b>${humanBytes(img.size)}</b></span>
      ${img.disk ? html`<span>disk <b>${humanBytes(img.disk.size)}</b>, ${img.disk.lbaSize}-byte sectors</span>` : ''}
      ${img.uncompressedTotal ? html`<span>partitions <b>${humanBytes(img.uncompressedTotal)}</b> → <b>${humanBytes(img.compressedTotal)}</b></span>` : ''}
      ${img.packages !== undefined ? html`<span><b>${img.packages}</b> packages</span>` : ''}
    </div>
    ${img.valid
      ? ''
      : html`<div class="reason"><b>Not valid:</b> ${img.reason ?? 'unknown reason'}${img.errors.length > 1 ? html`<ul>${img.errors.slice(1, 6).map((e) => html`<li>${e.message}</li>`)}</ul>` : ''}</div>`}
    ${img.partitions.length ? imageCommands(origin, img) : ''}
    ${img.partitions.length
      ? html`<div class="scroll"><table>
          <caption class="sr-only">Partitions of ${img.id}</caption>
          <thead><tr><th class="num" scope="col">#</th><th scope="col">Type · mount point</th><th scope="col">FS</th><th class="num" scope="col">Compressed</th><th class="num" scope="col">Original</th><th scope="col">Ratio</th><th scope="col">SHA-384</th></tr></thead>
          <tbody>${img.partitions.map((p) => partitionRows(origin, img, p))}</tbody>
        </table></div>`
      : ''}
  </section>`;
}

function pageHref(q: string, page: number): string {
  const p = new URLSearchParams();
  if (q) p.set('q', q);
  if (page > 1) p.set('page', String(page));
  const s = p.toString();
  return s ? `/?${s}` : '/';
}

/** Previous, first, the pages around this one, last, next. */
function pager(q: string, page: number, pages: number, where: string) {
  if (pages <= 1) return '';
  const shown = [...new Set([1, page - 2, page - 1, page, page + 1, page + 2, pages])].filter((n) => n >= 1 && n <= pages).sort((a, b) => a - b);
  const items = shown.map((n, i) => {
    const gap = i > 0 && n - shown[i - 1]! > 1 ? html`<span class="gap" aria-hidden="true">…</span>` : '';
    return n === page ? html`${gap}<span aria-current="page">${n}</span>` : html`${gap}<a href="${pageHref(q, n)}" aria-label="${`Page ${n}`}">${n}</a>`;
  });
  const prev = page > 1 ? html`<a href="${pageHref(q, page - 1)}" rel="prev">Previous</a>` : html`<span class="off" aria-disabled="true">Previous</span>`;
  const next = page < pages ? html`<a href="${pageHref(q, page + 1)}" rel="next">Next</a>` : html`<span class="off" aria-disabled="true">Next</span>`;
  return html`<nav class="pager" aria-label="${`Pages, ${where}`}">${prev}${items}${next}</nav>`;
}

/** One page of the list: the filter form, the count, the cards and the pager. Servable images first, then broken files with their reason. */
export function listView(origin: string, records: IndexRecord[], query: ListQuery) {
  const all = [...records].sort((a, b) => Number(b.valid) - Number(a.valid) || a.id.localeCompare(b.id));
  const matching = filterRecords(all, query.q);
  const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE));
  const page = Math.min(query.page, pages);
  const first = (page - 1) * PAGE_SIZE;
  const shown = matching.slice(first, first + PAGE_SIZE).map((r) => summarize(r));
  const n = (x: number) => x.toLocaleString('en-US');
  const count = matching.length === 0
    ? `No image of ${n(all.length)} matches`
    : `${shown.length < matching.length ? `${n(first + 1)}–${n(first + shown.length)} of ` : ''}${n(matching.length)} image${matching.length === 1 ? '' : 's'}${query.q ? ` matching (of ${n(all.length)})` : ''}`;
  return html`<form id="filter" class="tools" role="search" action="/" method="get">
  <label for="q">Filter</label>
  <div class="search"><input id="q" name="q" type="search" value="${query.q}" placeholder="name, id, arch, version, partition type…" autocomplete="off" aria-describedby="count"><button type="submit">Filter</button></div>
  <span id="count" class="count" aria-live="polite">${count}</span>
</form>
<div id="results">
${pager(query.q, page, pages, 'top')}
${all.length === 0
  ? html`<div class="empty">No <code>*.cosi</code> files under the catalog root yet. Files added later appear here without a restart.</div>`
  : matching.length === 0
    ? html`<div class="empty">No image matches “${query.q}”. <a href="/">Show every image</a></div>`
    : shown.map((img) => imageCard(origin, img))}
${pager(query.q, page, pages, 'bottom')}
</div>`;
}
