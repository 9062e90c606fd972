"""Worker benchmark: is the streaming pipeline as fast as Triton allows, and how much does it
gain over a naive consumer? Prints one table for one run on one machine and model.

    (a)  Triton alone: perf_analyzer (tritonclient 2.48 wheel), batch and concurrency matched to
         the worker (maxBatchSize x maxInFlightBatches); a direct tritonclient gRPC load
         generator at the same settings is reported too (and used if perf_analyzer cannot run)
    (b)  the pipeline: Pulsar -> worker (text-embedding, real subprocess) -> Triton -> Pulsar,
         throughput over a backlog, and end-to-end latency at a paced rate
    (c)  a naive consumer: receive one, tokenize, infer one, produce one (awaiting the broker),
         ack; same model through the same Triton
    (f)  a Python Pulsar Function doing the same (``bench/pulsar_function_embed.py``: one
         message per call, one Triton call each), deployed on the stack's functions worker
         over the same backlog, through the same Triton
    passthrough stage vs a raw pulsar-client consume -> produce loop (no model)
    passthrough stage with delivery.guarantee EffectivelyOnce vs AtLeastOnce (the cost of
         de-duplicated, unbatched output producers)
    every row that consumes: CPU seconds per 1,000 items of the process doing the work (the
         worker subprocess, or the loop in this process)

Every row is measured ``--repeat`` times, interleaved so that all rows see the same machine
load; the table shows medians. Needs the local stack (``make stack-up``).

    python -m bench.bench_workers [--repeat 3] [--items 3000] [--function-items 600]
                                  [--delivery-only]
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pulsar
import typer
from bench import perf_analyzer
from rich.console import Console
from rich.table import Table
from tests.integration.worker.pipeline import (
    Collector,
    Topics,
    WorkerProcess,
    client,
    publish,
    worker_config,
)
from tritonclient import grpc as grpc_sync
from tritonclient.grpc import aio as grpc_aio
from tritonclient.utils import np_to_triton_dtype

from streamvane_operator.pulsar.admin import PulsarAdmin, TopicName
from streamvane_stack import Stack
from streamvane_stack.stack import Triton
from streamvane_worker.inference import paths
from streamvane_worker.inference.tokenizer import Encoded, TextTokenizer
from streamvane_worker.io.base import Received
from streamvane_worker.io.pulsar import PulsarAttemptLog
from streamvane_worker.stages.item import ContentItem

MODEL = paths.DEFAULT_MODEL
BATCH = 64
IN_FLIGHT = 4
CHECK_DELAY = "managedLedgerNewEntriesCheckDelayInMillis"
"""How long a caught-up cursor waits before it looks for new entries: latency per hop."""
console = Console(width=150)


def bench_items(n: int) -> list[dict[str, Any]]:
    """Short texts: the CPU python backend, not the tokenizer, must be what is measured."""
    return [
        {"id": f"item-{i}", "title": f"clip {i}", "description": "cats playing piano"}
        for i in range(n)
    ]


@dataclass
class Row:
    name: str
    throughputs: list[float] = field(default_factory=list)
    cpu_per_1000: list[float] = field(default_factory=list)
    """CPU seconds per 1,000 items of the process doing the work (the worker, or the loop)."""
    latencies_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return _median(self.throughputs)

    @property
    def median_cpu(self) -> float:
        return _median(self.cpu_per_1000)

    def add(self, run: Run) -> None:
        self.throughputs.append(run.items_per_s)
        self.cpu_per_1000.append(run.cpu_s_per_1000)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass(frozen=True)
class Run:
    items_per_s: float
    cpu_s_per_1000: float


def _median(values: list[float]) -> float:
    measured = [v for v in values if not math.isnan(v)]
    return statistics.median(measured) if measured else math.nan


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encoded_batch(tokenizer: TextTokenizer) -> Encoded:
    texts = [ContentItem.model_validate(i).text() for i in bench_items(BATCH)]
    return tokenizer.encode(texts)


async def triton_direct(
    url: str, model: str, arrays: dict[str, np.ndarray], concurrency: int, seconds: float
) -> float:
    """Rows/s of ``concurrency`` closed-loop gRPC callers sending the batch ``arrays`` to
    ``model`` (perf_analyzer's model of load)."""
    client_ = grpc_aio.InferenceServerClient(url)
    inputs = []
    for name, array in arrays.items():
        tensor = grpc_aio.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    rows = len(next(iter(arrays.values())))
    done = 0
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await client_.infer(model, inputs)
            done += rows

    await client_.infer(model, inputs)  # warm-up
    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await client_.close()
    return done / elapsed


def pipeline_throughput(
    stack: Any,
    tmp: Path,
    stage_type: str,
    n: int,
    batching: dict[str, int],
    guarantee: str = "AtLeastOnce",
) -> Run:
    """Items/s through a worker subprocess over a backlog of ``n``, first to last output, and
    the worker process's CPU over that window.

    Timed from the output topic's broker counters, so no consumer in this process competes
    with the pipeline for the CPU; the outputs are read (and their ids checked) afterwards.
    EffectivelyOnce runs as the operator sets it up: Failover, de-duplicated output."""
    topics = Topics.unique(f"bench-{stage_type}-{guarantee.lower()}")
    overrides: dict[str, Any] = {"batching": batching, "delivery": {"guarantee": guarantee}}
    if guarantee == "EffectivelyOnce":
        overrides["input"] = {"subscriptionType": "Failover"}
        with contextlib.closing(PulsarAdmin(stack.pulsar_admin_url)) as admin:
            admin.create_topic(TopicName.parse(topics.output), 0)
            admin.set_deduplication(TopicName.parse(topics.output), True)
    c = client(stack)
    # The subscription keeps the outputs; nobody reads them until the timing is done.
    collector = Collector(c, topics.output)
    collector.close()
    publish(c, topics.input, bench_items(n))
    worker = WorkerProcess(worker_config(stack, topics, stage_type, **overrides), tmp).start()
    try:
        worker.wait_started()
        _wait_published(stack, topics.output, 1, timeout=60)
        assert worker.proc is not None
        started, cpu_started = time.monotonic(), cpu_seconds(worker.proc.pid)
        _wait_published(stack, topics.output, n, timeout=600)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(worker.proc.pid) - cpu_started
        worker.terminate()
        collector = Collector(c, topics.output, collector.subscription)
        collector.until(n, timeout=120)
        assert len(set(collector.ids())) == n, "the pipeline lost items"
    finally:
        worker.kill()
        collector.close()
        c.close()
    return Run((n - 1) / elapsed, 1000 * cpu / (n - 1))


def _wait_published(stack: Any, topic: str, count: int, timeout: float) -> None:
    tenant_namespace_topic = topic.removeprefix("persistent://")
    url = f"{stack.pulsar_admin_url}/admin/v2/persistent/{tenant_namespace_topic}/stats"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if json.load(response)["msgInCounter"] >= count:
                    return
        except urllib.error.HTTPError as e:
            if e.code != 404:  # the topic appears with the worker's producer
                raise
        time.sleep(0.05)
    raise TimeoutError(f"{topic}: fewer than {count} messages after {timeout}s")


def pipeline_latency(stack: Any, tmp: Path, rate: float, seconds: float) -> list[float]:
    """End-to-end latency (ms, publish -> consumed from the output topic) at a paced rate."""
    topics = Topics.unique("bench-latency")
    c = client(stack)
    collector = Collector(c, topics.output)
    worker = WorkerProcess(worker_config(stack, topics, batching=_batching()), tmp).start()
    producer = c.create_producer(topics.input, batching_enabled=False, block_if_queue_full=True)
    try:
        worker.wait_started()
        n = int(rate * seconds)
        started = time.monotonic()
        for i, item in enumerate(bench_items(n)):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            item["benchSentMs"] = time.time() * 1000
            producer.send_async(json.dumps(item).encode(), None)
        producer.flush()
        latencies = [message_latency_ms(m) for m in collector.until(n, timeout=120)]
        worker.terminate()
    finally:
        worker.kill()
        collector.close()
        c.close()
    return latencies


def message_latency_ms(message: pulsar.Message) -> float:
    """Output publish time (broker clock, same host) minus the producer's send time."""
    return message.publish_timestamp() - json.loads(message.data())["benchSentMs"]


def naive_consumer(stack: Any, n: int, tokenizer: TextTokenizer) -> Run:
    """Items/s of receive one -> tokenize -> infer one -> send and wait -> ack, and the CPU of
    this process (the consumer) meanwhile."""
    topics = Topics.unique("bench-naive")
    c = client(stack)
    publish(c, topics.input, bench_items(n))
    consumer = c.subscribe(topics.input, "naive", initial_position=pulsar.InitialPosition.Earliest)
    producer = c.create_producer(topics.output, batching_enabled=False)
    triton = grpc_sync.InferenceServerClient(stack.triton_grpc)
    started, cpu_started = time.monotonic(), cpu_seconds()
    for _ in range(n):
        message = consumer.receive()
        item = ContentItem.model_validate_json(message.data())
        encoded = tokenizer.encode([item.text()])
        inputs = []
        for name, array in (
            ("input_ids", encoded.input_ids),
            ("attention_mask", encoded.attention_mask),
        ):
            tensor = grpc_sync.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        vector = triton.infer(MODEL, inputs).as_numpy("embedding")[0]
        out = item.model_dump(by_alias=True, exclude_none=True) | {"embedding": vector.tolist()}
        producer.send(json.dumps(out).encode())
        consumer.acknowledge(message)
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu_started
    triton.close()
    c.close()
    return Run(n / elapsed, 1000 * cpu / n)


FUNCTION_FILE = Path(__file__).with_name("pulsar_function_embed.py")
FUNCTIONS = "/admin/v3/functions/public/default"


def pulsar_function(stack: Any, n: int, triton_url: str) -> Run:
    """Items/s of the Python Pulsar Function (``FUNCTION_FILE``) over a backlog of ``n``, first
    to last output (broker counters, as for the pipeline), and the CPU of its instance
    process (the functions worker starts one python process per instance)."""
    topics = Topics.unique("bench-function")
    name = topics.input.rsplit("/", 1)[1]
    c = client(stack)
    collector = Collector(c, topics.output)
    collector.close()
    publish(c, topics.input, bench_items(n))
    config = {
        "tenant": "public",
        "namespace": "default",
        "name": name,
        "className": f"{FUNCTION_FILE.stem}.Embed",
        "py": FUNCTION_FILE.name,
        "runtime": "PYTHON",
        "inputs": [topics.input],
        "output": topics.output,
        "parallelism": 1,
        "processingGuarantees": "ATLEAST_ONCE",
        "autoAck": True,
        "subscriptionPosition": "Earliest",
        "userConfig": {
            "tritonUrl": triton_url,
            "model": MODEL,
            "tokenizer": str(paths.tokenizer_path()),
        },
    }
    admin = httpx.Client(base_url=stack.pulsar_admin_url, timeout=60)
    created = admin.post(
        f"{FUNCTIONS}/{name}",
        files={
            "functionConfig": (None, json.dumps(config).encode(), "application/json"),
            "data": (FUNCTION_FILE.name, FUNCTION_FILE.read_bytes(), "application/octet-stream"),
        },
    )
    if created.status_code >= 300:
        admin.close()
        c.close()
        raise RuntimeError(f"function not created: {created.status_code} {created.text[:500]}")
    try:
        _wait_published(stack, topics.output, 1, timeout=180)
        pid = _instance_pid(name)
        started, cpu_started = time.monotonic(), cpu_seconds(pid)
        _wait_published(stack, topics.output, n, timeout=600)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_started
    finally:
        admin.delete(f"{FUNCTIONS}/{name}")
        admin.close()
    try:
        collector = Collector(c, topics.output, collector.subscription)
        collector.until(n, timeout=120)
        assert len(set(collector.ids())) == n, "the function lost items"
    finally:
        collector.close()
        c.close()
    return Run((n - 1) / elapsed, 1000 * cpu / (n - 1))


def _instance_pid(function: str) -> int:
    """The python instance process the functions worker started for ``function``."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"python_instance_main.py") for a in argv) and (
            function.encode() in argv
        ):
            return int(proc.name)
    raise RuntimeError(f"no python instance process for function {function}")


def raw_passthrough(stack: Any, n: int) -> Run:
    """Items/s of a plain pulsar-client loop: receive, send_async, ack in the send callback,
    and the CPU of this process (the loop) meanwhile."""
    topics = Topics.unique("bench-raw")
    c = client(stack)
    publish(c, topics.input, bench_items(n))
    consumer = c.subscribe(topics.input, "raw", initial_position=pulsar.InitialPosition.Earliest)
    producer = c.create_producer(
        topics.output, batching_max_publish_delay_ms=2, block_if_queue_full=True
    )
    all_acked = threading.Event()
    acked = 0

    def on_sent(message: pulsar.Message) -> Callable[[pulsar.Result, object], None]:
        def callback(result: pulsar.Result, _: object) -> None:
            nonlocal acked
            consumer.acknowledge(message)
            acked += 1
            if acked == n:
                all_acked.set()

        return callback

    first = consumer.receive()
    started, cpu_started = time.monotonic(), cpu_seconds()
    producer.send_async(first.data(), on_sent(first))
    for _ in range(n - 1):
        message = consumer.receive()
        producer.send_async(message.data(), on_sent(message))
    all_acked.wait(120)
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu_started
    c.close()
    return Run((n - 1) / elapsed, 1000 * cpu / (n - 1))


async def journal_round_trips_ms(stack: Any, entries: int = 200) -> list[float]:
    """Each batch's attempt-journal entry (BATCH ids) written and read back, as a worker does
    before it works on the batch: what bounds a replica at maxInFlightBatches per trip."""
    c = client(stack)
    journal = await PulsarAttemptLog.create(c, Topics.unique("bench-journal").input, "bench")
    batch = [
        Received(b"", f"(1,{i},-1,-1)", "bench", redelivery_count=0, publish_time_ms=0)
        for i in range(BATCH)
    ]
    trips: list[float] = []
    try:
        for _ in range(entries):
            started = time.perf_counter()
            await journal.begin(batch)
            trips.append(1000 * (time.perf_counter() - started))
            journal.end(batch)
    finally:
        await journal.close()
        c.close()
    return trips


def broker_setting(stack: Any, key: str) -> str:
    """One of the broker's runtime settings, as it reports it (figures depend on some)."""
    answer = httpx.get(f"{stack.pulsar_admin_url}/admin/v2/brokers/configuration/runtime")
    answer.raise_for_status()
    return str(answer.json().get(key, "not reported"))


def _report_journal(stack: Any) -> None:
    trips = sorted(asyncio.run(journal_round_trips_ms(stack)))
    delay = broker_setting(stack, CHECK_DELAY)
    console.print(
        f"attempt journal, entry of {BATCH} ids written and read back: p50 "
        f"{statistics.median(trips):.2f} ms, p99 {trips[int(0.99 * len(trips))]:.2f} ms "
        f"(broker {CHECK_DELAY}={delay})"
    )


def _perf_analyzer_round(
    analyzer: perf_analyzer.PerfAnalyzer | None, url: str, batch: Encoded
) -> float:
    """perf_analyzer's items/s, or NaN (left out of medians) when it gave no figure."""
    if analyzer is None:
        return math.nan
    try:
        samples = perf_analyzer.token_samples(batch.input_ids.tolist())
        return analyzer.run(url, MODEL, samples, BATCH, IN_FLIGHT)
    except perf_analyzer.PerfAnalyzerUnavailable as e:
        console.log(f"perf_analyzer gave no figure this round: {e}")
        return math.nan


@contextlib.contextmanager
def private_triton(stack: Stack) -> Iterator[str]:
    """A tritonserver of our own on free ports, serving the same model repository, so requests
    from other users of the shared stack's Triton do not queue with the measured ones."""
    ports = [_free_port() for _ in range(3)]
    settings = dataclasses.replace(
        stack.settings,
        run_name=f"run-bench-triton-{uuid.uuid4().hex[:8]}",
        triton_http_port=ports[0],
        triton_grpc_port=ports[1],
        triton_metrics_port=ports[2],
    )
    triton = Triton(settings)
    triton.prepare(lambda _: None)
    triton.start()
    try:
        triton.wait_ready(lambda _: None)
        yield f"127.0.0.1:{settings.triton_grpc_port}"
    finally:
        triton.daemon.stop()
        shutil.rmtree(settings.run_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _arrays(batch: Encoded) -> dict[str, np.ndarray]:
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}


def _batching() -> dict[str, int]:
    return {"maxBatchSize": BATCH, "maxDelayMs": 10, "maxInFlightBatches": IN_FLIGHT}


def main(
    repeat: Annotated[int, typer.Option(min=1, help="Repetitions per row (medians shown).")] = 3,
    items: Annotated[int, typer.Option(min=100, help="Items per pipeline run.")] = 3000,
    naive_items: Annotated[int, typer.Option(min=10, help="Items per naive run.")] = 300,
    function_items: Annotated[
        int, typer.Option(min=10, help="Items per Pulsar Function run.")
    ] = 600,
    passthrough_items: Annotated[int, typer.Option(min=100)] = 20_000,
    latency_rate: Annotated[float, typer.Option(help="Items/s for the latency run.")] = 100.0,
    shared_triton: Annotated[
        bool, typer.Option(help="Use the stack's Triton instead of a private one.")
    ] = False,
    delivery_only: Annotated[
        bool,
        typer.Option(
            help="Only the rows without a model: the passthrough stage (AtLeastOnce and "
            "EffectivelyOnce) and the raw pulsar-client loop."
        ),
    ] = False,
) -> None:
    stack = Stack()
    if not stack.is_ready():
        raise typer.BadParameter("the local stack is not running: run `make stack-up`")
    endpoints = stack.endpoints
    tokenizer = TextTokenizer(paths.tokenizer_path())
    batch = encoded_batch(tokenizer)
    rows = {
        key: Row(name)
        for key, name in [
            ("a", "(a) Triton alone, perf_analyzer"),
            ("a_direct", "(a') Triton alone, tritonclient gRPC load generator"),
            ("b", "(b) pipeline Pulsar -> worker -> Triton -> Pulsar"),
            ("c", "(c) naive per-message consumer"),
            ("f", "(f) Pulsar Function (Python), same Triton"),
            ("pass", "passthrough stage worker (no model)"),
            ("pass_eo", "passthrough stage worker, EffectivelyOnce"),
            ("raw", "raw pulsar-client consume -> produce loop"),
        ]
    }
    if delivery_only:
        for round_ in range(1, repeat + 1):
            console.log(f"round {round_}/{repeat}")
            with tempfile.TemporaryDirectory() as scratch:
                _delivery_round(rows, stack.endpoints, Path(scratch), passthrough_items)
            rows["raw"].add(raw_passthrough(stack.endpoints, passthrough_items))
        report(rows, latency_rate)
        _report_journal(stack.endpoints)
        return
    try:
        analyzer: perf_analyzer.PerfAnalyzer | None = perf_analyzer.ensure()
    except perf_analyzer.PerfAnalyzerUnavailable as e:
        analyzer = None
        rows["a"].note = f"unavailable: {e}"
    settings = f"batch {BATCH}, concurrency {IN_FLIGHT}, {batch.input_ids.shape[1]} tokens"
    rows["a"].note = rows["a"].note or settings
    rows["a_direct"].note = settings
    with contextlib.ExitStack() as resources:
        tmp = Path(resources.enter_context(tempfile.TemporaryDirectory()))
        if not shared_triton:
            url = resources.enter_context(private_triton(stack))
            endpoints = dataclasses.replace(endpoints, triton_grpc=url)
        asyncio.run(
            triton_direct(endpoints.triton_grpc, MODEL, _arrays(batch), IN_FLIGHT, 3.0)
        )  # warm-up
        for round_ in range(1, repeat + 1):
            console.log(f"round {round_}/{repeat}")
            rows["a"].throughputs.append(
                _perf_analyzer_round(analyzer, endpoints.triton_grpc, batch)
            )
            rows["a_direct"].throughputs.append(
                asyncio.run(
                    triton_direct(endpoints.triton_grpc, MODEL, _arrays(batch), IN_FLIGHT, 10.0)
                )
            )
            rows["b"].add(pipeline_throughput(endpoints, tmp, "text-embedding", items, _batching()))
            rows["c"].add(naive_consumer(endpoints, naive_items, tokenizer))
            rows["f"].add(pulsar_function(endpoints, function_items, endpoints.triton_grpc))
            _delivery_round(rows, endpoints, tmp, passthrough_items)
            rows["raw"].add(raw_passthrough(endpoints, passthrough_items))
            console.log({k: round(r.throughputs[-1], 1) for k, r in rows.items() if r.throughputs})
        rows["b"].latencies_ms = pipeline_latency(endpoints, tmp, latency_rate, 10.0)
    report(rows, latency_rate)
    _report_journal(endpoints)


def _delivery_round(rows: dict[str, Row], endpoints: Any, tmp: Path, n: int) -> None:
    """The passthrough stage at both guarantees, one after the other (same machine load)."""
    for key, guarantee in (("pass", "AtLeastOnce"), ("pass_eo", "EffectivelyOnce")):
        rows[key].add(pipeline_throughput(endpoints, tmp, "passthrough", n, _batching(), guarantee))
    console.log({k: round(rows[k].throughputs[-1], 1) for k in ("pass", "pass_eo")})


def report(rows: dict[str, Row], latency_rate: float) -> None:
    table = Table(title=f"Worker benchmark ({MODEL}, medians)")
    table.add_column("measurement")
    table.add_column("items/s", justify="right")
    table.add_column("runs", justify="right")
    table.add_column("CPU s / 1k items", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("note")
    for row in rows.values():
        if not row.throughputs:
            continue
        table.add_row(
            row.name,
            f"{row.median:.1f}",
            " ".join(f"{t:.0f}" for t in row.throughputs),
            f"{row.median_cpu:.3f}" if row.cpu_per_1000 else "",
            f"{row.percentile(50):.0f}" if row.latencies_ms else "",
            f"{row.percentile(99):.0f}" if row.latencies_ms else "",
            row.note if row.name[1] != "b" else f"latency at {latency_rate:.0f} items/s",
        )
    console.print(table)
    ratios = Table(
        title="Ratios (items/s, and CPU seconds per item of the process doing the work); per "
        "round, as rows of one round share the machine's load"
    )
    ratios.add_column("ratio")
    ratios.add_column("median", justify="right")
    ratios.add_column("per round", justify="right")
    ratios.add_column("target")
    throughput: Callable[[Row], list[float]] = attrgetter("throughputs")
    cpu: Callable[[Row], list[float]] = attrgetter("cpu_per_1000")
    pairs = [
        ("(b)/(a) perf_analyzer", throughput, rows["b"], rows["a"], ">= 0.8"),
        ("(b)/(a') direct gRPC", throughput, rows["b"], rows["a_direct"], ">= 0.8"),
        ("(b)/(c)", throughput, rows["b"], rows["c"], ">= 5"),
        ("(b)/(f) Pulsar Function", throughput, rows["b"], rows["f"], ">= 3"),
        ("passthrough / raw loop", throughput, rows["pass"], rows["raw"], ">= 0.8"),
        ("CPU per item: (b) worker / (c) naive", cpu, rows["b"], rows["c"], "<= 0.5"),
        ("CPU per item: (b) worker / (f) Pulsar Function", cpu, rows["b"], rows["f"], ""),
        ("CPU per item: passthrough / raw loop", cpu, rows["pass"], rows["raw"], ""),
        (
            "EffectivelyOnce / AtLeastOnce passthrough",
            throughput,
            rows["pass_eo"],
            rows["pass"],
            "",
        ),
        ("CPU per item: EffectivelyOnce / AtLeastOnce", cpu, rows["pass_eo"], rows["pass"], ""),
    ]
    for name, measure, top, bottom, target in pairs:
        if not (measure(top) and measure(bottom)):
            continue
        per_round = [t / u for t, u in zip(measure(top), measure(bottom), strict=True)]
        measured = [r for r in per_round if not math.isnan(r)]
        ratios.add_row(
            name,
            f"{statistics.median(measured):.2f}" if measured else "n/a",
            " ".join(f"{r:.2f}" for r in per_round),
            target,
        )
    console.print(ratios)


if __name__ == "__main__":
    typer.run(main)
