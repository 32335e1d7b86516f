// A one-line progress indicator on stderr, shown only when stderr is a terminal and the work
// lasts long enough to need it. clear() before printing anything else to the terminal.
export class Progress {
  private readonly enabled: boolean;
  private readonly started = performance.now();
  private shown = false;
  private lastDraw = 0;

  constructor(private readonly label: string, enabled = process.stderr.isTTY === true) {
    this.enabled = enabled;
  }

  update(done: number, total: number, unit = 'events'): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.started < 1000 || now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const line = total > 0 ? `${this.label} [${bar}] ${done}/${total} ${unit}` : `${this.label} ${done} ${unit}`;
    process.stderr.write(`\r${line}\x1b[K`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
