"""Benchmark: Mailroom's SMTP client against the stdlib's ``smtplib``, in one run.

    .venv/bin/python bench/smtp_client.py [--quick]

The same messages go through both clients, each over one reused connection to the same local
sink (every sink runs in its own process, on loopback only):

1. plain loopback into Postfix's ``smtp-sink`` (fast C sink: measures the client) and into
   an aiosmtpd sink: 2,000 messages of about 2 KB and 200 of about 100 KB, one recipient;
2. through a proxy that adds 10 ms each way, with 5 recipients per message, into smtp-sink
   (PIPELINING) and into a small sink that also offers CHUNKING (BDAT); fewer messages;
3. memory growth while sending one 25 MB message (each client in a fresh process, once
   measured by tracemalloc's peak and once by the peak RSS).

Targets (issue 2): at least 1.3x smtplib into smtp-sink on loopback, at least 3x smtplib
through the 10 ms proxy, and under 10 MB of growth for a 25 MB message. Prints tables and a
summary of ratios; it is not part of the test suite (tests/bench only smoke-runs --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import smtplib
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import BinaryIO

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # the repository, for mailer.smtp without installing

import _sinks  # noqa: E402

from mailer.smtp import SMTPClient  # noqa: E402

LOOPBACK = _sinks.LOOPBACK
SENDER = "bench@example.com"
LOCAL_NAME = "bench.localhost"
MB = 1024 * 1024

TARGET_LOOPBACK = 1.3
TARGET_PROXY = 3.0
TARGET_MEMORY_MB = 10.0


@dataclass(frozen=True)
class Sizes:
    small: int
    large: int
    proxy_small: int
    proxy_large: int
    memory_mb: int
    races: int  # loopback races per case; the one with the median ratio is shown


FULL = Sizes(small=2000, large=200, proxy_small=200, proxy_large=20, memory_mb=25, races=3)
QUICK = Sizes(small=300, large=30, proxy_small=20, proxy_large=4, memory_mb=25, races=1)


# --- messages ------------------------------------------------------------------------------

_WORDS = (
    "mail outbox relay server client queue message letter account delivery "
    "recipient sender header body chunk pipeline round trip latency"
).split()


def text_body(rng: random.Random, size: int) -> str:
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(11))
        lines.append(line)
        total += len(line) + 2
    return "\n".join(lines) + "\n"


def build_message(
    index: int, recipients: Sequence[str], body_size: int, attachment_size: int = 0
) -> bytes:
    """A realistic message: headers, a text body and optionally a binary attachment
    (base64, so it adds about 4/3 of ``attachment_size``)."""
    rng = random.Random(index * 7919 + body_size + attachment_size)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = f"Bench Sender <{SENDER}>"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = f"Benchmark message {index}"
    msg["Date"] = "Fri, 27 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = f"<bench.{index}.{body_size}.{attachment_size}@example.com>"
    msg.set_content(text_body(rng, body_size))
    if attachment_size:
        msg.add_attachment(
            rng.randbytes(attachment_size),
            maintype="application",
            subtype="octet-stream",
            filename=f"data-{index}.bin",
        )
    return msg.as_bytes()


def recipients(count: int) -> list[str]:
    return [f"rcpt{i}@example.net" for i in range(count)]


def small_messages(count: int, rcpts: Sequence[str]) -> list[bytes]:
    return [build_message(i, rcpts, body_size=1700) for i in range(count)]


def large_messages(count: int, rcpts: Sequence[str]) -> list[bytes]:
    return [build_message(i, rcpts, body_size=4000, attachment_size=72_000) for i in range(count)]


# --- the two clients -------------------------------------------------------------------------


class OursSender:
    """Mailroom's client over one connection, kept open across batches."""

    name = "ours"

    def __init__(self, port: int) -> None:
        self.client = SMTPClient(LOOPBACK, port, security="none", local_hostname=LOCAL_NAME)
        self.client.connect()

    def send(self, messages: Sequence[bytes | BinaryIO], rcpts: Sequence[str]) -> None:
        for message in messages:
            result = self.client.send(SENDER, rcpts, message)
            if not result.delivered or result.rejected:
                raise RuntimeError(f"the sink did not take a message: {result}")

    def close(self) -> None:
        self.client.quit()


