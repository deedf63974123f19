/**
 * Turn a user's partition selector ('root', 'esp', '/var', '3',
 * 'images/root.raw.zst', any DPS type name) into exactly one partition, or a
 * one-line error that lists what could have been chosen.
 */
import { CosiError } from '../errors.js';
import { dpsNames } from '../disk/dps.js';
import type { PartitionInfo } from './metadata.js';

/** Convenience spellings for type names. */
const ALIASES: Readonly<Record<string, string>> = { efi: 'esp' };

/**
 * Where COSI writers mount each DPS type, so that a filesystem typed generic
 * Linux but mounted at /home still answers to 'home'. The ESP is /boot/efi in
 * COSI (the DPS itself prefers /efi, which is accepted too).
 */
const MOUNT_OF_TYPE: Readonly<Record<string, readonly string[]>> = {
  root: ['/'],
  usr: ['/usr'],
  esp: ['/boot/efi', '/efi'],
  xbootldr: ['/boot'],
  home: ['/home'],
  srv: ['/srv'],
  var: ['/var'],
  tmp: ['/var/tmp'],
};

function normMount(m: string): string {
  const t = m.replace(/\/+$/, '');
  return t === '' ? '/' : t;
}

function typeNames(): Set<string> {
  return new Set([...dpsNames(), ...Object.keys(MOUNT_OF_TYPE)]);
}

function matchesType(p: PartitionInfo, name: string): boolean {
  if (p.dpsName === name) return true;
  const mounts = MOUNT_OF_TYPE[name];
  return p.mountPoint !== undefined && mounts !== undefined && mounts.includes(normMount(p.mountPoint));
}

/** The rules in priority order; the first one that matches anything decides. */
function rules(selector: string): ((p: PartitionInfo) => boolean)[] {
  const out: ((p: PartitionInfo) => boolean)[] = [(p) => p.path === selector];
  if (/^[1-9]\d*$/.test(selector)) {
    const n = Number(selector);
    out.push((p) => p.number === n);
  }
  if (selector.startsWith('/')) {
    const want = normMount(selector);
    out.push((p) => p.mountPoint !== undefined && normMount(p.mountPoint) === want);
  }
  const lower = selector.toLowerCase();
  const name = ALIASES[lower] ?? lower;
  if (typeNames().has(name)) out.push((p) => matchesType(p, name));
  return out;
}

/** A short human name for a partition: its DPS type, else what it is. */
function label(p: PartitionInfo): string {
  if (p.dpsName) return p.dpsName;
  if (p.role === 'verity-hash') return 'verity';
  if (p.mountPoint === '/') return 'root';
  return p.role === 'filesystem' ? 'filesystem' : 'partition';
}

function describeOne(p: PartitionInfo): string {
  const bits: string[] = [];
  if (p.mountPoint) bits.push(p.mountPoint);
  if (p.verityOf) bits.push(`hash of ${p.verityOf}`);
  if (p.number !== undefined) bits.push(`#${p.number}`);
  bits.push(p.path);
  return `${label(p)} (${bits.join(', ')})`;
}

/** 'root (/, #2, images/root.raw.zst), esp (/boot/efi, #1, images/esp.raw.zst)' */
export function describeChoices(parts: PartitionInfo[]): string {
  return parts.length === 0 ? '(none: the image has no partitions)' : parts.map(describeOne).join(', ');
}

export function selectPartition(parts: PartitionInfo[], selector: string): PartitionInfo {
  const sel = selector.trim();
  if (sel !== '') {
    for (const rule of rules(sel)) {
      const hits = parts.filter(rule);
      if (hits.length === 1) return hits[0]!;
      if (hits.length > 1) {
        const how = hits.every((p) => p.number !== undefined) ? 'by number or path' : 'by path';
        throw new CosiError('COSI_ERR_SELECTOR', `'${sel}' is ambiguous: ${describeChoices(hits)}; pick one ${how}`, {
          details: { selector: sel, candidates: hits.map((p) => p.path) },
        });
      }
    }
  }
  throw new CosiError('COSI_ERR_SELECTOR', `no partition matches '${sel}'; choices: ${describeChoices(parts)}`, {
    details: { selector: sel, choices: parts.map((p) => p.path) },
  });
}
