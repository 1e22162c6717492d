/** How the terminal summary, `status`, `show`, progress lines and report.html write numbers and times. */

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** "4.2 s", "3 min 05 s", "2 h 07 min": precise when short, readable when long. */
export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, '0')} min`;
}

/** An ISO instant as "2026-11-29 02:00:03" (UTC, like the batch ids). */
export function formatUtc(iso: string, withMs = false): string {
  return iso.slice(0, withMs ? 23 : 19).replace('T', ' ');
}

/** Columns padded to their widest cell; `right` marks the numeric ones. */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[], right: readonly boolean[], indent = ''): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    indent +
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}