class SmtplibSender:
    """The stdlib's smtplib over one connection, kept open across batches."""

    name = "smtplib"

    def __init__(self, port: int) -> None:
        self.client = smtplib.SMTP(LOOPBACK, port, local_hostname=LOCAL_NAME)
        self.client.ehlo()

    def send(self, messages: Sequence[bytes], rcpts: Sequence[str]) -> None:
        for message in messages:
            refused = self.client.sendmail(SENDER, list(rcpts), message)
            if refused:
                raise RuntimeError(f"the sink refused recipients: {refused}")

    def close(self) -> None:
        self.client.quit()


SENDERS = (OursSender, SmtplibSender)


@dataclass
class Measure:
    """One client's figures for one case."""

    rate: float  # messages per second (wall clock)
    cpu: float  # the client's own CPU time per message, in microseconds
    turns: float | None = None  # round trips per message, counted by the proxy


@dataclass
class Row:
    sink: str
    label: str
    count: int
    ours: Measure
    smtplib: Measure
    target: float | None
    ratios: tuple[float, ...] = ()  # every race's ratio, when there were several

    @property
    def ratio(self) -> float:
        return self.ours.rate / self.smtplib.rate


def race(
    port: int,
    messages: Sequence[bytes],
    rcpts: Sequence[str],
    batch: int,
    proxy: _sinks.DelayProxy | None = None,
) -> dict[str, Measure]:
    """Send every message through each client, each over its own single connection.

    Both connections stay open and the clients take turns, ``batch`` messages at a time
    (who goes first alternates), so a busy moment of a shared machine lands on both
    clients alike instead of skewing one whole run. The CPU time is this thread's own
    (``time.thread_time``): unlike the wall clock, other processes do not inflate it."""
    senders = [cls(port) for cls in SENDERS]
    wall = dict.fromkeys((s.name for s in senders), 0.0)
    cpu = dict(wall)
    try:
        for number, start in enumerate(range(0, len(messages), batch)):
            chunk = messages[start : start + batch]
            for sender in senders if number % 2 == 0 else reversed(senders):
                wall_began, cpu_began = time.perf_counter(), time.thread_time()
                sender.send(chunk, rcpts)
                cpu[sender.name] += time.thread_time() - cpu_began
                wall[sender.name] += time.perf_counter() - wall_began
    finally:
        turns: dict[str, float | None] = dict.fromkeys(wall)
        for sender in senders:
            sender.close()
            if proxy is not None:
                turns[sender.name] = proxy.connection_stats()["turns"] / len(messages)
    count = len(messages)
    return {
        name: Measure(count / wall[name], cpu[name] / count * 1e6, turns[name]) for name in wall
    }


