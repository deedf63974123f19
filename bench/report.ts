/** Result rows, and the Markdown table and JSON written under bench/results/. */
import { mkdir, writeFile } from 'node:fs/promises';
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
