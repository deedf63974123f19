/**
 * GET /: the catalog as one server-rendered page (no build step, no external
 * assets): every image with its OS, architecture and validity, and for each
 * partition its sizes, compression ratio and a copyable cosi-fetch command.
 * hono/html escapes every interpolated value.
 */
import { Hono } from 'hono';
import { html, raw } from 'hono/html';
import { getCounted, type AppDeps, type AppEnv } from '../http/env.js';
import { summarize, type ImageSummary, type PartitionSummary } from '../summary.js';
import { formatBytes } from '../../shared/units.js';

function humanBytes(n: number | undefined): string {
  return n === undefined ? '–' : formatBytes(n, 'significant');
}

/** Shell-safe single quoting for the copyable commands. */
function shq(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function outputName(img: ImageSummary, p: PartitionSummary): string {
  const base = img.id.split('/').pop() ?? 'image';
  const what = (p.dpsName ?? p.selector).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '') || `part${p.number ?? ''}`;
  return `${base}-${what}.img`;
}

export function fetchCommand(origin: string, img: ImageSummary, p: PartitionSummary): string {
  return `cosi-fetch --partition ${shq(p.selector)} -o ${shq(outputName(img, p))} ${shq(origin + img.rawUrl)}`;
}

const STYLE = `
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#5d6778; --line:#e3e6eb; --accent:#2f6fde; --ok:#1f8a4c; --bad:#c23b3b; --warn:#b7791f; --bar:#dbe6fb; --barfill:#2f6fde; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:var(--bg); color:var(--ink); }
header { background:#17202e; color:#fff; padding:18px 32px; display:flex; align-items:baseline; gap:18px; flex-wrap:wrap; }
header h1 { font-size:20px; margin:0; font-weight:650; letter-spacing:.2px; }
header .sub { color:#aeb8c8; font-size:13px; }
header a { color:#9cc0ff; }
main { max-width:1180px; margin:24px auto; padding:0 24px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; margin-bottom:22px; box-shadow:0 1px 2px rgba(16,24,40,.04); overflow:hidden; }
.card.invalid { border-color:#efc3c3; }
.head { padding:16px 20px 12px; display:flex; gap:16px; align-items:flex-start; justify-content:space-between; flex-wrap:wrap; }
.title h2 { font-size:18px; margin:0 0 2px; }
.title .id { font:13px ui-monospace,SFMono-Regular,Menlo,monospace; color:var(--muted); }
.badges { display:flex; gap:6px; flex-wrap:wrap; margin-top:8px; }
.badge { font-size:12px; padding:2px 8px; border-radius:999px; background:#eef1f5; color:#3a4456; white-space:nowrap; }
.badge.ok { background:#e3f4ea; color:var(--ok); font-weight:600; }
.badge.bad { background:#fbe5e5; color:var(--bad); font-weight:600; }
.badge.warn { background:#fdf1dc; color:var(--warn); }
.links { display:flex; gap:14px; font-size:13px; }
.links a { color:var(--accent); text-decoration:none; }
.links a:hover { text-decoration:underline; }
.facts { display:flex; gap:26px; padding:0 20px 12px; color:var(--muted); font-size:13px; flex-wrap:wrap; }
.facts b { color:var(--ink); font-weight:600; }
.reason { margin:0 20px 14px; padding:10px 12px; background:#fdf2f2; border:1px solid #f3cccc; border-radius:6px; color:#8c2323; font-size:13px; }
.reason ul { margin:6px 0 0 18px; padding:0; }
table { width:100%; border-collapse:collapse; font-size:13.5px; table-layout:fixed; }
th { text-align:left; font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.4px; padding:8px 12px; background:#fafbfc; border-top:1px solid var(--line); border-bottom:1px solid var(--line); }
td { padding:9px 12px; border-bottom:1px solid var(--line); vertical-align:middle; }
tr.part td { border-bottom:none; padding-bottom:4px; }
tr.cmdrow td { padding-top:0; padding-bottom:12px; }
tr:last-child td { border-bottom:none; }
th.num { text-align:right; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.type { font-weight:600; }
.mono { font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace; }
.muted { color:var(--muted); }
.ratio { display:flex; align-items:center; gap:8px; min-width:150px; }
.pct { min-width:44px; text-align:right; }
.bar { flex:1; height:8px; background:var(--bar); border-radius:4px; overflow:hidden; min-width:80px; }
.bar > span { display:block; height:100%; background:var(--barfill); border-radius:4px; }
.cmd { display:flex; align-items:stretch; gap:0; max-width:100%; }
.cmd code { flex:1; min-width:0; font:12px ui-monospace,SFMono-Regular,Menlo,monospace; background:#0f1724; color:#d7e3f7; padding:6px 9px; border-radius:5px 0 0 5px; overflow-x:auto; white-space:nowrap; }
.cmd button { border:0; background:#2a3a55; color:#fff; font-size:12px; padding:0 10px; border-radius:0 5px 5px 0; cursor:pointer; }
.cmd button:hover { background:var(--accent); }
.sha { font:11.5px ui-monospace,monospace; color:var(--muted); }
.corrupt { color:var(--bad); font-weight:600; }
.empty { background:var(--card); border:1px dashed var(--line); border-radius:10px; padding:40px; text-align:center; color:var(--muted); }
footer { max-width:1180px; margin:0 auto 30px; padding:0 24px; color:var(--muted); font-size:12px; }
`;

