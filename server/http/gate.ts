/** A non-blocking counting semaphore: over the cap, callers are told to come back, not queued. */
export class Gate {
  private used = 0;
  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** A release function, or undefined when full. */
  tryAcquire(): (() => void) | undefined {
    if (this.used >= this.limit) return undefined;
    this.used++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used--;
    };
  }
}
