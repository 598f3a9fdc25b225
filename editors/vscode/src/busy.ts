// Whether the server is working, from three signals that each can be missing: our own command
// requests, work-done progress, and glm/stream activity (e.g. a request started from a code
// action by another path). Pure, so the state machine is tested without VS Code.

export type ProgressToken = string | number;

export class BusyTracker {
  private requests = 0;
  private readonly progress = new Set<ProgressToken>();
  private streaming = false;
  private last = false;

  /** Called with the new state whenever busy flips. */
  constructor(private readonly onChange: (busy: boolean) => void) {}

  get busy(): boolean {
    return this.requests > 0 || this.progress.size > 0 || this.streaming;
  }

  requestStarted(): void {
    this.requests++;
    this.emit();
  }

  requestEnded(): void {
    this.requests = Math.max(0, this.requests - 1);
    // The request's own stream is over once its result is back.
    if (this.requests === 0) this.streaming = false;
    this.emit();
  }

  progressBegin(token: ProgressToken): void {
    this.progress.add(token);
    this.emit();
  }

  progressEnd(token: ProgressToken): void {
    this.progress.delete(token);
    if (this.progress.size === 0 && this.requests === 0) this.streaming = false;
    this.emit();
  }

  streamActivity(): void {
    this.streaming = true;
    this.emit();
  }

  /**
   * glm.status said the server is idle: forget stream and progress signals whose end we may have
   * missed (a lost notification, a crashed request). Our own pending requests still count.
   */
  serverIdle(): void {
    this.streaming = false;
    this.progress.clear();
    this.emit();
  }

  /** The connection is gone: nothing is running any more. */
  reset(): void {
    this.requests = 0;
    this.progress.clear();
    this.streaming = false;
    this.emit();
  }

  private emit(): void {
    const now = this.busy;
    if (now !== this.last) {
      this.last = now;
      this.onChange(now);
    }
  }
}