const SCRIPT = `
document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-copy]');
  if (!b) return;
  const text = b.parentElement.querySelector('code').textContent;
  try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; }
  catch { const r = document.createRange(); r.selectNodeContents(b.parentElement.querySelector('code')); const s = getSelection(); s.removeAllRanges(); s.addRange(r); b.textContent = 'Selected'; }
  setTimeout(() => (b.textContent = 'Copy'), 1500);
});
`;

function percent(ratio: number): string {
  const pct = ratio * 100;
  if (pct === 0) return '0%';
  if (pct < 0.1) return '<0.1%';
  return `${pct < 10 ? pct.toFixed(1) : pct.toFixed(0)}%`;
}

function partitionRows(origin: string, img: ImageSummary, p: PartitionSummary) {
  const ratio = p.uncompressedSize > 0 ? p.compressedSize / p.uncompressedSize : 0;
  const width = Math.max(0.5, Math.min(100, ratio * 100)).toFixed(1);
  const corrupt = p.verified !== undefined && p.verified !== 'ok' && !p.verified.startsWith('no sha384');
  return html`<tr class="part">
    <td class="num">${p.number ?? '–'}</td>
    <td><span class="type">${p.dpsName ?? p.role}</span> <span class="muted">${p.mountPoint ?? (p.role === 'verity-hash' ? 'verity hash' : 'not mounted')}</span></td>
    <td>${p.fsType ?? '–'}${p.shrunk ? html` <span class="badge warn" title="image smaller than its partition">shrunk</span>` : ''}</td>
    <td class="num">${humanBytes(p.compressedSize)}</td>
    <td class="num">${humanBytes(p.uncompressedSize)}${p.partitionSize !== undefined && p.partitionSize !== p.uncompressedSize ? html` <span class="muted">of ${humanBytes(p.partitionSize)}</span>` : ''}</td>
    <td><div class="ratio" title="compressed to ${(ratio * 100).toFixed(3)}% of the original"><div class="bar"><span style="width:${width}%"></span></div><span class="mono pct">${percent(ratio)}</span></div></td>
    <td class="sha" title="${p.sha384 ?? ''}">${p.sha384 ? `${p.sha384.slice(0, 12)}…` : 'none'}${corrupt ? html` <span class="badge bad" title="${p.verified}">corrupt</span>` : p.verified === 'ok' ? html` <span class="badge ok">verified</span>` : ''}</td>
  </tr>
  <tr class="cmdrow"><td></td><td colspan="6"><div class="cmd"><code>${fetchCommand(origin, img, p)}</code><button type="button" data-copy>Copy</button></div></td></tr>`;
}

