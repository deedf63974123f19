/**
 * Folder client/ (cosi-fetch as a library): open, locate, stream and write images; cli/ holds the command line
 * on top of it. Imports shared/, never server/.
 *
 * cosi-fetch as a library: open a COSI image by URL or path, look at its
 * metadata and partitions, and read any image as a verified decompressed
 * stream, or write partitions and whole disks.
 *
 *   const img = await open('https://example.com/os.cosi', { metadataSha384 });
 *   const root = img.select('root');
 *   const { readable } = await img.stream(root.image); // errors instead of ending on bad bytes
 *   await writePartition(img, root, '/dev/sda2');
 *   await img.close();
 */
export { CosiImage, open, open as openCosi, countingSink, type OpenOptions, type TransferStats, type PumpOptions } from './image.js';
export type { ImageStream } from './image-stream.js';
export { CHUNK_SINK, type ChunkSink } from './chunk-sink.js';
export { writePartition, writeDisk, labelOf, defaultFileName, type WriteOptions, type PartitionResult, type DiskResult } from './write.js';
export { sequentialPass, type SequentialHandlers } from './sequential.js';
export { BarProgress, JsonProgress, NullProgress, type Progress, type ProgressItem } from './progress.js';
export type { PartitionInfo, CosiMetadata, ImageFile } from '../shared/format/metadata.js';
export { CosiError } from '../shared/errors.js';
