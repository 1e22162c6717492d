/** The points where the crash tests make the job die on the spot (D1_OPTOUT_FAULT=<point>). */
export type FaultPoint = 'kill-while-staging' | 'kill-before-ingest-commit' | 'kill-before-archive';

/** Fault injection for the crash tests: SIGKILLs this process when D1_OPTOUT_FAULT names `point`. */
export function faultPoint(point: FaultPoint): void {
  if (process.env['D1_OPTOUT_FAULT'] === point) process.kill(process.pid, 'SIGKILL');
}
