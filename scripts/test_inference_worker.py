"""Tests of the ML inference worker, through its socket as the server uses it.

Run: cd scripts && /usr/bin/python3 -m unittest -v test_inference_worker

The model-quality tests replay the device simulator's signals
(internal/load/devsim.go, simSignal), ported to Python's random module: the
same distributions, not the same numbers as the Go generator.
"""

import json
import math
import os
import random
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import inference_worker as iw

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "inference_worker.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def short_tmpdir():
    # Unix socket paths are limited to ~107 bytes: stay directly under /tmp.
    return tempfile.mkdtemp(prefix="mlw", dir="/tmp" if os.path.isdir("/tmp") else None)


def start_worker(path, *extra, wait=True):
    p = subprocess.Popen([PYTHON, WORKER, "--socket", path, *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait:
        line = p.stderr.readline()
        if "listening" not in line:
            p.kill()
            raise AssertionError("worker did not start: %r" % line)
    return p


def stop_worker(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    p.stderr.close()


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)

    def send_raw(self, body):
        self.s.sendall(struct.pack(">I", len(body)) + body)

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode())

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv_raw(self):
        hdr = self.recv_exact(4)
        if hdr is None:
            return None
        return self.recv_exact(struct.unpack(">I", hdr)[0])

    def recv(self):
        raw = self.recv_raw()
        return None if raw is None else json.loads(raw)

    def call(self, obj):
        self.send(obj)
        return self.recv()

    def closed_by_peer(self):
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class WorkerTest(unittest.TestCase):
    """One worker (with the test models) shared by the protocol tests."""

    @classmethod
    def setUpClass(cls):
        cls.dir = short_tmpdir()
        cls.path = os.path.join(cls.dir, "w.sock")
        cls.proc = start_worker(cls.path, "--test-models")

    @classmethod
    def tearDownClass(cls):
        stop_worker(cls.proc)
        os.rmdir(cls.dir)

    def conn(self):
        c = Conn(self.path)
        self.addCleanup(c.close)
        return c

    def assertError(self, resp, code, rid=None):
        self.assertIsNotNone(resp, "no response")
        self.assertEqual(resp.get("error", {}).get("code"), code, resp)
        self.assertIsInstance(resp["error"]["message"], str)
        self.assertNotIn("result", resp)
        self.assertEqual(resp["request_id"], rid)
        self.assertIsInstance(resp["processing_time_ms"], float)

    def test_ping_round_trip(self):
        resp = self.conn().call({"request_id": "r1", "model_id": "ping", "data": {}})
        self.assertEqual(resp["request_id"], "r1")
        self.assertIn("anomaly", resp["result"]["models"])
        self.assertIsInstance(resp["result"]["series"], int)
        self.assertIsInstance(resp["processing_time_ms"], float)
        self.assertNotIn("error", resp)

    def test_response_is_compact_json(self):
        c = self.conn()
        c.send({"request_id": "c", "model_id": "echo", "data": {"a": [1, 2]}})
        raw = c.recv_raw()
        self.assertNotIn(b", ", raw)
        self.assertNotIn(b": ", raw)
        self.assertEqual(json.loads(raw)["result"], {"a": [1, 2]})

    def test_socket_mode_is_0600(self):
        st = os.stat(self.path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def test_responses_come_in_request_order(self):
        c = self.conn()
        for i in range(20):
            c.send({"request_id": "o%d" % i, "model_id": "ping" if i % 2 else "echo", "data": {"i": i}})
        got = [c.recv()["request_id"] for _ in range(20)]
        self.assertEqual(got, ["o%d" % i for i in range(20)])

    def test_a_sleeping_request_does_not_delay_another_connection(self):
        a, b = self.conn(), self.conn()
        a.send({"request_id": "slow", "model_id": "sleep", "data": {"ms": 3000}})
        time.sleep(0.05)
        b.send({"request_id": "s1", "data": {"readings": [{"device": "sl", "metric": "m", "value": 1}]}})
        self.assertEqual(b.recv()["request_id"], "s1")
        readable, _, _ = select.select([a.s], [], [], 0)
        self.assertEqual(readable, [], "the sleeping request answered before the other connection's")
        resp = a.recv()
        self.assertEqual(resp["result"], {"slept_ms": 3000})

    def test_a_length_of_2_31_is_refused_then_closed_without_allocating(self):
        before = rss_kib(self.proc.pid)
        c = self.conn()
        c.s.sendall(struct.pack(">I", 1 << 31))
        self.assertError(c.recv(), "frame_too_large")
        self.assertTrue(c.closed_by_peer())
        self.assertLess(rss_kib(self.proc.pid) - before, 50 * 1024, "RSS grew by over 50 MiB")

    def test_just_over_10_mib_is_refused(self):
        c = self.conn()
        c.s.sendall(struct.pack(">I", iw.MAX_FRAME + 1))
        self.assertError(c.recv(), "frame_too_large")
        self.assertTrue(c.closed_by_peer())

    def test_a_zero_length_frame_is_refused_then_closed(self):
        c = self.conn()
        c.s.sendall(struct.pack(">I", 0))
        self.assertError(c.recv(), "bad_frame")
        self.assertTrue(c.closed_by_peer())

    def test_invalid_json_and_utf8_keep_the_connection(self):
        c = self.conn()
        for body in (b"{not json", b'{"request_id": "\xff\xfe"}', b"\xc3", b"", b"   "):
            if not body:
                continue
            c.send_raw(body)
            self.assertError(c.recv(), "invalid_json")
        self.assertEqual(c.call({"request_id": "after", "model_id": "ping"})["request_id"], "after")

    def test_bad_requests(self):
        c = self.conn()
        cases = [
            ("an array", b"[1,2]", None),
            ("a string", b'"x"', None),
            ("no request_id", b'{"model_id":"ping"}', None),
            ("a numeric request_id", b'{"request_id":7,"model_id":"ping"}', None),
            ("an empty request_id", b'{"request_id":"","model_id":"ping"}', None),
            ("a 129-character request_id", json.dumps({"request_id": "x" * 129}).encode(), None),
            ("a numeric model_id", b'{"request_id":"m","model_id":3}', "m"),
            ("anomaly without data", b'{"request_id":"d"}', "d"),
            ("readings not an array", b'{"request_id":"e","data":{"readings":{}}}', "e"),
            ("sleep without ms", b'{"request_id":"f","model_id":"sleep","data":{}}', "f"),
            ("sleep too long", b'{"request_id":"g","model_id":"sleep","data":{"ms":60001}}', "g"),
            ("sleep with a bool", b'{"request_id":"h","model_id":"sleep","data":{"ms":true}}', "h"),
            ("echo without data", b'{"request_id":"i","model_id":"echo"}', "i"),
        ]
        for name, body, rid in cases:
            with self.subTest(name):
                c.send_raw(body)
                self.assertError(c.recv(), "bad_request", rid)
        ok = c.call({"request_id": "x" * 128, "model_id": "ping"})
        self.assertEqual(ok["request_id"], "x" * 128)

    def test_unknown_model(self):
        self.assertError(self.conn().call({"request_id": "u", "model_id": "gpt", "data": {}}), "unknown_model", "u")

    def test_empty_model_id_means_anomaly(self):
        resp = self.conn().call({"request_id": "e", "model_id": "",
                                 "data": {"readings": [{"device": "em", "metric": "m", "value": 3}]}})
        self.assertEqual(resp["result"]["model"], "anomaly")
        self.assertEqual(len(resp["result"]["scores"]), 1)

    def test_invalid_readings_are_labelled_and_the_rest_scored(self):
        good = {"device": "inv", "metric": "t", "value": 20.5, "ts": "2026-01-01T00:00:00Z"}
        bad = [
            {"device": "inv", "metric": "t", "value": "20"},
            {"device": "inv", "metric": "t", "value": True},
            {"device": "inv", "metric": "t", "value": None},
            {"device": "inv", "metric": "t"},
            {"device": "", "metric": "t", "value": 1},
            {"device": "d" * 129, "metric": "t", "value": 1},
            {"device": "inv", "metric": 5, "value": 1},
            {"device": "inv", "metric": "t", "value": 1, "ts": {}},
            "not an object",
        ]
        readings = []
        for b in bad:
            readings += [good, b]
        body = json.dumps({"request_id": "i", "data": {"readings": readings}})
        # NaN, Infinity and an overflowing literal, which Python's json reads.
        body = body[:-3] + ',{"device":"inv","metric":"t","value":NaN},' \
            '{"device":"inv","metric":"t","value":-Infinity},' \
            '{"device":"inv","metric":"t","value":1e999},{"device":"inv","metric":"t","value":1' + "0" * 400 + "}]}}"
        c = self.conn()
        c.send_raw(body.encode())
        raw = c.recv_raw()
        for token in (b"NaN", b"Infinity"):
            self.assertNotIn(token, raw)
        scores = json.loads(raw)["result"]["scores"]
        self.assertEqual(len(scores), len(readings) + 4)
        for i, s in enumerate(scores):
            if i < len(readings) and i % 2 == 0:
                self.assertIn(s["label"], ("warmup", "normal"), i)
            else:
                self.assertEqual(s, {"score": None, "anomaly": False, "label": "invalid"}, i)

    def test_nan_is_never_written(self):
        c = self.conn()
        c.send_raw(b'{"request_id":"n","model_id":"echo","data":{"x":NaN,"y":[Infinity,1.5]}}')
        raw = c.recv_raw()
        self.assertNotIn(b"NaN", raw)
        self.assertNotIn(b"Infinity", raw)
        self.assertEqual(json.loads(raw)["result"], {"x": None, "y": [None, 1.5]})

    def test_10001_readings_are_refused_10000_accepted(self):
        c = self.conn()
        rd = [{"device": "big%d" % (i % 7), "metric": "m", "value": float(i % 13)} for i in range(10001)]
        self.assertError(c.call({"request_id": "b", "data": {"readings": rd}}), "bad_request", "b")
        resp = c.call({"request_id": "b2", "data": {"readings": rd[:10000]}})
        self.assertEqual(len(resp["result"]["scores"]), 10000)

    def test_eof_mid_frame_is_closed_quietly(self):
        c = self.conn()
        c.s.sendall(struct.pack(">I", 100) + b'{"request_id"')
        c.s.shutdown(socket.SHUT_WR)
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(self.conn().call({"request_id": "p", "model_id": "ping"})["request_id"], "p")


class LifecycleTest(unittest.TestCase):
    """Start-up, the connection limit, stalls and shutdown: a worker each."""

    def setUp(self):
        self.dir = short_tmpdir()
        self.path = os.path.join(self.dir, "w.sock")
        self.procs = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for p in self.procs:
            stop_worker(p)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def start(self, *extra, wait=True, path=None):
        p = start_worker(path or self.path, *extra, wait=wait)
        self.procs.append(p)
        return p

    def ping(self):
        c = Conn(self.path)
        try:
            return c.call({"request_id": "p", "model_id": "ping"})
        finally:
            c.close()

    def test_sigterm_exits_0_and_removes_the_socket(self):
        p = self.start()
        self.assertEqual(self.ping()["request_id"], "p")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertFalse(os.path.exists(self.path))

    def test_sigint_exits_0(self):
        p = self.start()
        p.send_signal(signal.SIGINT)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertFalse(os.path.exists(self.path))

    def test_a_stale_socket_is_replaced(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        s.close()  # the file stays, nobody listens
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))
        self.start()
        self.assertEqual(self.ping()["request_id"], "p")

    def test_a_live_socket_is_refused(self):
        self.start()
        second = self.start(wait=False)
        self.assertEqual(second.wait(timeout=10), 2)
        self.assertIn("another worker", second.stderr.read())
        self.assertEqual(self.ping()["request_id"], "p")

    def test_a_regular_file_is_refused_and_kept(self):
        with open(self.path, "w") as f:
            f.write("keep me")
        p = self.start(wait=False)
        self.assertEqual(p.wait(timeout=10), 2)
        with open(self.path) as f:
            self.assertEqual(f.read(), "keep me")

    def test_no_socket_path_exits_2(self):
        env = {k: v for k, v in os.environ.items() if k != "ML_SOCKET_PATH"}
        r = subprocess.run([PYTHON, WORKER], env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("socket", r.stderr)

    def test_the_socket_path_comes_from_the_environment(self):
        env = dict(os.environ, ML_SOCKET_PATH=self.path)
        p = subprocess.Popen([PYTHON, WORKER], env=env, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        self.assertIn("listening", p.stderr.readline())
        self.assertEqual(self.ping()["request_id"], "p")

    def test_connections_beyond_max_conns_are_busy(self):
        self.start("--max-conns", "1")
        first = Conn(self.path)
        self.addCleanup(first.close)
        self.assertEqual(first.call({"request_id": "1", "model_id": "ping"})["request_id"], "1")
        second = Conn(self.path)
        self.addCleanup(second.close)
        resp = second.recv()
        self.assertEqual(resp["error"]["code"], "busy")
        self.assertIsNone(resp["request_id"])
        self.assertTrue(second.closed_by_peer())
        first.close()
        for _ in range(100):  # the slot frees once the worker sees the close
            try:
                resp = self.ping()
            except (BrokenPipeError, ConnectionResetError):
                # Still busy: the worker refused and closed before the
                # ping was written.
                resp = {}
            if "result" in resp:
                break
            time.sleep(0.02)
        self.assertIn("result", resp)

    def test_a_stalled_body_is_closed(self):
        self.start("--body-timeout", "0.3")
        c = Conn(self.path)
        self.addCleanup(c.close)
        c.s.sendall(struct.pack(">I", 50) + b'{"req')
        self.assertTrue(c.closed_by_peer())

    def test_a_stalled_header_is_closed(self):
        self.start("--body-timeout", "0.3")
        c = Conn(self.path)
        self.addCleanup(c.close)
        c.s.sendall(b"\x00\x00")
        self.assertTrue(c.closed_by_peer())

    def test_a_trickled_body_is_closed_at_the_deadline(self):
        self.start("--body-timeout", "0.5")
        c = Conn(self.path)
        self.addCleanup(c.close)
        c.s.sendall(struct.pack(">I", 1000))
        closed = False
        for _ in range(50):  # a byte every 0.1 s: 5 s if each recv had its own timeout
            try:
                c.s.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        c.s.settimeout(2)
        self.assertTrue(closed or c.closed_by_peer(), "the worker kept a trickling client")

    def test_max_series_bounds_the_state(self):
        self.start("--max-series", "3")
        c = Conn(self.path)
        self.addCleanup(c.close)
        rd = [{"device": "d%d" % i, "metric": "m", "value": 1.0} for i in range(10)]
        c.call({"request_id": "a", "data": {"readings": rd}})
        self.assertEqual(c.call({"request_id": "p", "model_id": "ping"})["result"]["series"], 3)


# --------------------------------------------------------------------------
# Model quality on the device simulator's signals.
# --------------------------------------------------------------------------

METRICS = (("temp_c", 21.0, 4.0, False), ("humidity", 45.0, 10.0, True))


def sim_stream(rng, base, amp, clamp, n, interval, shift_at=None, shift=0.0, p=0.01):
    """One simSignal: values rounded to 0.01 and which readings are spikes."""
    period = 300 + rng.random() * 600
    phase = rng.random() * 2 * math.pi
    noise = 0.05 * amp
    vals, spikes = [], []
    for i in range(n):
        t = i * interval
        v = base + amp * math.sin(2 * math.pi * t / period + phase) + rng.gauss(0, 1) * noise
        spike = rng.random() < p
        if spike:
            v += (1 if rng.random() < 0.5 else -1) * amp * (3 + 2 * rng.random())
        if shift_at is not None and i >= shift_at:
            v += shift
        if clamp:
            v = min(100.0, max(0.0, v))
        vals.append(round(v * 100) / 100)
        spikes.append(spike)
    return vals, spikes


class Figures:
    def __init__(self):
        self.spikes = self.caught = self.normal = self.false = 0
        self.worst = 0  # readings after the shift of the last non-spike flag

    def add(self, flags, spikes, shift_at=None):
        n = len(flags)
        for i in range(n):
            after_spike = i > 0 and spikes[i - 1]
            if spikes[i]:
                self.spikes += 1
                self.caught += flags[i] or (i + 1 < n and flags[i + 1])
            elif shift_at is not None and shift_at - 1 <= i <= shift_at + 50:
                pass
            elif not after_spike:
                self.normal += 1
                self.false += flags[i]
            if shift_at is not None and i >= shift_at and flags[i] and not spikes[i] and not after_spike:
                self.worst = max(self.worst, i - shift_at)

    @property
    def recall(self):
        return self.caught / self.spikes

    @property
    def fpr(self):
        return self.false / self.normal

    def __str__(self):
        return "recall %.4f (%d/%d spikes)  false-positive rate %.5f (%d/%d)  worst adaptation %d" % (
            self.recall, self.caught, self.spikes, self.fpr, self.false, self.normal, self.worst)


def report(line):
    sys.stderr.write("\n    " + line + "\n")
    sys.stderr.flush()


class ModelQualityTest(unittest.TestCase):
    """The simulator's streams through the real worker, in batches of 500."""

    DEVICES = 100
    READINGS = 600

    @classmethod
    def setUpClass(cls):
        cls.dir = short_tmpdir()
        cls.path = os.path.join(cls.dir, "q.sock")
        cls.proc = start_worker(cls.path)
        cls.conn = Conn(cls.path)
        cls.batch_time = 0.0
        cls.batch_readings = 0

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        stop_worker(cls.proc)
        os.rmdir(cls.dir)
        if cls.batch_readings:
            report("throughput, batches of 500: %.0f readings/s" % (cls.batch_readings / cls.batch_time))

    def run_fleet(self, name, seed, interval, devices=None, n=None, shift_mult=None, shift_at=250):
        devices = devices or self.DEVICES
        n = n or self.READINGS
        rng = random.Random(seed)
        streams = []  # (device, metric, values, spikes)
        for d in range(devices):
            for metric, base, amp, clamp in METRICS:
                shift = shift_mult * amp if shift_mult else 0.0
                vals, spikes = sim_stream(rng, base, amp, clamp, n, interval,
                                          shift_at if shift_mult else None, shift)
                streams.append(("%s-%d-d%d" % (name, seed, d), metric, vals, spikes))
        # Interleaved as a fleet reports: every device's reading i, then i+1.
        order = [(s, i) for i in range(n) for s in range(len(streams))]
        flags = [[False] * n for _ in streams]
        t0 = time.perf_counter()
        for b in range(0, len(order), 500):
            chunk = order[b:b + 500]
            rd = [{"device": streams[s][0], "metric": streams[s][1], "value": streams[s][2][i]} for s, i in chunk]
            resp = self.conn.call({"request_id": "q%d" % b, "data": {"readings": rd}})
            scores = resp["result"]["scores"]
            for (s, i), sc in zip(chunk, scores):
                flags[s][i] = sc["anomaly"]
        type(self).batch_time += time.perf_counter() - t0
        type(self).batch_readings += len(order)
        fig = Figures()
        for (_, _, _, spikes), f in zip(streams, flags):
            fig.add(f, spikes, shift_at if shift_mult else None)
        return fig

    def test_spikes_at_5_s(self):
        total = Figures()
        for seed in (1, 2, 3):
            f = self.run_fleet("five", seed, 5)
            for k in ("spikes", "caught", "normal", "false"):
                setattr(total, k, getattr(total, k) + getattr(f, k))
        report("5 s, %d devices x 3 seeds x %d readings: %s" % (self.DEVICES, self.READINGS, total))
        self.assertGreaterEqual(total.recall, 0.95)
        self.assertLessEqual(total.fpr, 0.01)

    def test_level_shifts_are_adapted_to_within_50_readings(self):
        for mult in (3.0, -3.0, 1.5):
            with self.subTest(shift=mult):
                f = self.run_fleet("shift%+g" % mult, 7, 5, n=500, shift_mult=mult)
                report("5 s, level shift %+g*amp at reading 250: %s" % (mult, f))
                self.assertLessEqual(f.worst, 50)
                self.assertGreaterEqual(f.recall, 0.95)
                self.assertLessEqual(f.fpr, 0.01)

    def test_other_intervals_are_sane(self):
        for interval in (1, 30):
            with self.subTest(interval=interval):
                f = self.run_fleet("iv%d" % interval, 11, interval, n=500)
                report("%d s: %s" % (interval, f))
                self.assertGreaterEqual(f.recall, 0.90)
                self.assertLessEqual(f.fpr, 0.01)

    def test_single_reading_requests(self):
        c = self.conn
        rng = random.Random(5)
        vals, _ = sim_stream(rng, 21.0, 4.0, False, 2000, 5)
        t0 = time.perf_counter()
        for i, v in enumerate(vals):
            c.call({"request_id": "s%d" % i, "data": {"readings": [{"device": "single", "metric": "t", "value": v}]}})
        report("throughput, single-reading requests: %.0f readings/s" % (len(vals) / (time.perf_counter() - t0)))


class ModelUnitTest(unittest.TestCase):
    """The model in-process: properties the fleet figures do not isolate."""

    def feed(self, values):
        m = iw.AnomalyModel()
        st = iw._Series()
        return m, st, [m.update(st, v) for v in values]

    def test_a_constant_series_is_normal_and_finite(self):
        _, _, out = self.feed([5.0] * 200)
        self.assertTrue(all(not o["anomaly"] for o in out))
        self.assertTrue(all(o["score"] is None or math.isfinite(o["score"]) for o in out))

    def test_a_step_on_a_constant_series_is_flagged_then_learned(self):
        _, _, out = self.feed([5.0] * 50 + [6.0] * 50)
        self.assertTrue(out[50]["anomaly"])
        self.assertTrue(any(o["label"] == "shift" for o in out[50:55]))
        self.assertTrue(all(not o["anomaly"] for o in out[60:]))

    def test_a_spike_does_not_drag_the_level_or_inflate_the_scale(self):
        rng = random.Random(3)
        base = [20 + rng.gauss(0, 0.2) for _ in range(100)]
        m, st, _ = self.feed(base)
        level, mad = st.level, st.mad
        self.assertTrue(m.update(st, 60.0)["anomaly"])
        self.assertAlmostEqual(st.level, level + st.trend, places=9)
        self.assertEqual(st.mad, mad)
        self.assertEqual(m.update(st, 20.1)["label"], "normal")

    def test_a_gross_outlier_in_warm_up_is_flagged(self):
        _, _, out = self.feed([10.0, 10.1, 9.9, 10.0, 10.05, 50.0, 10.0])
        self.assertEqual(out[5]["label"], "anomaly")
        self.assertTrue(out[5]["anomaly"])
        self.assertEqual([o["label"] for o in out[:5] + out[6:]], ["warmup"] * 6)

    def test_a_noise_burst_rescales_the_series(self):
        rng = random.Random(9)
        vals = [rng.gauss(0, 0.1) for _ in range(100)] + [rng.gauss(0, 10) for _ in range(300)]
        _, _, out = self.feed(vals)
        late = sum(o["anomaly"] for o in out[200:])
        self.assertLess(late, 10)

    def test_eviction_keeps_the_most_recent_series(self):
        m = iw.AnomalyModel(max_series=2)
        m.score_readings([{"device": d, "metric": "m", "value": 1} for d in ("a", "b", "a", "c")])
        self.assertEqual(list(m.series), [("a", "m"), ("c", "m")])


if __name__ == "__main__":
    unittest.main()
