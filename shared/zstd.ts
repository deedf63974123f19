/**
 * zstd behind one small interface: a streaming decoder (node:zlib when the
 * runtime has it, fzstd otherwise), the same decode in a worker for bulk
 * writers (sink.ts), and a file-range encoder for the writer.
 */
export { readFrameHeader, type FrameHeader, type ZstdBackend } from './zstd/frame.js';
export { hasNodeZstd } from './zstd/backends.js';
export { createZstdDecoder, zstdBackend, type ZstdDecoderOptions } from './zstd/decoder.js';
export { canDecodeInWorker, createZstdSink, warmDecoder, type ZstdSinkOptions } from './zstd/sink.js';
export { compressFile, type CompressOptions, type CompressResult } from './zstd/encoder.js';
