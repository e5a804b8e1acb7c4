"""Runs the publisher against the moto harness and measures it. See scripts/bench."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

binary, idle_seconds = sys.argv[1], int(sys.argv[2])
here = os.path.dirname(os.path.abspath(__file__))
harness = os.path.join(here, "..", "tests", "support", "moto_harness.py")
ticks = os.sysconf("SC_CLK_TCK")
page = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * page // 1024


def write_bytes(pid):
    """Bytes the process caused to be written to storage (/proc/PID/io)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("write_bytes:"))


def calibrate():
    """SHA-256 throughput of one core in MB/s (openssl speed): this machine's speed today, so
    figures from different days and machines can be compared."""
    try:
        out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"scripts/bench: openssl speed is the calibration and failed ({e}); install openssl")
    last = [l for l in out.splitlines() if l.strip().startswith("sha256")][-1]
    return float(last.split()[-1].rstrip("k")) / 1000


class StateWrites:
    """Counts replacements of the log state file (each save is a new file renamed over it)."""

    def __init__(self, path):
        self.path, self.last, self.count = path, self.look(path), 0

    @staticmethod
    def look(path):
        try:
            st = os.stat(path)
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    def poll(self):
        now = self.look(self.path)
        if now != self.last:
            self.last, self.count = now, self.count + 1


def calls(url):
    with urllib.request.urlopen(url + "/_harness/calls") as r:
        return json.load(r)


