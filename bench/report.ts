/** Result rows, and the Markdown table and JSON written under bench/results/. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type Status = 'PASS' | 'MISS' | 'INFO' | 'N/A';

export interface Row {
  /** e.g. "1a": comparison number plus a letter per row. */
  id: string;
  what: string;
  measurement: string;
  baseline: string;
  /** ours / baseline; null when there is nothing to divide. */
  ratio: number | null;
  target: string;
  status: Status;
  notes?: string;
  data?: unknown;
  /** When the row was measured (set when rows from several runs share one table). */
  measured?: string;
}

export function passIf(ok: boolean | undefined): Status {
  return ok === undefined ? 'N/A' : ok ? 'PASS' : 'MISS';
}

export function notAvailable(id: string, what: string, target: string, why: string): Row {
  return { id, what, measurement: 'not available', baseline: '-', ratio: null, target, status: 'N/A', notes: why };
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function markdown(rows: Row[], header: Record<string, string>): string {
  const lines: string[] = [];
  lines.push('# cosi-stream bench');
  lines.push('');
  for (const [k, v] of Object.entries(header)) lines.push(`- ${k}: ${v}`);
  lines.push('');
  lines.push('| # | comparison | ours | baseline | ratio | target | result |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    lines.push(`| ${r.id} | ${cell(r.what)} | ${cell(r.measurement)} | ${cell(r.baseline)} | ${r.ratio === null ? '-' : r.ratio.toFixed(2)} | ${cell(r.target)} | ${r.status} |`);
  }
  const notes = rows.filter((r) => r.notes);
  if (notes.length) {
    lines.push('');
    lines.push('Notes:');
    lines.push('');
    for (const r of notes) lines.push(`- ${r.id}: ${r.notes}`);
  }
  return lines.join('\n') + '\n';
}

export async function writeResults(dir: string, base: string, rows: Row[], header: Record<string, string>, extra: unknown): Promise<{ md: string; json: string }> {
  await mkdir(dir, { recursive: true });
  const md = join(dir, `${base}.md`);
  const json = join(dir, `${base}.json`);
  await writeFile(md, markdown(rows, header));
  await writeFile(json, JSON.stringify({ header, rows, extra }, null, 2) + '\n');
  return { md, json };
}

/** The comparison number of a row id ("4c" -> 4). */
function comparisonOf(id: string): number {
  return Number(/^\d+/.exec(id)?.[0]);
}

/**
 * A run with --only keeps the other comparisons' rows from the last results of the same kind,
 * so one comparison can be measured again without erasing the table. The header stays the one
 * of the run most rows come from, and a 'later rows' line names the comparisons measured since,
 * with their run's date, mode, workload and machine (kept in extra.runs).
 */
export async function withEarlierRows(
  dir: string,
  base: string,
  only: ReadonlySet<number>,
  rows: Row[],
  header: Record<string, string>,
  extra: Record<string, unknown>,
): Promise<{ rows: Row[]; header: Record<string, string>; extra: Record<string, unknown> }> {
  if (only.size === 0) return { rows, header, extra };
  let prev: { header: Record<string, string>; rows: Row[]; extra?: Record<string, unknown> };
  try {
    prev = JSON.parse(await readFile(join(dir, `${base}.json`), 'utf8'));
  } catch {
    return { rows, header, extra };
  }
  const { 'later rows': _, ...baseHeader } = prev.header;
  const baseDate = baseHeader['date']!;
  const kept = prev.rows.filter((r) => !only.has(comparisonOf(r.id))).map((r) => ({ ...r, measured: r.measured ?? baseDate }));
  if (kept.length === 0) return { rows, header, extra };
  const all = [...kept, ...rows.map((r) => ({ ...r, measured: header['date'] }))].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  const later = new Map<string, Set<number>>();
  for (const r of all) {
    if (r.measured === baseDate) continue;
    const nums = later.get(r.measured!) ?? new Set<number>();
    later.set(r.measured!, nums.add(comparisonOf(r.id)));
  }
  const known = { ...((prev.extra?.['runs'] as Record<string, Record<string, string>> | undefined) ?? {}), [header['date']!]: header };
  const runs = Object.fromEntries([...later.keys()].map((date) => [date, known[date]!]));
  const lines = [...later].map(([date, nums]) => {
    const h = runs[date];
    return `comparisons ${[...nums].join(', ')} from the run of ${date}${h ? ` (${h['mode']}; ${h['workload']}; ${h['machine']})` : ''}`;
  });
  return { rows: all, header: { ...baseHeader, 'later rows': lines.join('; ') }, extra: { ...prev.extra, ...extra, runs } };
}