function imageCard(origin: string, img: ImageSummary) {
  const title = img.prettyName ?? img.id;
  const ratio = img.uncompressedTotal ? (img.compressedTotal ?? 0) / img.uncompressedTotal : undefined;
  return html`<section class="card${img.valid ? '' : ' invalid'}" id="${`img-${img.id}`}">
    <div class="head">
      <div class="title">
        <h2>${title}</h2>
        <div class="id">${img.id}</div>
        <div class="badges">
          ${img.valid ? html`<span class="badge ok">valid</span>` : html`<span class="badge bad">invalid</span>`}
          ${img.corrupt ? html`<span class="badge bad">${img.corrupt} corrupt</span>` : ''}
          ${img.aliasOf !== undefined ? html`<span class="badge" title="the same file as ${img.aliasOf}">alias of ${img.aliasOf}</span>` : ''}
          ${img.osArch ? html`<span class="badge">${img.osArch}</span>` : ''}
          ${img.version ? html`<span class="badge">COSI ${img.version}</span>` : ''}
          ${img.versionId ? html`<span class="badge">version ${img.versionId}</span>` : ''}
          ${img.bootloader ? html`<span class="badge">${img.bootloader}</span>` : ''}
          ${img.warnings.length ? html`<span class="badge warn">${img.warnings.length} warning${img.warnings.length > 1 ? 's' : ''}</span>` : ''}
        </div>
      </div>
      <div class="links">
        <a href="${img.rawUrl}">download .cosi</a>
        ${img.metadataSha384 ? html`<a href="${img.metadataUrl}">metadata.json</a>` : ''}
        <a href="${img.url}">JSON</a>
      </div>
    </div>
    <div class="facts">
      <span>archive <b>${humanBytes(img.size)}</b></span>
      ${img.disk ? html`<span>disk <b>${humanBytes(img.disk.size)}</b>, ${img.disk.lbaSize}-byte sectors</span>` : ''}
      ${ratio !== undefined ? html`<span>partitions <b>${humanBytes(img.uncompressedTotal)}</b> → <b>${humanBytes(img.compressedTotal)}</b></span>` : ''}
      ${img.packages !== undefined ? html`<span><b>${img.packages}</b> packages</span>` : ''}
      ${img.metadataSha384 ? html`<span class="sha" title="${img.metadataSha384}">metadata sha384 ${img.metadataSha384.slice(0, 24)}…</span>` : ''}
    </div>
    ${img.valid
      ? ''
      : html`<div class="reason"><b>Not valid:</b> ${img.reason ?? 'unknown reason'}${img.errors.length > 1 ? html`<ul>${img.errors.slice(1, 6).map((e) => html`<li>${e.message}</li>`)}</ul>` : ''}</div>`}
    ${img.partitions.length
      ? html`<table>
          <colgroup><col style="width:4%"><col style="width:21%"><col style="width:8%"><col style="width:11%"><col style="width:14%"><col style="width:22%"><col style="width:20%"></colgroup>
          <thead><tr><th class="num">#</th><th>Type · mount point</th><th>FS</th><th class="num">Compressed</th><th class="num">Original</th><th>Ratio</th><th>SHA-384</th></tr></thead>
          <tbody>${img.partitions.map((p) => partitionRows(origin, img, p))}</tbody>
        </table>`
      : ''}
  </section>`;
}

export function pageRoutes(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  getCounted(app, '/', 'page', async (c) => {
    const origin = new URL(c.req.url).origin;
    // Servable images first; broken files still show, with their reason, below.
    const images = (await deps.catalog.list()).map((r) => summarize(r)).sort((a, b) => Number(b.valid) - Number(a.valid) || a.id.localeCompare(b.id));
    const valid = images.filter((i) => i.valid).length;
    const total = images.reduce((n, i) => n + i.size, 0);
    c.header('Cache-Control', 'no-cache');
    return c.html(html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>COSI catalog</title>
<style>${raw(STYLE)}</style>
</head>
<body>
<header>
  <h1>COSI catalog</h1>
  <span class="sub">${images.length} image${images.length === 1 ? '' : 's'} · ${valid} valid · ${humanBytes(total)}${deps.catalog.lastScan ? ` · scanned ${deps.catalog.lastScan.toISOString().replace('T', ' ').slice(0, 19)} UTC` : ''}</span>
  <span class="sub"><a href="/v1/images">/v1/images</a> · <a href="/metrics">/metrics</a></span>
</header>
<main>
${images.length ? images.map((img) => imageCard(origin, img)) : html`<div class="empty">No <code>*.cosi</code> files under the catalog root yet. Files added later appear here without a restart.</div>`}
</main>
<footer>Each partition streams by HTTP range straight out of its archive; <code>cosi-fetch</code> checks every SHA-384 on the way.</footer>
<script>${raw(SCRIPT)}</script>
</body>
</html>`);
  });
  return app;
}
