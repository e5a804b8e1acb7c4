#!/usr/bin/env python3
"""A stand-in for `journalctl --output=json`, reading its entries from a fixture file.

The tests point the publisher at this script instead of journalctl. Entries come from the
JSON-lines file named by $JOURNAL_FIXTURE, one journal entry per line, as `journalctl -o json`
prints them (__CURSOR, __REALTIME_TIMESTAMP, _BOOT_ID, MESSAGE, PRIORITY, _SYSTEMD_UNIT, ...).
A line is read only once it ends in a newline, so tests may append while it follows. The current
boot is the _BOOT_ID of the last entry in the file at start (or of the first entry appended, if
the file was empty).

Options, as journalctl takes them (`--opt=value`, `--opt value`, short forms, clustered flags):
  -o/--output=json (required), -f/--follow, --no-tail, -n/--lines[=N|all], -c/--cursor=C,
  --after-cursor=C, -b/--boot[=all|ID|OFFSET|ID±OFFSET], -m/--merge, -u/--unit=U (repeatable;
  globs; no suffix means .service), -t/--identifier=ID (repeatable), -p/--priority=P or P..Q,
  --output-fields=LIST, FIELD=VALUE matches ("+" between alternatives); -q/--quiet, --no-pager, -a/--all, -l/--full,
  --no-full, --utc and --no-hostname are accepted and ignored. Anything else is an error.
It does what journalctl does with them, quirks included:
  * --follow without --no-tail or --lines shows the last 10 entries; with a cursor it shows at
    most 10 entries after it, and the rest only once the journal changes again;
  * --follow implies --boot unless --boot or --merge is given (systemd 250 and later);
  * a cursor that names no entry: "Failed to seek to cursor: Invalid argument", exit 1;
  * entries without PRIORITY never match --priority; -u U also matches systemd's own messages
    about U (UNIT=U from PID 1) and coredumps of it, as journalctl's unit match does.

Environment:
  JOURNAL_FIXTURE             the entries (unset or missing: "No journal files were found.", exit 1)
  JOURNAL_FIXTURE_ARGS_LOG    append each invocation's arguments (argv[1:]) as one JSON line
  JOURNAL_FIXTURE_EXIT_AFTER  exit with status 1 once this many entries were printed
  JOURNAL_FIXTURE_SHOWN       keep the number of entries this run has written to its output
                              (taken by the pipe, read or not) in the file $JOURNAL_FIXTURE_SHOWN.PID
  JOURNAL_FIXTURE_SYSTEMD     systemd version to imitate (default 255): below 255 --after-cursor
                              with a filter the cursor's entry does not match skips the first
                              matching entry too (systemd issue 30288); below 250 --follow
                              does not imply --boot
"""

import fnmatch
import json
import os
import re
import select
import signal
import sys

