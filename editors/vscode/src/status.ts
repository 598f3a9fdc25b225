// Status bar item: a spinner while the server works, tokens/s of the last request when idle.
// glm.status is polled only while busy (to notice an end we were not told about) and once when
// a request ends (for its figures), never while idle.

import * as vscode from 'vscode';
import { BusyTracker } from './busy';
import { formatStats, statusBarText } from './format';
import type { Stats, StatusResult } from './protocol';

const POLL_MS = 2000;

export class StatusBar implements vscode.Disposable {
  readonly busy = new BusyTracker((busy) => this.onBusyChange(busy));
  private readonly item = vscode.window.createStatusBarItem('glm-lsp.status', vscode.StatusBarAlignment.Right, 100);
  private timer: ReturnType<typeof setInterval> | undefined;
  private polling = false;
  private again = false; // a refresh was asked for while one was in flight
  private queued = 0;
  private tps: number | undefined;
  private last: StatusResult | undefined;
  private error: string | undefined;

  constructor(private readonly fetchStatus: () => Promise<StatusResult | undefined>) {
    this.item.name = 'GLM';
    this.item.command = 'glm-lsp.showOutput';
    this.render();
    this.item.show();
  }

  /** Figures that came with a command result: no need to wait for the poll. */
  recordStats(stats: Stats | undefined): void {
    if (typeof stats?.decodeTps === 'number') this.tps = stats.decodeTps;
    this.render();
  }

  setError(error: string | undefined): void {
    this.error = error;
    this.render();
  }

  /** Asks the server once; also called by the Status command. */
  async refresh(): Promise<StatusResult | undefined> {
    if (this.polling) {
      this.again = true;
      return this.last;
    }
    this.polling = true;
    try {
      const status = await this.fetchStatus();
      if (!status) return undefined;
      this.last = status;
      this.queued = typeof status.queued === 'number' ? status.queued : 0;
      if (typeof status.stats?.decodeTps === 'number') this.tps = status.stats.decodeTps;
      if (!status.busy && this.busy.busy) this.busy.serverIdle();
      this.render();
      return status;
    } finally {
      this.polling = false;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    }
  }

  private onBusyChange(busy: boolean): void {
    if (busy && this.timer === undefined) {
      this.timer = setInterval(() => void this.refresh(), POLL_MS);
    } else if (!busy) {
      this.stopPolling();
      this.queued = 0;
      void this.refresh();
    }
    this.render();
  }

  private stopPolling(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private render(): void {
    const busy = this.busy.busy;
    this.item.text = statusBarText({ busy, queued: this.queued, tps: this.tps, error: this.error });
    const lines = [this.error ? `GLM: ${this.error}` : busy ? 'GLM is working (GLM: Cancel stops it)' : 'GLM is idle'];
    if (this.last) lines.push(`${this.last.backend} · ${this.last.model}`);
    const stats = formatStats(this.last?.stats);
    if (stats) lines.push(`Last request: ${stats}`);
    lines.push('Click to show the GLM output');
    this.item.tooltip = lines.join('\n');
  }

  dispose(): void {
    this.stopPolling();
    this.item.dispose();
  }
}
