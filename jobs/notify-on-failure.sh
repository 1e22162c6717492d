#!/usr/bin/env bash
# Cron wrapper: runs a d1-optout job, keeps its whole output in a dated file, and prints (so that
# cron mails it to MAILTO) a short report only when the exit code is not 0. A clean night sends
# no mail; every other night does, with the summary paragraph and the reason.
#
#   notify-on-failure.sh LOG_DIR NAME COMMAND [ARG..]
#
# Output goes to LOG_DIR/NAME-YYYY-MM-DD.out (appended: a rerun the same day adds to it). The exit
# code is the job's (docs/design.md §5), so the scheduler and any monitoring see it unchanged.
set -u
if [ "$#" -lt 3 ]; then
  echo "usage: $0 LOG_DIR NAME COMMAND [ARG..]" >&2
  exit 2
fi
log_dir=$1 name=$2
shift 2
mkdir -p "$log_dir" || exit 2
out="$log_dir/$name-$(date +%F).out"
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

# Both streams go to the dated file as they come; each is also kept apart for the mail.
"$@" 2> >(tee "$tmp/stderr" >> "$out") | tee "$tmp/stdout" >> "$out"
code=${PIPESTATUS[0]}
wait # for the stderr tee (a process substitution), so that its last lines are on disk

[ "$code" -eq 0 ] && exit 0

case $code in
  1) meaning='completed with failures' ;;
  2) meaning='refused: usage, configuration or unreadable input; nothing was done' ;;
  3) meaning='refused: another run holds the ledger lock' ;;
  4) meaning='aborted; the next run resumes from the ledger' ;;
  *) meaning='unexpected exit code' ;;
esac
echo "d1-optout $name on $(hostname) exited $code ($meaning)."
echo "Full output: $out"
# The summary's first paragraph (batch, status, abort reason, inputs) and what to type next.
if [ -s "$tmp/stdout" ]; then
  echo
  awk 'NF == 0 { exit } { print }' "$tmp/stdout"
  grep -E '^(Next|Nothing to rerun)' "$tmp/stdout"
fi
# The reason, as the job said it on stderr: every line there starts with "d1-optout: "; the
# progress lines are left out.
reasons=$(grep -E '^d1-optout: ' "$tmp/stderr" | grep -vE '^d1-optout: [0-9T:.-]+Z progress ' | tail -n 10)
if [ -n "$reasons" ]; then
  echo
  printf '%s\n' "$reasons"
fi
exit "$code"