POLL_S = 0.05
PRIORITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
UNIT_SUFFIXES = (
    ".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer",
    ".path", ".slice", ".scope",
)
ALWAYS_FIELDS = ("__CURSOR", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID")

# Long options: name -> (key, takes an argument: "no" | "required" | "optional").
LONG = {
    "output": ("o", "required"),
    "follow": ("f", "no"),
    "no-tail": ("no-tail", "no"),
    "lines": ("n", "optional"),
    "cursor": ("c", "required"),
    "after-cursor": ("after-cursor", "required"),
    "boot": ("b", "optional"),
    "this-boot": ("this-boot", "no"),
    "merge": ("m", "no"),
    "unit": ("u", "required"),
    "identifier": ("t", "required"),
    "priority": ("p", "required"),
    "output-fields": ("output-fields", "required"),
    "quiet": ("q", "no"),
    "no-pager": ("ignored", "no"),
    "all": ("ignored", "no"),
    "full": ("ignored", "no"),
    "no-full": ("ignored", "no"),
    "utc": ("ignored", "no"),
    "no-hostname": ("ignored", "no"),
    "help": ("h", "no"),
}
SHORT = {"o": "required", "f": "no", "n": "optional", "c": "required", "b": "optional", "m": "no",
         "u": "required", "t": "required", "p": "required", "q": "no", "a": "no", "l": "no", "h": "no"}


class Usage(Exception):
    pass


def fail(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(1)


def parse_boot(text):
    """journalctl's boot descriptor: "all", an offset, or a 32-hex-digit id with an optional offset.
    Returns ("all", None, 0) or ("boot", id or None, offset), or None if it does not parse."""
    if text == "all":
        return ("all", None, 0)
    m = re.fullmatch(r"([0-9a-fA-F]{32})?([+-]?\d+)?", text)
    if not m or (m.group(1) is None and m.group(2) is None):
        return None
    return ("boot", m.group(1).lower() if m.group(1) else None, int(m.group(2) or 0))


def parse_lines(text):
    if text == "all":
        return -1
    if re.fullmatch(r"\d+", text):
        return int(text)
    return None


def parse_level(text):
    if text in PRIORITIES:
        return PRIORITIES.index(text)
    if re.fullmatch(r"[0-7]", text):
        return int(text)
    raise Usage(f"Unknown log level {text}")


def parse_args(argv):
    opts = {
        "output": None, "follow": False, "no_tail": False, "lines": None, "cursor": None,
        "after_cursor": None, "boot": None, "merge": False, "units": [], "identifiers": [],
        "priorities": None, "output_fields": None, "matches": [],
    }
    values = []  # (key, value)
    i = 0
    only_args = False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if only_args or arg == "-" or not arg.startswith("-"):
            values.append(("arg", arg))
            continue
        if arg == "--":
            only_args = True
            continue
        if arg.startswith("--"):
            name, eq, val = arg[2:].partition("=")
            if name not in LONG:
                raise Usage(f"journalctl: unrecognized option '--{name}'")
            key, kind = LONG[name]
            if kind == "no":
                if eq:
                    raise Usage(f"journalctl: option '--{name}' doesn't allow an argument")
                values.append((key, None))
            elif kind == "required":
                if not eq:
                    if i >= len(argv):
                        raise Usage(f"journalctl: option '--{name}' requires an argument")
                    val = argv[i]
                    i += 1
                values.append((key, val))
            else:
                values.append((key, val if eq else None))
                if not eq and i < len(argv) and peek_optional(key, argv[i]):
                    values.append((key, argv[i]))
                    i += 1
            continue
        j = 1
        while j < len(arg):
            c = arg[j]
            j += 1
            if c not in SHORT:
                raise Usage(f"journalctl: invalid option -- '{c}'")
            kind = SHORT[c]
            if kind == "no":
                values.append((c, None))
            elif kind == "required":
                if j < len(arg):
                    val = arg[j:]
                elif i < len(argv):
                    val = argv[i]
                    i += 1
                else:
                    raise Usage(f"journalctl: option requires an argument -- '{c}'")
                values.append((c, val))
                break
            else:
                if j < len(arg):
                    values.append((c, arg[j:]))
                else:
                    values.append((c, None))
                    if i < len(argv) and peek_optional(c, argv[i]):
                        values.append((c, argv[i]))
                        i += 1
                break

    for key, val in values:
        if key == "arg":
            if val == "+":
                opts["matches"].append("+")
                continue
            if "=" not in val or val.startswith("="):
                raise Usage(f"journalctl stand-in: only FIELD=VALUE matches are supported, not '{val}'")
            opts["matches"].append(tuple(val.split("=", 1)))
        elif key == "o":
            opts["output"] = val
        elif key == "f":
            opts["follow"] = True
        elif key == "no-tail":
            opts["no_tail"] = True
        elif key == "n":
            if val is None:
                opts["lines"] = 10
            else:
                n = parse_lines(val)
                if n is None:
                    raise Usage(f"Failed to parse lines '{val}'")
                opts["lines"] = n
        elif key == "c":
            opts["cursor"] = val
        elif key == "after-cursor":
            opts["after_cursor"] = val
        elif key == "b":
            if val is None:
                opts["boot"] = ("boot", None, 0)
            else:
                b = parse_boot(val)
                if b is None:
                    raise Usage(f"Failed to parse boot descriptor '{val}'")
                opts["boot"] = b
        elif key == "this-boot":
            opts["boot"] = ("boot", None, 0)
        elif key == "m":
            opts["merge"] = True
        elif key == "u":
            opts["units"].append(val)
        elif key == "t":
            opts["identifiers"].append(val)
        elif key == "p":
            if ".." in val:
                a, b = val.split("..", 1)
                lo, hi = sorted((parse_level(a), parse_level(b)))
            else:
                lo, hi = 0, parse_level(val)
            opts["priorities"] = {str(p) for p in range(lo, hi + 1)}
        elif key == "output-fields":
            opts["output_fields"] = set(val.split(","))
        elif key == "h":
            sys.stdout.write(__doc__)
            sys.stdout.flush()
            os._exit(0)
        # "q" and "ignored": nothing to do.
    return opts


def peek_optional(key, word):
    """journalctl takes the next word as the argument of -n/-b when it parses as one."""
    if key == "n":
        return parse_lines(word) is not None
    if key == "b":
        return parse_boot(word) is not None
    return False


def mangle_unit(name):
    if any(ch in name for ch in "*?["):
        return name
    if name.endswith(UNIT_SUFFIXES):
        return name
    return name + ".service"


def unit_matcher(units):
    patterns = [mangle_unit(u) for u in units]

    def hit(value):
        return isinstance(value, str) and any(fnmatch.fnmatchcase(value, p) for p in patterns)

    def match(e):
        if hit(e.get("_SYSTEMD_UNIT")):
            return True
        if hit(e.get("UNIT")) and e.get("_PID") == "1":
            return True
        if e.get("_UID") == "0" and (hit(e.get("COREDUMP_UNIT")) or hit(e.get("OBJECT_SYSTEMD_UNIT"))):
            return True
        return False

    return match


def field_has(e, field, value):
    v = e.get(field)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return value in v
    return v == value


class Fixture:
    """The entries of the fixture file, read up to its last complete line."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.entries = []

    def poll(self):
        """Reads complete lines appended since the last call; returns how many entries were new."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return 0
        end = data.rfind(b"\n")
        if end < 0:
            return 0
        self.offset += end + 1
        before = len(self.entries)
        for line in data[: end + 1].split(b"\n"):
            if not line.strip():
                continue
            try:
                e = json.loads(line.decode("utf-8", "surrogateescape"))
            except ValueError:
                sys.stderr.write("journalctl stand-in: skipping a fixture line that is not JSON\n")
                continue
            if isinstance(e, dict):
                self.entries.append(e)
        return len(self.entries) - before


def main():
    argv = sys.argv[1:]
    log = os.environ.get("JOURNAL_FIXTURE_ARGS_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    try:
        opts = parse_args(argv)
    except Usage as e:
        fail(str(e))
    if opts["output"] is None:
        fail("journalctl stand-in: only --output=json is supported; pass it")
    if opts["output"] != "json":
        fail(f"journalctl stand-in: only --output=json is supported, not '{opts['output']}'")
    if opts["cursor"] is not None and opts["after_cursor"] is not None:
        fail("Please specify only one of --since=, --cursor=, and --after-cursor=.")
    if opts["boot"] is not None and opts["merge"]:
        fail("Using --boot or --list-boots with --merge is not supported.")
    version = int(os.environ.get("JOURNAL_FIXTURE_SYSTEMD") or 255)
    exit_after = os.environ.get("JOURNAL_FIXTURE_EXIT_AFTER")
    exit_after = int(exit_after) if exit_after not in (None, "") else None
    shown_path = os.environ.get("JOURNAL_FIXTURE_SHOWN")
    shown_path = f"{shown_path}.{os.getpid()}" if shown_path else None

    path = os.environ.get("JOURNAL_FIXTURE")
    if not path or not os.path.isfile(path):
        fail("No journal files were found.")

    follow = opts["follow"]
    lines = opts["lines"]
    if opts["no_tail"]:
        lines = -1
    if lines is None:
        lines = 10 if follow else -1
    boot = opts["boot"]
    if follow and boot is None and not opts["merge"] and version >= 250:
        boot = ("boot", None, 0)

    journal = Fixture(path)
    journal.poll()
    entries = journal.entries

    # The boot to show: None for all boots; "" while the file has none yet (the first appended).
    boot_id = None
    if boot is not None and boot[0] == "boot":
        boots = list(dict.fromkeys(e["_BOOT_ID"] for e in entries if isinstance(e.get("_BOOT_ID"), str)))
        _, wanted, offset = boot
        if wanted is None and offset == 0:
            boot_id = next((e["_BOOT_ID"] for e in reversed(entries) if isinstance(e.get("_BOOT_ID"), str)), "")
        else:
            if wanted is not None:
                if wanted not in boots:
                    fail(f"Data from the specified boot ({wanted}) is not available: No such boot ID in journal")
                k = boots.index(wanted) + offset
            elif offset > 0:
                k = offset - 1
            else:
                k = len(boots) - 1 + offset
            if not 0 <= k < len(boots):
                fail(f"Data from the specified boot ({offset:+d}) is not available: No such boot ID in journal")
            boot_id = boots[k]

    unit_match = unit_matcher(opts["units"]) if opts["units"] else None
    idents = set(opts["identifiers"])
    prios = opts["priorities"]
    # FIELD=VALUE matches: the same field's values are alternatives, different fields must all
    # match, and "+" separates groups of which any may match.
    groups = [{}]
    for m in opts["matches"]:
        if m == "+":
            groups.append({})
        else:
            groups[-1].setdefault(m[0], []).append(m[1])
    groups = [g for g in groups if g]

    def matches_ok(e):
        return not groups or any(
            all(any(field_has(e, f, v) for v in vals) for f, vals in g.items()) for g in groups
        )

    def wanted(e):
        nonlocal boot_id
        if boot_id is not None:
            if boot_id == "":
                if not isinstance(e.get("_BOOT_ID"), str):
                    return False
                boot_id = e["_BOOT_ID"]
            if e.get("_BOOT_ID") != boot_id:
                return False
        if unit_match and not unit_match(e):
            return False
        if idents and not any(field_has(e, "SYSLOG_IDENTIFIER", t) for t in idents):
            return False
        if prios is not None and e.get("PRIORITY") not in prios:
            return False
        return matches_ok(e)

    # Where to start, as journalctl seeks.
    cursor = opts["after_cursor"] if opts["after_cursor"] is not None else opts["cursor"]
    if cursor is not None:
        idx = next((k for k in range(len(entries) - 1, -1, -1) if entries[k].get("__CURSOR") == cursor), None)
        if idx is None:
            fail("Failed to seek to cursor: Invalid argument")
        pos = idx
        if opts["after_cursor"] is not None:
            if version >= 255:
                pos = idx + 1
            else:
                # Skips the first entry that matches, at or after the cursor's, whichever it is.
                k = idx
                while k < len(entries) and not wanted(entries[k]):
                    k += 1
                pos = k + 1
    elif lines >= 0:
        hits = [k for k, e in enumerate(entries) if wanted(e)]
        pos = len(entries) if lines == 0 else (hits[-lines] if len(hits) >= lines else 0)
    else:
        pos = 0

    fields = opts["output_fields"]
    out = sys.stdout.buffer
    shown = 0
    first_batch = True

    def show(e):
        nonlocal shown
        if fields is not None:
            e = {k: v for k, v in e.items() if k in fields or k in ALWAYS_FIELDS}
        try:
            text = json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(e, separators=(",", ":")).encode()
        out.write(text + b"\n")
        out.flush()
        shown += 1
        if shown_path:
            with open(shown_path + ".tmp", "w") as f:
                f.write(str(shown))
            os.replace(shown_path + ".tmp", shown_path)
        if exit_after is not None and shown >= exit_after:
            os._exit(1)

    if exit_after is not None and exit_after <= 0:
        os._exit(1)
    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)
    while True:
        while pos < len(entries) and (lines < 0 or shown < lines or (follow and not first_batch)):
            e = entries[pos]
            pos += 1
            if wanted(e):
                show(e)
        if not follow:
            return 0
        # Wait for the journal to change; leave when whoever reads our output has gone.
        while True:
            for _, revents in poller.poll(POLL_S * 1000):
                if revents & (select.POLLERR | select.POLLHUP):
                    os._exit(0)
            if journal.poll():
                break
        first_batch = False


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        sys.exit(main())
    except BrokenPipeError:
        os._exit(0)