def loopback_rows(sizes: Sizes) -> list[Row]:
    rcpts = recipients(1)
    small = small_messages(sizes.small, rcpts)
    large = large_messages(sizes.large, rcpts)
    sinks = [("aiosmtpd", _sinks.aiosmtpd_sink, None)]
    if _sinks.smtp_sink_available():
        sinks.insert(0, ("smtp-sink", _sinks.smtp_sink, TARGET_LOOPBACK))
    else:
        print(f"! {_sinks.SMTP_SINK} not found (Debian package postfix): smtp-sink skipped")
    rows = []
    for name, start, target in sinks:
        with start() as port:
            for label, messages, batch in (("2 KB", small, 100), ("100 KB", large, 10)):
                races = [race(port, messages, rcpts, batch) for _ in range(sizes.races)]
                races.sort(key=lambda got: got["ours"].rate / got["smtplib"].rate)
                ratios = tuple(got["ours"].rate / got["smtplib"].rate for got in races)
                median = races[len(races) // 2]
                rows.append(
                    Row(
                        name,
                        label,
                        len(messages),
                        median["ours"],
                        median["smtplib"],
                        target,
                        ratios,
                    )
                )
    return rows


def proxy_rows(sizes: Sizes, delay: float) -> list[Row]:
    rcpts = recipients(5)
    small = small_messages(sizes.proxy_small, rcpts)
    large = large_messages(sizes.proxy_large, rcpts)
    sinks = [("chunking sink (PIPELINING, CHUNKING)", _sinks.chunking_sink)]
    if _sinks.smtp_sink_available():
        sinks.insert(0, ("smtp-sink (PIPELINING)", _sinks.smtp_sink))
    rows = []
    for name, start in sinks:
        with start() as sink_port, _sinks.DelayProxy(sink_port, delay) as proxy:
            for label, messages in (("2 KB", small), ("100 KB", large)):
                got = race(proxy.port, messages, rcpts, 10, proxy)
                rows.append(
                    Row(name, label, len(messages), got["ours"], got["smtplib"], TARGET_PROXY)
                )
    return rows


# --- memory ----------------------------------------------------------------------------------


def write_big_message(path: Path, megabytes: int) -> int:
    """A message of about ``megabytes`` MB (a base64 attachment), written to ``path``."""
    raw = megabytes * MB * 3 // 4
    data = build_message(0, recipients(1), body_size=2000, attachment_size=raw)
    path.write_bytes(data)
    return len(data)


def memory_child(client: str, how: str, port: int, path: Path) -> None:
    """Runs in a fresh process: send ``path`` once and print the growth as JSON.

    ``how`` is ``rss`` (peak RSS minus RSS before, no tracing overhead) or ``tracemalloc``
    (the peak of Python allocations during the send)."""
    before = _reset_peak_rss()
    if how == "tracemalloc":
        tracemalloc.start()
    sender = OursSender(port) if client == "ours" else SmtplibSender(port)
    with path.open("rb") as handle:
        # smtplib takes only str or bytes: it has to hold the whole message
        sender.send([handle if client == "ours" else handle.read()], recipients(1))
    sender.close()
    if how == "tracemalloc":
        growth = tracemalloc.get_traced_memory()[1]
    else:
        growth = _status_kb("VmHWM") * 1024 - before
    print(json.dumps({"growth": growth}))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS and return that, in bytes.
    (getrusage's ru_maxrss would not do: it keeps the parent's peak across fork and exec.)"""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # 5: reset the peak RSS, see proc(5)
    return _status_kb("VmRSS") * 1024


def memory_rows(sizes: Sizes) -> tuple[int, dict[str, dict[str, float]]]:
    """{client: {"rss": MB, "tracemalloc": MB}} for one message of ``sizes.memory_mb``."""
    figures: dict[str, dict[str, float]] = {cls.name: {} for cls in SENDERS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.eml"
        size = write_big_message(path, sizes.memory_mb)
        start = _sinks.smtp_sink if _sinks.smtp_sink_available() else _sinks.chunking_sink
        with start() as port:
            for client in figures:
                for how in ("tracemalloc", "rss"):
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--memory-child",
                            client,
                            how,
                            str(port),
                            str(path),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        timeout=300,
                    ).stdout
                    figures[client][how] = json.loads(out.splitlines()[-1])["growth"] / MB
    return size, figures


# --- output ----------------------------------------------------------------------------------


def _verdict(
    value: float, target: float | None, higher_is_better: bool = True, unit: str = "×"
) -> str:
    if target is None:
        return "(no target)"
    met = value >= target if higher_is_better else value < target
    sign = "≥" if higher_is_better else "<"
    return f"target {sign} {target:g}{unit}: {'met' if met else 'MISSED'}"


def print_table(title: str, rows: list[Row], with_turns: bool) -> None:
    print(f"\n{title}")
    print(
        f"  {'':<38}{'':>14}{'msg/s':>20}{'':>8}{'CPU µs/msg':>20}"
        + (f"{'round trips/msg':>20}" if with_turns else "")
    )
    print(
        f"  {'sink':<38}{'messages':>14}{'ours':>10}{'smtplib':>10}{'ratio':>8}"
        f"{'ours':>10}{'smtplib':>10}" + (f"{'ours':>10}{'smtplib':>10}" if with_turns else "")
    )
    for row in rows:
        ours, theirs = row.ours, row.smtplib
        line = (
            f"  {row.sink:<38}{f'{row.count} × {row.label}':>14}{ours.rate:>10,.1f}"
            f"{theirs.rate:>10,.1f}{f'{row.ratio:.2f}×':>8}{ours.cpu:>10,.0f}{theirs.cpu:>10,.0f}"
        )
        if with_turns:
            line += f"{ours.turns:>10.2f}{theirs.turns:>10.2f}"
        print(line)


def print_summary(
    rows: list[Row], memory: tuple[int, dict[str, dict[str, float]]] | None, delay_ms: float
) -> None:
    print("\nSummary")
    for row in rows:
        ours, theirs = row.ours, row.smtplib
        if ours.turns is None:
            where = "loopback"
            extra = (
                f", median of {len(row.ratios)} races: {', '.join(f'{r:.2f}' for r in row.ratios)}"
                if len(row.ratios) > 1
                else ""
            )
        else:
            where = f"proxy {delay_ms:g} ms each way"
            extra = f", round trips/msg {ours.turns:.2f} vs {theirs.turns:.2f}"
        print(
            f"  ratio ours/smtplib, {row.sink}, {where}, {row.label}: {row.ratio:.2f}× "
            f"({ours.rate:,.1f} vs {theirs.rate:,.1f} msg/s{extra})  "
            f"{_verdict(row.ratio, row.target)}"
        )
    if memory is not None:
        size, figures = memory
        ours, theirs = figures["ours"], figures["smtplib"]
        worst = max(ours.values())
        print(
            f"  memory growth sending {size / MB:.1f} MB: ours {ours['rss']:.1f} MB RSS, "
            f"{ours['tracemalloc']:.1f} MB tracemalloc peak; smtplib {theirs['rss']:.1f} MB "
            f"RSS, {theirs['tracemalloc']:.1f} MB tracemalloc peak  "
            f"{_verdict(worst, TARGET_MEMORY_MB, higher_is_better=False, unit=' MB')}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.010,
        help="the proxy's delay each way, in seconds (default 0.010)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("loopback", "proxy", "memory"),
        help="leave a part out",
    )
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        client, how, port, path = args.memory_child
        memory_child(client, how, int(port), Path(path))
        return 0
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(
        f"Mailroom SMTP client vs smtplib — Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} run; each client "
        "sends the same messages over its own reused connection, the two taking turns "
        "in batches"
        + (
            f"; loopback cases: the median of {sizes.races} such races." if sizes.races > 1 else "."
        ),
        flush=True,
    )
    rows: list[Row] = []
    if "loopback" not in args.skip:
        loop_rows = loopback_rows(sizes)
        print_table("Plain loopback, 1 recipient per message", loop_rows, with_turns=False)
        rows += loop_rows
    if "proxy" not in args.skip:
        prox_rows = proxy_rows(sizes, args.delay)
        print_table(
            f"Through a proxy adding {args.delay * 1000:g} ms each way, 5 recipients "
            "per message (round trips include the session's EHLO and QUIT)",
            prox_rows,
            with_turns=True,
        )
        rows += prox_rows
    memory = None
    if "memory" not in args.skip:
        memory = memory_rows(sizes)
        size, figures = memory
        print(
            f"\nMemory growth while sending one {size / MB:.1f} MB message (fresh process "
            "each; ours streams the file, smtplib needs it as bytes)"
        )
        print(f"  {'client':<10}{'tracemalloc peak':>18}{'RSS growth':>12}")
        for client, fig in figures.items():
            print(f"  {client:<10}{fig['tracemalloc']:>15.1f} MB{fig['rss']:>9.1f} MB")
    print_summary(rows, memory, args.delay * 1000)
    print(f"\nTotal time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
