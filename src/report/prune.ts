import type { PruneResult } from '../ledger/index.js';
import { formatCount, formatUtc } from './format.js';

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${formatCount(Math.round(bytes / 1024))} KiB`;
}

/** What `prune` prints: what went (or would go), how much space came back, and what was kept and why. */
export function formatPrune(r: PruneResult): string {
  const lines: string[] = [];
  const verb = r.dryRun ? 'Would prune' : 'Pruned';
  const what = `${formatCount(r.items)} item(s), ${formatCount(r.attempts)} attempt(s), ${formatCount(r.rejects)} reject(s), ${formatCount(r.reportFolders)} report folder(s)`;
  lines.push(`${verb} ${r.batches.length} batch(es) that ended before ${formatUtc(r.cutoff)} UTC (more than ${r.olderThanDays} day(s) ago): ${what}`);
  if (r.dryRun) lines.push(`Space: ${mib(r.reportBytes)} of report files, and the ledger shrinks by VACUUM after a real prune. Nothing was changed (dry run).`);
  else lines.push(`Bytes reclaimed: ${formatCount(r.reportBytes + r.ledgerBytes)} (${mib(r.ledgerBytes)} of ledger after VACUUM, ${mib(r.reportBytes)} of report files)`);
  for (const b of r.batches) lines.push(`  ${b}`);
  if (r.keptUnsettled.length > 0) {
    lines.push(`Kept ${r.keptUnsettled.length} older batch(es) whose targets are not settled yet (queued, in doubt, pending or to retry): ${r.keptUnsettled.join(', ')}`);
  }
  lines.push('Every target keeps its state: dedupe and `d1-optout show ID` still answer for it.');
  return lines.join('\n');
}
