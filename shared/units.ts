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
