#!/usr/bin/env bash
# Cron wrapper: runs a d1-optout job, keeps its whole output in a dated file, and prints (so that
# cron mails it to MAILTO) a short report only when the exit code is not 0. A clean night sends
# no mail; every other night does, with the summary paragraph and the reason.
#
#   notify-on-failure.sh LOG_DIR NAME COMMAND [ARG..]
#
# Output goes to LOG_DIR/NAME-YYYY-MM-DD.out (appended: a rerun the same day adds to it). The exit
# code is the job's (docs/design.md §5), so the scheduler and any monitoring see it unchanged.
# LOG_DIR is made 0700 and the file 0600; a LOG_DIR that is a link, another user's or writable by
# group or others, or a dated file that is a link or another user's, is refused (exit 2, job not run).
set -u
if [ "$#" -lt 3 ]; then
  echo "usage: $0 LOG_DIR NAME COMMAND [ARG..]" >&2
  exit 2
fi
log_dir=$1 name=$2
shift 2
# The job's output names batches and files: the job's user only. And another user of the host must
# not make this append through a link of theirs (onto ~/.bashrc, say): the folder is the user's
# own and nobody else can write in it, and the dated file is no link and nobody else's.
umask 077
refuse() {
  echo "d1-optout: $1" >&2
  exit 2
}
mkdir -p "$log_dir" || exit 2
out="$log_dir/$name-$(date +%F).out"
if [ -L "$log_dir" ]; then
  refuse "$log_dir is a symbolic link; give the real folder as LOG_DIR"
elif [ ! -O "$log_dir" ]; then
  refuse "$log_dir does not belong to this user ($(id -un)); give a folder of its own as LOG_DIR"
elif [ -n "$(find "$log_dir" -maxdepth 0 -perm /022)" ]; then
  refuse "$log_dir is writable by group or others; run chmod go-w $log_dir"
elif [ -L "$out" ]; then
  refuse "$out is a symbolic link; refusing to write through it (remove it)"
elif [ -e "$out" ] && [ ! -O "$out" ]; then
  refuse "$out does not belong to this user ($(id -un)); refusing to write to it (remove it)"
fi
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
