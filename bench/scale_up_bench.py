"""Scale-up Lambda benchmark: API calls per job (counted, not estimated) and handler time.

Run with `make bench`. AWS is a moto server on 127.0.0.1; GitHub is a tiny local HTTP server.
AWS calls are counted with botocore `before-call` hooks on the adapters' clients, GitHub calls by
the client's own counter. Handler time per job is printed beside the time its API calls took
(measured inside the same run), so the difference is the handler's own work.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from collections import Counter
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

from bench.common import free_port, moto_server, summary  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
BATCH = 10
AMI = "ami-12c6146b"


class FakeGitHub(BaseHTTPRequestHandler):
    """Just enough of GitHub's REST API for scale-up's happy path."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        last = int(path.rsplit("/", 1)[-1])
        if "/actions/runner-groups/" in path:  # asked once per process: a safe group
            self._reply(
                200, {"id": last, "visibility": "selected", "allows_public_repositories": False}
            )
            return
        self._reply(200, {"id": last, "status": "queued"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        sent = json.loads(self.rfile.read(length) or b"{}")
        self._reply(
            201, {"runner": {"id": 1, "name": sent.get("name")}, "encoded_jit_config": "x" * 2000}
        )


class ApiMeter:
    """Counts AWS calls by operation and the seconds spent inside AWS and GitHub calls."""

    def __init__(self) -> None:
        self.aws: Counter[str] = Counter()
        self.seconds = 0.0
        self._started: dict[int, float] = {}

    def attach(self, boto_client: Any) -> None:
        boto_client.meta.events.register("before-call", self._before)
        boto_client.meta.events.register("after-call", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        self.aws[f"{model.service_model.service_name}:{model.name}"] += 1
        self._started[threading.get_ident()] = time.perf_counter()

    def _after(self, **_: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop(threading.get_ident())

    def wrap_github(self, gh: Any) -> None:
        send = gh.session.request

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return send(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        gh.session.request = timed

    def reset(self, gh: Any) -> None:
        self.aws.clear()
        gh.calls.clear()
        self.seconds = 0.0


def setup_world(github_url: str) -> None:
    import boto3
    from tests.conftest import TEMPLATES

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"]
        for i in (1, 2)
    ]
    ec2.create_launch_template(
        LaunchTemplateName="jitrunners-linux-x64", LaunchTemplateData={"ImageId": AMI}
    )
    boto3.client("ssm").put_parameter(
        Name="/jitrunners/github-token", Value="ghp_bench", Type="SecureString"
    )
    queue = boto3.client("sqs").create_queue(QueueName="bench-jobs")["QueueUrl"]
    template = {**TEMPLATES[0], "max_runners": 100_000}
    os.environ.update(
        JOB_QUEUE_URL=queue,
        RUNNER_TEMPLATES=json.dumps([template]),
        GITHUB_TOKEN_PARAM="/jitrunners/github-token",
        GITHUB_API_URL=github_url,
        RUNNER_SUBNET_IDS=",".join(subnets),
        START_DELAY_S="0",
        MAX_RUNNERS="100000",
    )


def sqs_event(bodies: list[str], receives: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receives)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
            }
            for i, body in enumerate(bodies)
        ]
    }


def measure() -> dict[str, Any]:
    from tests.conftest import LambdaContext
    from tests.support.webhooks import workflow_job_payload

    github = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeGitHub)
    threading.Thread(target=github.serve_forever, daemon=True).start()
    try:
        with moto_server():
            setup_world(f"http://127.0.0.1:{github.server_address[1]}")
            from jitrunners.aws.clients import client
            from jitrunners.config import get_settings
            from jitrunners.github.client import get_client
            from jitrunners.handlers import scale_up
            from jitrunners.models import JobMessage, WorkflowJob
            from jitrunners.observability import logger

            logger.setLevel("WARNING")  # measure the work, not the terminal
            meter = ApiMeter()
            for service in ("ec2", "ssm", "sqs"):
                meter.attach(client(service))
            gh = get_client(get_settings())
            meter.wrap_github(gh)
            ctx = LambdaContext()
            sent: list[str] = []
            client("sqs").meta.events.register(
                "provide-client-params.sqs.SendMessageBatch",
                lambda params, **_: sent.extend(e["MessageBody"] for e in params["Entries"]),
            )
            next_job = iter(range(10_000, 10_000_000))

            def launches(n: int) -> list[str]:
                return [
                    JobMessage.launch_for(
                        WorkflowJob.from_payload(workflow_job_payload(job_id=next(next_job))),
                        "linux-x64",
                        "dlv",
                    ).to_json()
                    for _ in range(n)
                ]

            def one_round(n: int) -> dict[str, Any]:
                sent.clear()
                meter.reset(gh)
                t0 = time.perf_counter()
                response = scale_up.handler(sqs_event(launches(n)), ctx)
                t_launch = time.perf_counter() - t0
                assert not response["batchItemFailures"], response
                launch_aws, launch_gh = sum(meter.aws.values()), sum(gh.calls.values())
                launch_api_s = meter.seconds
                launch_ops = {**meter.aws, **gh.calls}
                starts = [b for b in sent if json.loads(b)["kind"] == "start"]
                assert len(starts) == n, (len(starts), n)
                meter.reset(gh)
                t0 = time.perf_counter()
                response = scale_up.handler(sqs_event(starts), ctx)
                t_start = time.perf_counter() - t0
                assert not response["batchItemFailures"], response
                return {
                    "launch": {
                        "aws": launch_aws,
                        "github": launch_gh,
                        "handler_s": t_launch,
                        "api_s": launch_api_s,
                        "ops": launch_ops,
                    },
                    "start": {
                        "aws": sum(meter.aws.values()),
                        "github": sum(gh.calls.values()),
                        "handler_s": t_start,
                        "api_s": meter.seconds,
                        "ops": {**meter.aws, **gh.calls},
                    },
                }

            sink = io.StringIO()
            with redirect_stdout(sink):
                one_round(1)  # warm: clients, token, connection pools
                single = [one_round(1) for _ in range(ROUNDS)]
                batch = [one_round(BATCH) for _ in range(max(3, ROUNDS // 5))]
    finally:
        github.shutdown()
    return {
        "single": _report(single, 1),
        "batch_of_10": _report(batch, BATCH),
        "operations_single_job": {k: single[0][k]["ops"] for k in ("launch", "start")},
        "operations_batch_of_10": {k: batch[0][k]["ops"] for k in ("launch", "start")},
    }


def _report(rounds: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    def per_job(kind: str, key: str) -> float:
        return rounds[0][kind][key] / jobs

    calls = {
        kind: {"aws": per_job(kind, "aws"), "github": per_job(kind, "github")}
        for kind in ("launch", "start")
    }
    total = sum(v for kind in calls.values() for v in kind.values())
    timing = {}
    for kind in ("launch", "start"):
        handler = summary([r[kind]["handler_s"] * 1000 / jobs for r in rounds])
        api = summary([r[kind]["api_s"] * 1000 / jobs for r in rounds])
        timing[kind] = {
            "handler_ms_per_job": {k: round(v, 2) for k, v in handler.items()},
            "api_calls_ms_per_job": {k: round(v, 2) for k, v in api.items()},
        }
    return {
        "calls_per_job": {k: {m: round(v, 2) for m, v in d.items()} for k, d in calls.items()},
        "calls_per_job_total": round(total, 2),
        "timing": timing,
        "rounds": len(rounds),
    }


def main() -> None:
    print(json.dumps(measure(), indent=2))


if __name__ == "__main__":
    main()
