/**
 * zstd behind one small interface: a streaming decoder (node:zlib when the
 * runtime has it, fzstd otherwise) and a file-range encoder for the writer.
 */
export { readFrameHeader, type FrameHeader, type ZstdBackend } from './zstd/frame.js';
export { hasNodeZstd } from './zstd/backends.js';
export { createZstdDecoder, zstdBackend, type ZstdDecoderOptions } from './zstd/decoder.js';
export { compressFile, type CompressOptions, type CompressResult } from './zstd/encoder.js';
