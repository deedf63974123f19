/**
 * Which local images hold a partition image with a given SHA-384, rebuilt
 * from the index records by every scan: /v1/blobs serves content by hash.
 */
import type { IndexRecord } from './indexer.js';

export class BlobIndex {
  /** sha384 -> ids of images holding an image with that hash. */
  private bySha = new Map<string, Set<string>>();

  /** Replaces the index with what these images hold (an image without a record holds nothing). */
  rebuild(images: Iterable<readonly [id: string, record: IndexRecord | undefined]>): void {
    const bySha = new Map<string, Set<string>>();
    for (const [id, rec] of images) {
      for (const p of rec?.archive?.partitions ?? []) {
        const sha = p.info.image.sha384?.toLowerCase();
        if (!sha) continue;
        let ids = bySha.get(sha);
        if (!ids) bySha.set(sha, (ids = new Set()));
        ids.add(id);
      }
    }
    this.bySha = bySha;
  }

  /** Ids of local images holding an image with this SHA-384 (lowercase hex). */
  holders(sha384: string): string[] {
    return [...(this.bySha.get(sha384) ?? [])];
  }
}
