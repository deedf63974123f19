/**
 * Pieces both views of the page use: the document around a view, an
 * image's badges, a copyable command, a compression ratio. hono/html
 * escapes every interpolated value.
 */
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { formatBytes, formatRatio } from '../../shared/units.js';
import type { ImageSummary } from '../summary.js';
import { SCRIPT } from './script.js';
import { STYLE } from './style.js';

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export function humanBytes(n: number | undefined): string {
  return n === undefined ? '–' : formatBytes(n, 'significant');
}

/** A full page: the catalog's header line, the view, the status line that Copy speaks through. */
export function pageDocument(o: { title: string; sub: Html | string; body: Html }): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title}</title>
<link rel="icon" href="data:,">
<style>${raw(STYLE)}</style>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
  <h1><a href="/">COSI catalog</a></h1>
  ${o.sub}
  <span class="sub"><a href="/v1/images">/v1/images</a> · <a href="/metrics">/metrics</a> · <a href="/openapi.json">/openapi.json</a></span>
</header>
<main id="main">
${o.body}
</main>
<footer>Each partition streams by HTTP range straight out of its archive; <code>cosi-fetch</code> checks every SHA-384 on the way.</footer>
<div id="status" class="sr-only" role="status" aria-live="polite"></div>
<script>${raw(SCRIPT)}</script>
</body>
</html>`;
}

export function badges(img: ImageSummary): Html {
  return html`<div class="badges">
    ${img.valid ? html`<span class="badge ok">valid</span>` : html`<span class="badge bad">invalid</span>`}
    ${img.corrupt ? html`<span class="badge bad">${img.corrupt} corrupt</span>` : ''}
    ${img.aliasOf !== undefined ? html`<span class="badge" title="the same file as ${img.aliasOf}">alias of ${img.aliasOf}</span>` : ''}
    ${img.remote ? html`<span class="badge">remote</span>` : ''}
    ${img.osArch ? html`<span class="badge">${img.osArch}</span>` : ''}
    ${img.version ? html`<span class="badge">COSI ${img.version}</span>` : ''}
    ${img.versionId ? html`<span class="badge">version ${img.versionId}</span>` : ''}
    ${img.bootloader ? html`<span class="badge">${img.bootloader}</span>` : ''}
    ${img.warnings.length ? html`<span class="badge warn">${img.warnings.length} warning${img.warnings.length > 1 ? 's' : ''}</span>` : ''}
  </div>`;
}

/** A command (or hash) with a Copy button; `label` says to a screen reader what is copied. */
export function copyable(text: string, label: string, cls = 'cmd'): Html {
  return html`<div class="${cls}"><code>${text}</code><button type="button" data-copy aria-label="${`Copy ${label}`}">Copy</button></div>`;
}

/** A partition's verification state from --verify, when it has one worth showing. */
export function verifiedBadge(verified: string | undefined): Html | string {
  if (verified === 'ok') return html`<span class="badge ok">verified</span>`;
  if (verified !== undefined && !verified.startsWith('no sha384')) return html`<span class="badge bad" title="${verified}">corrupt</span>`;
  return '';
}

/** The bar shows what fraction of the original is stored; the text says the factor, as inspect does. */
export function ratio(compressed: number, uncompressed: number): Html {
  const fraction = uncompressed > 0 ? compressed / uncompressed : 0;
  const width = Math.max(0.5, Math.min(100, fraction * 100)).toFixed(1);
  const factor = formatRatio(compressed, uncompressed);
  const title = uncompressed > 0 ? `stored in ${(fraction * 100).toPrecision(3)}% of the original size` : 'nothing stored';
  return html`<div class="ratio" title="${title}"><div aria-hidden="true" class="bar"><span style="width:${width}%"></span></div><span class="mono pct">${factor}</span></div>`;
}
