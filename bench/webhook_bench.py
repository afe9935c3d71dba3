"""Webhook Lambda benchmark: warm latency beside a bare SendMessage, cold import beside boto3.

Run with `make bench`. Both sides of each ratio are measured in the same run, interleaved, against
the same moto server on 127.0.0.1, so machine noise hits both alike.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

from bench.common import moto_server, summary  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "400"))
IMPORT_ROUNDS = int(os.environ.get("BENCH_IMPORT_ROUNDS", "15"))


def warm_latency() -> dict[str, dict[str, float]]:
    import boto3
    from tests.conftest import TEMPLATES, LambdaContext
    from tests.support.webhooks import SECRET, proxy_event, workflow_job_payload

    with moto_server():
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
        os.environ.update(
            JOB_QUEUE_URL=queue, WEBHOOK_SECRET=SECRET, RUNNER_TEMPLATES=json.dumps(TEMPLATES)
        )
        from jitrunners.aws.clients import client
        from jitrunners.handlers import webhook
        from jitrunners.observability import logger

        logger.setLevel("WARNING")  # measure the work, not the terminal
        ctx = LambdaContext()
        body = json.dumps(workflow_job_payload())
        events = [proxy_event(body) for _ in range(ROUNDS)]
        bare_client = client("sqs")  # same client, same connection pool as the handler
        sink = io.StringIO()
        handler_s: list[float] = []
        bare_s: list[float] = []
        with redirect_stdout(sink):
            for _ in range(20):  # warm both paths
                webhook.handler(events[0], ctx)
                bare_client.send_message(QueueUrl=queue, MessageBody=body)
            for event in events:
                t0 = time.perf_counter()
                response = webhook.handler(event, ctx)
                t1 = time.perf_counter()
                bare_client.send_message(QueueUrl=queue, MessageBody=body)
                t2 = time.perf_counter()
                assert response["statusCode"] == 202, response
                handler_s.append(t1 - t0)
                bare_s.append(t2 - t1)
                sink.seek(0)
                sink.truncate()
    return {"handler": summary(handler_s), "bare_send": summary(bare_s)}


def cold_import() -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambdas"), "PYTHONDONTWRITEBYTECODE": "1"}
    commands = {
        "handler": "import jitrunners.handlers.webhook",
        "boto3": "import boto3",
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(IMPORT_ROUNDS):
        for name, code in commands.items():  # interleaved
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times[name].append(time.perf_counter() - t0)
    return {name: summary(values)["p50"] for name, values in times.items()}


def main() -> None:
    warm = warm_latency()
    cold = cold_import()
    report = {
        "webhook_warm_ms": {
            k: {m: round(v * 1000, 3) for m, v in s.items()} for k, s in warm.items()
        },
        "webhook_p99_ratio_vs_bare_send": round(
            warm["handler"]["p99"] / warm["bare_send"]["p99"], 3
        ),
        "webhook_p50_ratio_vs_bare_send": round(
            warm["handler"]["p50"] / warm["bare_send"]["p50"], 3
        ),
        "cold_import_ms_p50": {k: round(v * 1000, 1) for k, v in cold.items()},
        "cold_import_ratio_vs_boto3": round(cold["handler"] / cold["boto3"], 3),
        "rounds": ROUNDS,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