calibration = calibrate()
with tempfile.TemporaryDirectory() as tmp:
    port_file = os.path.join(tmp, "port")
    moto = subprocess.Popen([sys.executable, harness, "serve", "--port-file", port_file], stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(port_file):
            time.sleep(0.1)
        url = "http://127.0.0.1:" + open(port_file).read().strip()
        while True:
            try:
                calls(url)
                break
            except OSError:
                time.sleep(0.1)
        config = os.path.join(tmp, "config.json")
        # A bench machine's kernel may not call its clock synchronized (no NTP daemon in a
        # container): nothing waits for it here.
        settings = {"agent": {"instance": {"serial": "bench"}, "metrics_collection_interval": 60,
                              "clock_sync_timeout": 0,
                              "logfile": os.path.join(tmp, "p.log"), "state_dir": os.path.join(tmp, "state")}}
        idle_files = int(os.environ.get("BENCH_IDLE_FILES", "0"))
        if idle_files:
            # Log files that do not grow, followed through a pattern: the cost of watching them.
            os.makedirs(os.path.join(tmp, "var"))
            for i in range(idle_files):
                with open(os.path.join(tmp, "var", f"f{i}.log"), "w") as f:
                    f.write("one line\n")
            settings["logs"] = {"log_group_name": "bench", "logs_collected": {"files": {"collect_list": [
                {"file_path": os.path.join(tmp, "var", "*.log")}]}}}
        # Light load: BENCH_LOAD_FILES files, each written BENCH_LOAD_RATE lines a second.
        load_files = int(os.environ.get("BENCH_LOAD_FILES", "0"))
        load_rate = int(os.environ.get("BENCH_LOAD_RATE", "10"))
        loaded = []
        if load_files:
            os.makedirs(os.path.join(tmp, "load"))
            for i in range(load_files):
                loaded.append(os.path.join(tmp, "load", f"app{i}.log"))
                open(loaded[-1], "w").close()
            settings.setdefault("logs", {"log_group_name": "bench", "logs_collected": {"files": {"collect_list": []}}})
            settings["logs"]["logs_collected"]["files"]["collect_list"].append(
                {"file_path": os.path.join(tmp, "load", "*.log")})
        if os.environ.get("BENCH_AGENT"):
            # Every section of metrics_collected with every measurement, per CPU, every disk,
            # device and interface, at the 60 s interval: the README's table lists them all.
            collected = {}
            readme = open(os.path.join(here, "..", "README.md")).read()
            for line in readme.splitlines():
                cells = [c.strip() for c in line.split("|")]
                if len(cells) == 9 and cells[1].startswith("`") and cells[2].startswith("`"):
                    section, metric = cells[1].strip("`"), cells[2].strip("`")
                    entry = collected.setdefault(section, {"measurement": []})
                    field = metric if section == "summary" else metric.split("_", 1)[1]
                    if metric == "procstat_lookup_pid_count":
                        field = "pid_count"
                    entry["measurement"].append(field)
            for key in ("cpu", "disk", "diskio", "net"):
                collected[key]["resources"] = ["*"]
            collected["procstat"] = [dict(collected["procstat"], exe="amazon-cloudwat")]
            settings["metrics"] = {"metrics_collected": collected,
                                   "append_dimensions": {"InstanceId": "${aws:InstanceId}"}}
        with open(config, "w") as f:
            json.dump(settings, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        # A runtime directory in memory for the status file, as the Debian package's unit gives
        # the service (RuntimeDirectory=); BENCH_NO_RUNTIME_DIRECTORY=1 measures a run by hand,
        # with the status file in the state directory.
        if not os.environ.get("BENCH_NO_RUNTIME_DIRECTORY") and os.path.isdir("/dev/shm"):
            runtime = tempfile.mkdtemp(prefix="publisher-bench-run.", dir="/dev/shm")
            atexit.register(shutil.rmtree, runtime, True)
            env["RUNTIME_DIRECTORY"] = runtime
        else:
            env.pop("RUNTIME_DIRECTORY", None)
        state = StateWrites(os.path.join(tmp, "state", "logs-state.json"))
        start = time.monotonic()
        pub = subprocess.Popen([binary, config], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not calls(url).get("PutMetricData"):
            state.poll()
            time.sleep(0.01)
        first = time.monotonic() - start
        # Idle: from just after the first round, for idle_seconds (several 60 s rounds).
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            state.poll()
            time.sleep(0.01)
        state_writes_at_start, state.count = state.count, 0
        cpu0, t0, written0 = cpu_seconds(pub.pid), time.monotonic(), write_bytes(pub.pid)
        peak = rss = rss_kib(pub.pid)
        next_rss = t0 + 1
        lines_written = 0
        while time.monotonic() - t0 < idle_seconds:
            # The state file is looked at every 20 ms.
            time.sleep(0.02)
            state.poll()
            due = int((time.monotonic() - t0) * load_rate)
            if loaded and due > lines_written // len(loaded):
                for path in loaded:
                    with open(path, "a") as f:
                        for n in range(lines_written // len(loaded), due):
                            f.write(f"2026-11-30T12:00:00Z INFO request {n} served in 12 ms\n")
                lines_written = due * len(loaded)
            if time.monotonic() >= next_rss:
                next_rss += 1
                rss = rss_kib(pub.pid)
                peak = max(peak, rss)
        cpu = cpu_seconds(pub.pid) - cpu0
        written = write_bytes(pub.pid) - written0
        elapsed = time.monotonic() - t0
        pub.send_signal(signal.SIGTERM)
        pub.wait(timeout=15)
        print(json.dumps({
            "binary_bytes": os.path.getsize(binary),
            "first_put_metric_data_seconds": round(first, 3),
            "idle_seconds": round(elapsed),
            "idle_rss_kib_end": rss,
            "idle_rss_kib_peak": peak,
            "idle_cpu_seconds": round(cpu, 3),
            "idle_cpu_percent_of_one_core": round(100 * cpu / elapsed, 4),
            "rounds": calls(url).get("PutMetricData"),
            "idle_log_files": idle_files,
            "load_files": load_files,
            "load_lines_per_second": round(lines_written / elapsed, 1),
            "agent_sections": bool(os.environ.get("BENCH_AGENT")),
            "state_file_writes_at_start": state_writes_at_start,
            "state_file_writes_per_minute_idle": round(60 * state.count / elapsed, 2),
            "idle_bytes_written_per_hour": round(3600 * written / elapsed),
            "calibration_sha256_mb_per_s": round(calibration),
        }, indent=2))
    finally:
        moto.kill()
