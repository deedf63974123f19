/**
 * The copyable cosi-fetch commands the page shows: one per partition
 * (--partition), one for the whole disk (--disk) and one to look inside
 * (inspect). Each is a line a user pastes into a shell as it is.
 */
import type { ImageSummary, PartitionSummary } from '../summary.js';

/** Shell-safe single quoting. */
export function shq(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The archive's file name without .cosi: the stem of every output name. */
function stem(img: ImageSummary): string {
  return (img.id.split('/').pop() ?? '').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[_.]+/, '') || 'image';
}

function outputName(img: ImageSummary, p: PartitionSummary): string {
  const what = (p.dpsName ?? p.selector).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '') || `part${p.number ?? ''}`;
  return `${stem(img)}-${what}.img`;
}

export function partitionCommand(origin: string, img: ImageSummary, p: PartitionSummary): string {
  return `cosi-fetch --partition ${shq(p.selector)} -o ${shq(outputName(img, p))} ${shq(origin + img.rawUrl)}`;
}

/** Undefined when the metadata has no disk layout to rebuild (COSI before 1.2). */
export function diskCommand(origin: string, img: ImageSummary): string | undefined {
  return img.disk ? `cosi-fetch --disk -o ${shq(`${stem(img)}-disk.img`)} ${shq(origin + img.rawUrl)}` : undefined;
}

export function inspectCommand(origin: string, img: ImageSummary): string {
  return `cosi-fetch inspect ${shq(origin + img.rawUrl)}`;
}
