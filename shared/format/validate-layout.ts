/**
 * The layout rules: the tar index (marker, metadata.json and image entries,
 * their order and sizes) and the parsed primary GPT (geometry, partitions
 * behind the disk.gptRegions), checked against what the metadata rules found.
 */
import type { TarEntry } from './tar.js';
import type { Gpt } from '../disk/gpt.js';
import { isSize, show, type Checker } from './validate-checker.js';

export function checkTar(c: Checker, entries: TarEntry[]): void {
  const names = new Map<string, number>();
  entries.forEach((e, i) => {
    if (e.name.startsWith('/') || e.name.startsWith('./')) {
      c.error(`tar[${i}]`, 'tar-name-leading', `name ${show(e.name)} must not start with './' or '/'`);
    }
    const first = names.get(e.name);
    if (first !== undefined) c.error(`tar[${i}]`, 'tar-path-unique', `name ${show(e.name)} is already used by tar[${first}]`);
    else names.set(e.name, i);
  });

  const first = entries[0];
  const markerFirst = first !== undefined && first.name === 'cosi-marker';
  if (c.since(2) || markerFirst) {
    if (!markerFirst || first.type !== 'file') {
      c.error('tar[0]', 'tar-marker-first', `must be a regular file named 'cosi-marker', got ${first ? `${first.type} ${show(first.name)}` : 'an empty archive'}`);
    } else if (first.size !== 0) {
      c.error('tar[0]', 'tar-marker-size', `'cosi-marker' must be empty, it is ${first.size} bytes`);
    }
  }

  const metaIndex = entries.findIndex((e) => e.name === 'metadata.json');
  if (metaIndex < 0) {
    c.error('tar', 'tar-metadata-missing', `has no 'metadata.json' at its root`);
  } else {
    if (entries[metaIndex]!.type !== 'file') c.error(`tar[${metaIndex}]`, 'tar-not-file', `'metadata.json' must be a regular file, it is a ${entries[metaIndex]!.type}`);
    const want = c.since(2) ? 1 : markerFirst ? 1 : 0;
    if (c.since(2) && metaIndex !== 1) {
      c.error(`tar[${metaIndex}]`, 'tar-metadata-second', `'metadata.json' must be the second entry, right after 'cosi-marker'`);
    } else if (metaIndex > want) {
      c.error(`tar[${want}]`, 'tar-extra-before-metadata', `${show(entries[want]!.name)} comes before 'metadata.json'; extra files must come after it`);
    }
  }

  const referenced = new Set<string>();
  for (const ref of c.images) {
    if (referenced.has(ref.image.path)) continue;
    referenced.add(ref.image.path);
    const i = names.get(ref.image.path);
    if (i === undefined) {
      c.error(`${ref.field}.path`, 'tar-image-missing', `${show(ref.image.path)} is not in the tar`);
      continue;
    }
    const e = entries[i]!;
    if (e.type !== 'file') {
      c.error(`tar[${i}]`, 'tar-not-file', `${show(e.name)} must be a regular file, it is a ${e.type}`);
      continue;
    }
    const want = ref.image['compressedSize'];
    if (isSize(want) && e.size !== want) {
      c.error(`tar[${i}]`, 'tar-image-size', `${show(e.name)} is ${e.size} bytes but ${ref.field}.compressedSize is ${want}`);
    }
  }

  if (c.regions) {
    const primary = c.regions.find((r) => r.type === 'primary-gpt');
    if (c.since(2) && metaIndex >= 0 && primary?.image) {
      const next = entries[metaIndex + 1];
      if (next?.name !== primary.image.path) {
        c.error(`tar[${metaIndex + 1}]`, 'tar-gpt-after-metadata', `must be the primary GPT image ${show(primary.image.path)} right after 'metadata.json', got ${next ? show(next.name) : 'the end of the archive'}`);
      }
    }
    // Region images must be laid out in the tar in physical disk order.
    let last = -1;
    let lastRegion = -1;
    for (const r of c.regions) {
      const i = r.image ? names.get(r.image.path) : undefined;
      if (i === undefined) continue;
      if (i < last) {
        c.error(`tar[${i}]`, 'tar-image-order', `${show(r.image!.path)} (disk.gptRegions[${r.index}]) comes before the image of disk.gptRegions[${lastRegion}]; tar order must follow disk order`);
        break;
      }
      last = i;
      lastRegion = r.index;
    }
  }

  entries.forEach((e, i) => {
    if (e.type === 'directory' || e.name === 'cosi-marker' || e.name === 'metadata.json' || referenced.has(e.name)) return;
    c.warn(`tar[${i}]`, 'tar-unknown-file', `${show(e.name)} is not referenced by the metadata and will be ignored`);
  });
}

export function checkGpt(c: Checker, gpt: Gpt): void {
  if (c.lbaSize !== undefined && gpt.lbaSize !== c.lbaSize) {
    c.error('disk.lbaSize', 'gpt-lba-size', `is ${c.lbaSize} but the GPT uses ${gpt.lbaSize}-byte sectors`);
  }
  if (c.diskSize !== undefined) {
    const need = (gpt.backupLba + 1) * gpt.lbaSize;
    if (c.diskSize < need) c.error('disk.size', 'disk-size-too-small', `is ${c.diskSize} but the backup GPT header at LBA ${gpt.backupLba} needs at least ${need} bytes`);
  }
  if (!c.regions) return;
  let prevLba = -1;
  let prevIndex = -1;
  for (const r of c.regions) {
    const field = `disk.gptRegions[${r.index}]`;
    if (r.type === 'primary-gpt') {
      const size = r.image?.['uncompressedSize'];
      if (isSize(size) && size !== gpt.primaryRegionSize) {
        c.error(`${field}.image.uncompressedSize`, 'gpt-primary-size', `is ${size} but the primary GPT region (MBR, header and entries) is ${gpt.primaryRegionSize} bytes`);
      }
      continue;
    }
    if (r.type !== 'partition' || r.number === undefined) continue;
    const gp = gpt.partitions.find((p) => p.number === r.number);
    if (!gp) {
      c.error(`${field}.number`, 'gpt-partition-missing', `${r.number} is not a partition in the GPT`);
      continue;
    }
    if (gp.firstLba <= prevLba) {
      c.error(`${field}.number`, 'gpt-region-order', `partition ${r.number} starts at LBA ${gp.firstLba}, not after disk.gptRegions[${prevIndex}] (LBA ${prevLba}); regions must be in increasing start-LBA order`);
    }
    prevLba = gp.firstLba;
    prevIndex = r.index;
    const size = r.image?.['uncompressedSize'];
    if (isSize(size) && size > gp.size) {
      c.error(`${field}.image.uncompressedSize`, 'image-larger-than-partition', `is ${size} but partition ${r.number} is only ${gp.size} bytes`);
    }
    const fs = r.image ? c.filesystems.find((f) => f.image?.path === r.image!.path) : undefined;
    if (fs?.partType !== undefined && fs.partType !== gp.typeGuid.toLowerCase()) {
      c.warn(`images[${fs.index}].partType`, 'part-type-mismatch', `is ${fs.partType} but GPT partition ${r.number} has type ${gp.typeGuid}`);
    }
  }
}
