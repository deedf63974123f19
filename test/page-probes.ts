/**
 * What the browser test runs inside the page (plain JavaScript source, as
 * page.evaluate takes it; the project compiles without the DOM's types):
 * the layout check (no overlapping text, nothing wider than its box), the
 * contrast check and the labels check. Each returns a list of problems,
 * empty when the page passes.
 */

/** Shared helpers, spliced into each probe. */
const HELPERS = `
const rect = (el) => el.getBoundingClientRect();
const shown = (el) => { const b = rect(el); const s = getComputedStyle(el); return b.width > 0 && b.height > 0 && s.visibility !== 'hidden' && !el.closest('.sr-only,[hidden]'); };
/** A text node's line boxes, each cut to the scrolling boxes around it: the part a person sees. */
const seen = (n) => {
  const r = document.createRange();
  r.selectNodeContents(n);
  const out = [];
  for (const b of r.getClientRects()) {
    let box = { left: b.left, right: b.right, top: b.top, bottom: b.bottom };
    for (let a = n.parentElement; a; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const ab = rect(a);
        box = { left: Math.max(box.left, ab.left), right: Math.min(box.right, ab.right), top: Math.max(box.top, ab.top), bottom: Math.min(box.bottom, ab.bottom) };
      }
    }
    if (box.right - box.left > 0.5 && box.bottom - box.top > 0.5) out.push(box);
  }
  return out;
};
const texts = (root) => {
  const out = [];
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) if (n.textContent.trim() && shown(n.parentElement)) out.push(n);
  return out;
};
const nameOf = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (typeof el.className === 'string' && el.className ? '.' + el.className.split(' ')[0] : '') + ' "' + (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 40) + '"';
`;

/**
 * Layout at the current width: the page never scrolls sideways; no table is
 * wider than its card; in every table row, cells do not overlap and their
 * content (text measured with a Range) stays inside them; and no two pieces
 * of visible text overlap anywhere in `scope` (text clipped by a scrolling
 * box counts only where it shows).
 */
export function layoutProbe(scope: string): string {
  return `(() => {
${HELPERS}
const problems = [];
const W = document.documentElement.clientWidth;
if (document.documentElement.scrollWidth > W) problems.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + W);
for (const table of document.querySelectorAll('table')) {
  if (!shown(table)) continue;
  const wrap = table.closest('.scroll, .pkgs');
  if (wrap && wrap.scrollWidth > wrap.clientWidth + 1) problems.push('a table is wider than its card: ' + wrap.scrollWidth + ' > ' + wrap.clientWidth + ' in ' + nameOf(table.rows[0]));
  for (const row of table.rows) {
    const cells = [...row.cells].filter(shown);
    for (let i = 0; i + 1 < cells.length; i++) {
      if (rect(cells[i]).right > rect(cells[i + 1]).left + 0.5) problems.push('cells overlap: ' + nameOf(cells[i]) + ' and ' + nameOf(cells[i + 1]));
    }
    for (const c of cells) {
      const cb = rect(c);
      for (const t of texts(c).flatMap(seen)) {
        if (t.left < cb.left - 0.5 || t.right > cb.right + 0.5) problems.push('text leaves its cell: ' + nameOf(c) + ' (' + Math.round(t.left) + '-' + Math.round(t.right) + ' in ' + Math.round(cb.left) + '-' + Math.round(cb.right) + ')');
      }
      if (c.scrollWidth > c.clientWidth + 1) problems.push('content overflows its cell: ' + nameOf(c));
    }
  }
}
// Every visible text run, where it shows.
const runs = [];
for (const root of document.querySelectorAll(${JSON.stringify(scope)})) {
  for (const n of texts(root)) for (const box of seen(n)) runs.push({ box, el: n.parentElement });
}
runs.sort((a, b) => a.box.top - b.box.top);
for (let i = 0; i < runs.length; i++) {
  for (let j = i + 1; j < runs.length && runs[j].box.top < runs[i].box.bottom - 1; j++) {
    const a = runs[i].box, b = runs[j].box;
    const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (x > 1 && y > 1) problems.push('text overlaps: ' + nameOf(runs[i].el) + ' and ' + nameOf(runs[j].el));
  }
}
return problems.slice(0, 20);
})()`;
}

/** WCAG 2 contrast of every visible text element against its background: 4.5:1, 3:1 for large text. */
export const CONTRAST_PROBE = `(() => {
${HELPERS}
const problems = [];
const rgba = (s) => { const m = s.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m[3] === undefined ? 1 : m[3]]; };
const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] === 1) break;
  }
  return layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1]);
};
const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
for (const el of document.querySelectorAll('body *')) {
  if (!shown(el) || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  const s = getComputedStyle(el);
  const bg = background(el);
  const fg = over(rgba(s.color), bg);
  const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(s.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) problems.push(nameOf(el) + ': contrast ' + ratio.toFixed(2) + ' (' + s.color + ' on rgb(' + bg.slice(0, 3).map(Math.round).join(',') + '))');
}
return problems.slice(0, 20);
})()`;

/** Every control has a name a screen reader can say, and every field a label. */
export const LABELS_PROBE = `(() => {
${HELPERS}
const problems = [];
if (!document.documentElement.lang) problems.push('no lang on <html>');
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (!el.labels.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) problems.push('no label: ' + nameOf(el));
}
for (const el of document.querySelectorAll('button, a[href]')) {
  if (!(el.getAttribute('aria-label') || el.textContent).trim()) problems.push('no accessible name: ' + nameOf(el));
}
for (const el of document.querySelectorAll('[aria-labelledby]')) {
  if (!document.getElementById(el.getAttribute('aria-labelledby'))) problems.push('aria-labelledby points nowhere: ' + nameOf(el));
}
const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
if (dup.length) problems.push('duplicate ids: ' + [...new Set(dup)].slice(0, 5).join(', '));
return problems.slice(0, 20);
})()`;
