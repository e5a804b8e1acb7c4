#!/usr/bin/env python3
"""A stand-in for macOS's `log` (`log stream` and `log show`, --style ndjson), reading its
entries from a fixture file.

The tests point the publisher at this script instead of /usr/bin/log. Entries come from the
JSON-lines file named by $LOG_FIXTURE, one entry per line as `log --style ndjson` prints them
(timestamp "YYYY-MM-DD HH:MM:SS.ffffff+zzzz", machTimestamp, threadID, traceID, eventType,
messageType, eventMessage, subsystem, category, processID, processImagePath, ...). A line is
read only once it ends in a newline, so tests may append while it streams.

  log stream --style ndjson [--type log] [--level default|info|debug] [--predicate P]
      Prints `Filtering the log data using "P"` first when given a predicate (as log does,
      not as JSON), then each entry appended to the file after it started, as it comes.
  log show --style ndjson --start "YYYY-MM-DD HH:MM:SS[+zzzz]" [--info] [--debug] [--predicate P]
      Every entry of the file from that second on (a time without a zone is UTC here), then
      the closing count, {"count":N,"finished":1}.

Levels as log has them: an entry whose messageType is "Info" is shown with level info or
debug (show: --info), "Debug" with debug only (show: --debug); Default, Error and Fault always.
Entries whose eventType is not logEvent are shown too (the publisher must pass over them). A
predicate is taken and recorded but not evaluated: the fixture's entries are taken to match.

Environment:
  LOG_FIXTURE            the entries (unset or missing: an error, exit 1)
  LOG_FIXTURE_ARGS_LOG   append each invocation's arguments (argv[1:]) as one JSON line
  LOG_FIXTURE_DIE_AFTER  `log stream` exits with status 1 after printing this many entries,
                         the first time only (LOG_FIXTURE + ".died" remembers it did)
  LOG_FIXTURE_DIE_CUT    with LOG_FIXTURE_DIE_AFTER: print the first half of the next entry's
                         line (no line break) before exiting, as a process killed mid-write
  LOG_FIXTURE_REFUSE     refuse as macOS does for a user who is not an administrator
                         ("log: Must be admin to run 'stream' command", exit 64)
  LOG_FIXTURE_SHOW_DELAY `log show` waits this many seconds before it reads the store, so
                         that entries logged meanwhile are both streamed and shown
"""

import datetime
import json
import os
import signal
import sys
import time

POLL_S = 0.05
LEVELS = {"default": 0, "info": 1, "debug": 2}
NEEDS = {"Info": 1, "Debug": 2}


def fail(message, status=64):
    sys.stderr.write(f"log: {message}\n")
    sys.exit(status)


def parse_args(argv):
    if not argv or argv[0] not in ("stream", "show"):
        fail("usage: log stream|show [options]")
    command, opts = argv[0], {"level": 0, "predicate": None, "start": None, "style": None}
    i = 1
    while i < len(argv):
        a = argv[i]

        def value():
            if i + 1 >= len(argv):
                fail(f"option {a} needs a value")
            return argv[i + 1]

        if a == "--style":
            opts["style"] = value()
            i += 2
        elif a == "--predicate":
            opts["predicate"] = value()
            i += 2
        elif a == "--level" and command == "stream":
            level = value()
            if level not in LEVELS:
                fail(f"unknown level {level!r}")
            opts["level"] = LEVELS[level]
            i += 2
        elif a == "--type" and command == "stream":
            if value() not in ("activity", "log", "trace"):
                fail(f"unknown type {value()!r}")
            i += 2
        elif a == "--start" and command == "show":
            opts["start"] = parse_start(value())
            i += 2
        elif a == "--info" and command == "show":
            opts["level"] = max(opts["level"], 1)
            i += 1
        elif a == "--debug" and command == "show":
            opts["level"] = 2
            i += 1
        else:
            fail(f"unknown option {a!r} for log {command}")
    if opts["style"] != "ndjson":
        fail("the stand-in speaks --style ndjson only")
    return command, opts


def parse_start(text):
    for fmt in ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            t = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        return t.timestamp()
    fail(f"cannot parse start date {text!r}")


def entry_time(entry):
    t = datetime.datetime.strptime(entry["timestamp"], "%Y-%m-%d %H:%M:%S.%f%z")
    return t.timestamp()


def shown(entry, level):
    return NEEDS.get(entry.get("messageType"), 0) <= level


def emit(line):
    sys.stdout.write(line if line.endswith("\n") else line + "\n")
    sys.stdout.flush()


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    command, opts = parse_args(sys.argv[1:])
    args_log = os.environ.get("LOG_FIXTURE_ARGS_LOG")
    if args_log:
        with open(args_log, "a") as f:
            f.write(json.dumps(sys.argv[1:]) + "\n")
    if os.environ.get("LOG_FIXTURE_REFUSE"):
        fail(f"Must be admin to run '{command}' command")
    fixture = os.environ.get("LOG_FIXTURE")
    if not fixture or not os.path.exists(fixture):
        fail("Could not open the log store", 1)

    if command == "show":
        time.sleep(float(os.environ.get("LOG_FIXTURE_SHOW_DELAY", "0")))
        count = 0
        with open(fixture) as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                entry = json.loads(line)
                if entry_time(entry) >= opts["start"] and shown(entry, opts["level"]):
                    emit(line)
                    count += 1
        emit(json.dumps({"count": count, "finished": 1}))
        return

    die_after = os.environ.get("LOG_FIXTURE_DIE_AFTER")
    died = fixture + ".died"
    if die_after is not None and os.path.exists(died):
        die_after = None
    if opts["predicate"] is not None:
        emit(f'Filtering the log data using "{opts["predicate"]}"')
    cut = bool(os.environ.get("LOG_FIXTURE_DIE_CUT"))
    printed = 0
    with open(fixture) as f:
        f.seek(0, os.SEEK_END)
        pending = ""
        while True:
            chunk = f.readline()
            if not chunk:
                time.sleep(POLL_S)
                continue
            pending += chunk
            if not pending.endswith("\n"):
                continue
            line, pending = pending, ""
            if not shown(json.loads(line), opts["level"]):
                continue
            if cut and die_after is not None and printed >= int(die_after):
                sys.stdout.write(line[: len(line) // 2])
                sys.stdout.flush()
                open(died, "w").close()
                sys.exit(1)
            emit(line)
            printed += 1
            if not cut and die_after is not None and printed >= int(die_after):
                open(died, "w").close()
                sys.exit(1)


if __name__ == "__main__":
    main()
