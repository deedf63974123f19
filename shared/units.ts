/** Byte counts for people: binary units, as every command, page and report prints them. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/**
 * `precision: 'fixed'` gives one decimal (12.0 MiB) for columns that line up;
 * `'significant'` gives three significant digits (8.00 MiB, 99.0 KiB, 117 MiB) for prose.
 */
export function formatBytes(n: number, precision: 'fixed' | 'significant' = 'fixed'): string {
  if (!Number.isFinite(n)) return '–';
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${v} B`;
  const digits = precision === 'fixed' ? 1 : v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/**
 * How much smaller compression made something, as a factor of the original
 * size: `3.21x`, `16.4x`, `16352x` (three significant digits, whole numbers from
 * 100 up; below 1 when compression grew it). `-` when either size is not a
 * positive count. The page and `cosi-fetch inspect` both print it, so a
 * number read in one is the number found in the other.
 */
export function formatRatio(compressed: number, uncompressed: number): string {
  if (!(compressed > 0) || !(uncompressed > 0) || !Number.isFinite(compressed) || !Number.isFinite(uncompressed)) return '-';
  const f = uncompressed / compressed;
  // Decide the digits on the rounded value, so 9.996 reads 10.0x, not 10.00x.
  let digits = 2;
  while (digits > 0 && Number(f.toFixed(digits)) >= 10 ** (3 - digits)) digits--;
  return `${f.toFixed(digits)}x`;
}

const FACTORS: Readonly<Record<string, number>> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/**
 * A byte count as people type it: '4194304', '4M', '4MiB', '512k' (binary
 * units, any case). Undefined when it is not one, or not a whole number of bytes.
 */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return undefined;
  const factor = FACTORS[m[2]!.toLowerCase()];
  if (factor === undefined) return undefined;
  const n = Number(m[1]) * factor;
  return Number.isSafeInteger(n) ? n : undefined;
}
