/**
 * Folder shared/zstd/: decoding (frames, the rules every decode enforces, stream and worker decoders) and the
 * writer's encoder. Imports transport/ (positional writes, chunk release), errors.ts and errno.ts; never format/.
 *
 * zstd behind one small interface: a streaming decoder (node:zlib when the
 * runtime has it, fzstd otherwise), the same decode in a worker for bulk
 * writers (sink.ts), and a file-range encoder for the writer.
 */
export { readFrameHeader, type FrameHeader, type ZstdBackend } from './frame.js';
export { hasNodeZstd, zstdProgram } from './backends.js';
export { createZstdDecoder, decoderName, zstdBackend, type ZstdDecoderOptions } from './decoder.js';
export { canDecodeInWorker, createZstdSink, warmDecoder, type ZstdSinkOptions } from './sink.js';
export { compressFile, MIN_FRAME_SIZE, type CompressOptions, type CompressResult } from './encoder.js';
export { checkSeekTable, encodeSeekTable, FIRST_FRAME_BYTES, firstFrameIsPart, firstFrameSize, parseSeekTable, readSeekTable, SEEK_TABLE_RULE, seekFrames, seekTableError, seekTableSize, type SeekEntry, type SeekFrame, type SeekTable } from './seek-table.js';
export { decodeFrameRange, framesCovering, type FrameSpan } from './seek-range.js';
