#!/usr/bin/python3
"""Unhidra's ML inference worker (SPEC section 8).

The server (``unhidra serve``, package internal/ml) starts this program as
ML_WORKER_CMD, supervises it and talks to it over a Unix socket with
length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes
of UTF-8 JSON, one object per frame, at most 10 MiB. Each request
``{request_id, model_id, data}`` gets exactly one response
``{request_id, result | error, processing_time_ms}``, in request order on its
connection.

Models: "anomaly" (the default, streaming per-series anomaly scoring of
numeric telemetry), "ping", and with --test-models "sleep" and "echo" for the
server's tests.

Concurrency: one thread per connection (at most --max-conns); the anomaly
model's state sits behind one lock taken once per request, so a batch is
scored atomically and in order. "sleep" never takes that lock.

Runs on Debian's /usr/bin/python3 with the standard library only: numpy is
allowed, but measured it did not pay here (see AnomalyModel.__doc__).
"""

import argparse
import collections
import json
import math
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time

MAX_FRAME = 10 * 1024 * 1024
MAX_READINGS = 10000
MAX_ID_LEN = 128
MAX_SLEEP_MS = 60000
BODY_TIMEOUT_S = 30.0
_HEADER = struct.Struct(">I")


def log(level, msg, **kv):
    """Writes one logfmt line to stderr, which the server forwards."""
    parts = ["level=" + level, "msg=" + json.dumps(msg)]
    for k, v in kv.items():
        s = str(v)
        if not s or any(c in s for c in ' "=\\') or not s.isprintable():
            s = json.dumps(s)
        parts.append(k + "=" + s)
    try:
        sys.stderr.write(" ".join(parts) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class RequestError(Exception):
    """A request that gets an error response; the connection stays usable."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------
# The anomaly model.
# --------------------------------------------------------------------------


def _median(xs):
    s = sorted(xs)
    n = len(s)
    m = n // 2
    return s[m] if n % 2 else 0.5 * (s[m - 1] + s[m])


def _theil_sen(ys):
    """Robust line through ys at x = 0..n-1: (value at the last x, slope).

    The median of pairwise slopes ignores up to ~29% bad points, so a spike
    in the warm-up buffer neither tilts nor lifts the seed."""
    n = len(ys)
    slopes = [(ys[j] - ys[i]) / (j - i) for i in range(n) for j in range(i + 1, n)]
    b = _median(slopes) if slopes else 0.0
    a = _median([y - b * i for i, y in enumerate(ys)])
    return a + b * (n - 1), b


class _Series:
    __slots__ = ("n", "level", "trend", "mad", "buf", "run_sign", "run", "wild")

    def __init__(self):
        self.n = 0  # readings seen (valid ones)
        self.level = 0.0
        self.trend = 0.0
        self.mad = 0.0  # EWMA of clipped |residual| (mean absolute deviation)
        self.buf = []  # warm-up readings not judged outliers
        self.run_sign = 0  # sign of the current run of large residuals
        self.run = []  # residuals of that run
        self.wild = []  # residuals of the current run of anomalies, any sign


class AnomalyModel:
    """Streaming robust anomaly scoring, one state per (device, metric).

    Forecaster: Holt's linear method (level + trend per reading). Sensor
    signals are smooth (a sine of period 300-900 s in the device simulator,
    sampled every 1-30 s), so a local linear trend forecasts the next value
    well; a level-only EWMA would lag a slope and turn that lag into false
    alarms on every flank. ALPHA=0.8 / BETA=0.3 are fast on purpose: at a
    30 s interval the simulator's sine turns within ~10 readings and a slow
    Holt lags it by more than a spike is high (measured, threshold 6:
    alpha 0.5 caught 68% of spikes at 30 s, alpha 0.8 95%), while at 1-5 s
    the faster filter passes a little more noise into the forecast, which
    the scale absorbs (false alarms stayed under 0.01%). Anomalies are not
    learned from, so a fast filter still ignores spikes.

    Scale: an EWMA of |residual| clipped at CLIP_SCALE*scale, turned into a
    sigma by sqrt(pi/2) (exact for Gaussian noise), floored (SCALE_FLOOR_*)
    so a constant series neither divides by zero nor flags a 0.01 rounding
    step. The residual includes the forecaster's own error, so the score
    adapts to how predictable each series is.

    Score = |x - forecast| / scale. Above THRESHOLD the reading is an
    anomaly and is *not* learned from: the level just follows the forecast
    and the scale is untouched, so a spike neither drags the level nor
    inflates the scale (the reading after a spike is judged against the
    undisturbed forecast). Readings between HUBER and THRESHOLD update the
    level with a Huber-clipped residual: they count, but boundedly.

    Level shift: RUN_LEN consecutive residuals beyond HUBER*scale with the
    same sign that agree with one another (each within RUN_AGREE of their
    median) are one step, not spikes: the level is re-seeded at
    forecast + median residual and the reading is labelled "shift". Spikes
    are independent (p=1%), so three same-sign ones in a row almost never
    happen, and two spikes in a row rarely agree. A variance shift (noise
    suddenly much larger, anomalies of both signs) is handled alike:
    WILD_LEN anomalies in a row re-seed the scale from their median |r|.

    Warm-up: the first WARMUP valid readings are labelled "warmup" and
    buffered; from MIN_WARM readings on, a reading far from a Theil-Sen line
    through the buffer is flagged and kept out of the buffer (RUN_LEN such
    outliers in a row restart the warm-up from them: the series moved). The
    yardstick is the larger of the MAD of the line's residuals and the mean
    step between readings, because the MAD of five points is often far too
    small (and blind to curvature); WARM_THRESHOLD=10 is high since only
    gross outliers can be told apart this early. The seed is that robust
    line (level at the last reading, slope as trend) and its yardstick
    widened by SEED_WIDEN, which the scale EWMA narrows within ~20
    readings. Measured on the simulator (400 series x 4 seeds): MIN_WARM 4
    and no widening gave 28 false alarms in the first 40 readings, MIN_WARM
    6 with widening 1.5 gave 1, at the cost of ~0.3% recall (spikes in the
    first six readings).

    Timestamps (ts) are accepted but the model counts readings, not
    seconds: devices report on a fixed interval, and the ts format is the
    sender's.

    Plain Python floats, not numpy, measured on a 500-reading batch (one
    core): decoding + scoring + encoding take ~1.4 ms (~370,000 readings/s,
    7x the goal); of that, validation, the series lookup and the output
    dicts (needed either way) are ~0.3 ms and the arithmetic ~0.37 ms. A
    numpy gather/update/scatter of that arithmetic measured ~0.07 ms, but
    it covers only the plain path: warm-up, runs, re-seeds and a series
    repeated in one batch need the per-reading code anyway. A ~20% gain did
    not pay for two implementations of one state machine.

    Memory is bounded: at most max_series states, least recently seen
    evicted (an evicted series restarts its warm-up).
    """

    VERSION = "robust-holt-1.0"
    ALPHA = 0.8
    BETA = 0.3
    GAMMA = 0.05  # scale EWMA weight
    THRESHOLD = 6.0
    HUBER = 3.0
    CLIP_SCALE = 3.0
    RUN_LEN = 3
    RUN_AGREE = 0.5
    WILD_LEN = 8
    WARMUP = 10
    MIN_WARM = 6
    WARM_THRESHOLD = 10.0
    SEED_WIDEN = 1.5
    SCALE_FLOOR_ABS = 1e-3
    SCALE_FLOOR_REL = 1e-4
    SIGMA_PER_MAD = math.sqrt(math.pi / 2)  # E|N(0,s)| = s*sqrt(2/pi)

    def __init__(self, max_series=200000):
        self.max_series = max_series
        self.series = collections.OrderedDict()
        self.lock = threading.Lock()

    def __len__(self):
        return len(self.series)

    def _state(self, key):
        st = self.series.get(key)
        if st is None:
            st = _Series()
            self.series[key] = st
            if len(self.series) > self.max_series:
                self.series.popitem(last=False)
        else:
            self.series.move_to_end(key)
        return st

    def _floor(self, level):
        return max(self.SCALE_FLOOR_ABS, self.SCALE_FLOOR_REL * abs(level))

    def score_readings(self, readings):
        """Scores a list of readings in order; one dict per reading."""
        out = []
        with self.lock:
            for rd in readings:
                key, x = _validate_reading(rd)
                if key is None:
                    out.append({"score": None, "anomaly": False, "label": "invalid"})
                    continue
                out.append(self.update(self._state(key), x))
        return out

    def update(self, st, x):
        """Feeds one value to a series; returns its score entry."""
        st.n += 1
        if st.n <= self.WARMUP:
            return self._warm(st, x)
        forecast = st.level + st.trend
        scale = max(self.SIGMA_PER_MAD * st.mad, self._floor(forecast))
        r = x - forecast
        score = abs(r) / scale
        anomaly = score > self.THRESHOLD
        label = "anomaly" if anomaly else "normal"

        if abs(r) > self.HUBER * scale:
            sign = 1 if r > 0 else -1
            if sign != st.run_sign:
                st.run_sign, st.run = sign, []
            st.run.append(r)
            if len(st.run) >= self.RUN_LEN:
                med = _median(st.run)
                if all(abs(v - med) <= self.RUN_AGREE * abs(med) for v in st.run):
                    st.level = forecast + med
                    st.run_sign, st.run, st.wild = 0, [], []
                    return _entry(score, anomaly, "shift")
                del st.run[0]
        else:
            st.run_sign, st.run = 0, []

        if anomaly:
            st.wild.append(abs(r))
            if len(st.wild) >= self.WILD_LEN:
                st.mad = 1.4826 * _median(st.wild) / self.SIGMA_PER_MAD  # median|r| -> sigma -> mean|r|
                st.level = x
                st.run_sign, st.run, st.wild = 0, [], []
                return _entry(score, anomaly, "shift")
            st.level = forecast
            return _entry(score, anomaly, label)
        st.wild = []
        lim = self.HUBER * scale
        rc = lim if r > lim else (-lim if r < -lim else r)
        st.level = forecast + self.ALPHA * rc
        st.trend += self.ALPHA * self.BETA * rc
        a = abs(r)
        lim = self.CLIP_SCALE * scale
        st.mad += self.GAMMA * ((a if a < lim else lim) - st.mad)
        return _entry(score, anomaly, label)

    def _warm(self, st, x):
        buf = st.buf
        score = None
        anomaly = False
        if len(buf) >= self.MIN_WARM - 1:
            last, slope = _theil_sen(buf)
            pred = last + slope
            resid = [y - (last - slope * (len(buf) - 1 - i)) for i, y in enumerate(buf)]
            # A MAD of a few points is noisy and blind to curvature: never
            # trust it below the typical step between readings.
            steps = [abs(buf[i + 1] - buf[i]) for i in range(len(buf) - 1)]
            sigma = max(1.4826 * _median([abs(v) for v in resid]), sum(steps) / len(steps), self._floor(pred))
            score = abs(x - pred) / sigma
            anomaly = score > self.WARM_THRESHOLD
        if anomaly:
            st.n -= 1  # an outlier does not count towards the warm-up
            st.wild.append(x)
            if len(st.wild) < self.RUN_LEN:
                return _entry(score, True, "anomaly")
            # Outliers in a row are the series' new place, not spikes:
            # start the warm-up again from them.
            st.buf, st.wild = list(st.wild), []
            st.n = len(st.buf)
            return _entry(score, False, "shift")
        st.wild = []
        buf.append(x)
        if len(buf) >= self.WARMUP:
            st.level, st.trend = _theil_sen(buf)
            resid = [y - (st.level - st.trend * (len(buf) - 1 - i)) for i, y in enumerate(buf)]
            steps = [abs(buf[i + 1] - buf[i]) for i in range(len(buf) - 1)]
            # Seed wide (ten points under-estimate the spread, and the line
            # misses curvature); the EWMA narrows it within ~20 readings.
            sigma = self.SEED_WIDEN * max(1.4826 * _median([abs(v) for v in resid]), sum(steps) / len(steps),
                                          self._floor(st.level))
            st.mad = sigma / self.SIGMA_PER_MAD
            st.buf = []
            st.n = self.WARMUP
        return _entry(score, False, "warmup")


def _entry(score, anomaly, label):
    if score is not None and not math.isfinite(score):
        score = None
    return {"score": score, "anomaly": anomaly, "label": label}


def _valid_name(v):
    return type(v) is str and 1 <= len(v) <= MAX_ID_LEN


def _validate_reading(rd):
    """Returns ((device, metric), value) or (None, None) for an invalid one."""
    if type(rd) is not dict:
        return None, None
    dev = rd.get("device")
    met = rd.get("metric")
    val = rd.get("value")
    if not (_valid_name(dev) and _valid_name(met)):
        return None, None
    t = type(val)
    if t is float:
        if not math.isfinite(val):
            return None, None
    elif t is int:
        try:
            val = float(val)
        except OverflowError:
            return None, None
    else:
        return None, None  # bool, str, null, …
    ts = rd.get("ts")
    if ts is not None and type(ts) not in (str, int, float):
        return None, None
    return (dev, met), val


# --------------------------------------------------------------------------
# Requests.
# --------------------------------------------------------------------------


class Worker:
    def __init__(self, max_series, test_models):
        self.model = AnomalyModel(max_series)
        self.test_models = test_models
        self.models = ["anomaly", "ping"] + (["sleep", "echo"] if test_models else [])

    def handle(self, req):
        """Returns the result of a parsed request or raises RequestError."""
        model = req.get("model_id")
        if model is None or model == "":
            model = "anomaly"
        if type(model) is not str:
            raise RequestError("bad_request", "model_id must be a string")
        data = req.get("data")
        if model == "anomaly":
            if type(data) is not dict:
                raise RequestError("bad_request", "data must be an object")
            readings = data.get("readings")
            if type(readings) is not list:
                raise RequestError("bad_request", "data.readings must be an array")
            if len(readings) > MAX_READINGS:
                raise RequestError("bad_request", "at most %d readings per request" % MAX_READINGS)
            scores = self.model.score_readings(readings)
            return {"model": "anomaly", "version": AnomalyModel.VERSION, "scores": scores}
        if model == "ping":
            return {"models": self.models, "series": len(self.model), "version": AnomalyModel.VERSION}
        if self.test_models and model == "sleep":
            ms = data.get("ms") if type(data) is dict else None
            if type(ms) is not int or not 0 <= ms <= MAX_SLEEP_MS:
                raise RequestError("bad_request", "data.ms must be an integer 0..%d" % MAX_SLEEP_MS)
            time.sleep(ms / 1000.0)
            return {"slept_ms": ms}
        if self.test_models and model == "echo":
            if data is None:  # a null result would read as "no result"
                raise RequestError("bad_request", "echo needs data")
            return data
        raise RequestError("unknown_model", "unknown model %s" % json.dumps(model[:MAX_ID_LEN]))

    def respond(self, body):
        """Turns one frame body into one response body (bytes)."""
        start = time.perf_counter()
        rid = None
        try:
            try:
                req = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise RequestError("invalid_json", "the frame is not UTF-8 JSON")
            if type(req) is not dict:
                raise RequestError("bad_request", "the request must be a JSON object")
            r = req.get("request_id")
            if type(r) is str and 1 <= len(r) <= MAX_ID_LEN:
                rid = r
            else:
                raise RequestError("bad_request", "request_id must be a string of 1..%d characters" % MAX_ID_LEN)
            resp = {"request_id": rid, "result": self.handle(req)}
        except RequestError as e:
            resp = {"request_id": rid, "error": {"code": e.code, "message": e.message}}
        except Exception as e:  # a bug must cost one request, not the worker
            log("error", "request failed", error=type(e).__name__)
            resp = {"request_id": rid, "error": {"code": "internal", "message": "internal error"}}
        resp["processing_time_ms"] = (time.perf_counter() - start) * 1000.0
        return encode(resp)


def encode(obj):
    try:
        s = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity (only "echo" can carry one)
        s = json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)
    return s.encode("utf-8")


def _finite(v):
    if type(v) is float:
        return v if math.isfinite(v) else None
    if type(v) is dict:
        return {k: _finite(x) for k, x in v.items()}
    if type(v) is list:
        return [_finite(x) for x in v]
    return v


def error_frame(code, message):
    return encode({"request_id": None, "error": {"code": code, "message": message}, "processing_time_ms": 0.0})


# --------------------------------------------------------------------------
# The socket server.
# --------------------------------------------------------------------------


def send_frame(conn, body):
    conn.sendall(_HEADER.pack(len(body)) + body)


def recv_exact(conn, n, deadline=None):
    """Reads n bytes; None on EOF, a reset, or the deadline passing.

    The deadline bounds the whole read, not each recv, so a client that
    trickles a byte now and then cannot hold its thread forever."""
    buf = bytearray()
    while len(buf) < n:
        try:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                conn.settimeout(left)
            chunk = conn.recv(min(n - len(buf), 1 << 20))
        except OSError:  # socket.timeout is an OSError
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Server:
    def __init__(self, path, worker, max_conns, body_timeout):
        self.path = path
        self.worker = worker
        self.max_conns = max_conns
        self.body_timeout = body_timeout
        self.active = 0
        self.mu = threading.Lock()
        self.listener = None
        self.ino = None

    def bind(self):
        """Binds the socket; returns an error message or None."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                return "the socket path exists and is not a socket; not touching it"
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(self.path)
                return "another worker is listening on the socket"
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # stale: nobody listens
            except OSError as e:
                return "cannot probe the existing socket: %s" % e
            finally:
                probe.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.umask(0o077)
        ln = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            ln.bind(self.path)
            os.chmod(self.path, 0o600)
            ln.listen(128)
        except OSError as e:
            ln.close()
            return "cannot listen: %s" % e
        self.ino = os.stat(self.path).st_ino
        self.listener = ln
        return None

    def close(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        try:  # only our own socket: a successor may have replaced it
            if os.stat(self.path).st_ino == self.ino:
                os.unlink(self.path)
        except OSError:
            pass

    def serve(self):
        while True:
            conn, _ = self.listener.accept()
            with self.mu:
                busy = self.active >= self.max_conns
                if not busy:
                    self.active += 1
            if busy:
                try:
                    conn.settimeout(1.0)
                    send_frame(conn, error_frame("busy", "too many connections"))
                except OSError:
                    pass
                conn.close()
                continue
            threading.Thread(target=self.conn_loop, args=(conn,), daemon=True).start()

    def conn_loop(self, conn):
        try:
            while True:
                conn.settimeout(None)  # an idle client may wait between requests
                first = recv_exact(conn, 1)
                if first is None:
                    return
                # From the first byte on, the frame has body_timeout to
                # arrive, and its answer as long to be taken.
                deadline = time.monotonic() + self.body_timeout
                rest = recv_exact(conn, 3, deadline)
                if rest is None:
                    return
                (n,) = _HEADER.unpack(first + rest)
                conn.settimeout(self.body_timeout)
                if n == 0 or n > MAX_FRAME:
                    # The stream cannot be resynchronised without reading n
                    # bytes, which for a huge n we refuse to do: answer, close.
                    if n == 0:
                        send_frame(conn, error_frame("bad_frame", "empty frame"))
                    else:
                        msg = "frame of %d bytes exceeds %d" % (n, MAX_FRAME)
                        send_frame(conn, error_frame("frame_too_large", msg))
                    return
                body = recv_exact(conn, n, deadline)
                if body is None:
                    return
                resp = self.worker.respond(body)
                conn.settimeout(self.body_timeout)
                send_frame(conn, resp)
        except OSError:
            return
        finally:
            conn.close()
            with self.mu:
                self.active -= 1


class _Stop(Exception):
    pass


def _on_signal(signum, frame):
    raise _Stop()


def main(argv=None):
    p = argparse.ArgumentParser(description="Unhidra ML inference worker")
    p.add_argument("--socket", help="Unix socket path (default: $ML_SOCKET_PATH)")
    p.add_argument("--test-models", action="store_true", help='also serve "sleep" and "echo"')
    p.add_argument("--max-conns", type=int, default=64)
    p.add_argument("--max-series", type=int, default=200000)
    p.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT_S, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    path = args.socket or os.environ.get("ML_SOCKET_PATH")
    if not path:
        log("error", "no socket path: pass --socket or set ML_SOCKET_PATH")
        return 2
    if args.max_conns < 1 or args.max_series < 1:
        log("error", "--max-conns and --max-series must be positive")
        return 2

    srv = Server(path, Worker(args.max_series, args.test_models), args.max_conns, args.body_timeout)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        err = srv.bind()
        if err:
            log("error", err, socket=path)
            return 2
        log("info", "listening", socket=path, version=AnomalyModel.VERSION,
            max_conns=args.max_conns, max_series=args.max_series, test_models=args.test_models)
        srv.serve()
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log("info", "stopping", socket=path)
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
