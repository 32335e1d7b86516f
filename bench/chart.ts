// bench/chart.svg: record and replay timings as bars, written by hand (no dependency).
import type { WorkloadFigures } from './record-replay.ts';

/** A hand-written SVG: per workload, native / strace -f / record and native / qemu-x86_64 / replay
 * as horizontal bars (seconds, one scale per workload), then trace bytes per event. */
export function renderChart(rows: WorkloadFigures[], date: string): string {
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const width = 760;
  const labelW = 130;
  const barMax = width - labelW - 170;  // room for the value and ratio after the longest bar
  const barH = 16;
  const gap = 4;
  const colors = { native: '#8c8c8c', strace: '#e0a030', record: '#d0453a', qemu: '#4a90d0', replay: '#2e6b3a', bytes: '#7a5cb0' };
  const out: string[] = [];
  let y = 30;
  out.push(`<text x="10" y="20" font-size="15" font-weight="bold">replay-anywhere: record and replay, wall seconds (median), ${esc(date)}</text>`);
  const bar = (label: string, value: number, max: number, color: string, text: string) => {
    const w = Math.max(1, (value / max) * barMax);
    out.push(`<text x="${labelW - 6}" y="${y + barH - 4}" font-size="12" text-anchor="end">${esc(label)}</text>`);
    out.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color}"/>`);
    out.push(`<text x="${(labelW + w + 5).toFixed(1)}" y="${y + barH - 4}" font-size="12">${esc(text)}</text>`);
    y += barH + gap;
  };
  for (const r of rows) {
    y += 12;
    out.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${esc(`${r.workload} (${r.command}): ${r.events} events, ${r.instructions} instructions`)}</text>`);
    y += 8;
    const max = Math.max(r.nativeSeconds, r.straceSeconds, r.recordSeconds, r.qemuSeconds, r.replaySeconds);
    const s = (x: number) => `${x.toFixed(3)} s`;
    bar('native', r.nativeSeconds, max, colors.native, s(r.nativeSeconds));
    bar('strace -f pinned', r.straceSeconds, max, colors.strace, s(r.straceSeconds));
    bar('record', r.recordSeconds, max, colors.record, `${s(r.recordSeconds)} (${r.recordVsStrace.toFixed(2)}x strace)`);
    y += 6;
    bar('native', r.nativeSeconds, max, colors.native, s(r.nativeSeconds));
    bar('qemu-x86_64', r.qemuSeconds, max, colors.qemu, s(r.qemuSeconds));
    bar('replay', r.replaySeconds, max, colors.replay, `${s(r.replaySeconds)} (${r.replayVsQemu.toFixed(2)}x qemu)`);
  }
  y += 12;
  out.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">trace bytes per event</text>`);
  y += 8;
  const maxBytes = Math.max(...rows.map((r) => r.bytesPerEvent));
  for (const r of rows) bar(r.workload, r.bytesPerEvent, maxBytes, colors.bytes, `${r.bytesPerEvent.toFixed(1)} B/event`);
  y += 6;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}
