"""A small stand-in for the Kubernetes API server, on loopback, for the kubernetes runner's tests: real HTTP that
the official `kubernetes` client talks to, and Jobs whose pods are real local processes.

It implements only the calls KubernetesJobRunner makes (the Role in deploy/components/kubernetes-runner grants the
same): create/get/delete Jobs, list/get pods, a pod's log (followed or tailed), create Services. A created Job gets
one "pod" per completion index; each runs the container's command as a process (with $(NODE_RANK) expanded from the
downward-API annotation, as the kubelet does) and its merged stdout and stderr are the pod's log. The Job is Complete
when every pod exits 0, Failed (BackoffLimitExceeded, backoffLimit 0) when one exits otherwise. A delete sends SIGTERM
to the pods' process groups and, with propagationPolicy Foreground, keeps the Job until they are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


class FakePod:
    def __init__(self, name: str, index: int, template: dict[str, Any], env: dict[str, str]) -> None:
        self.name, self.index = name, index
        self.labels = dict(template["metadata"]["labels"])
        self.spec = template["spec"]
        container = self.spec["containers"][0]
        values = {"NODE_RANK": str(index)}
        command = [re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), arg)
                   for arg in container["command"]]
        extra = {item["name"]: values.get(item["name"], item.get("value", "")) for item in container.get("env", [])}
        self.lines: list[bytes] = []
        self.eof = False
        self.done = threading.Condition()
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**env, **extra}, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.done:
                self.lines.append(line)
                self.done.notify_all()
        self.proc.wait()
        with self.done:
            self.eof = True
            self.done.notify_all()

    @property
    def exit_code(self) -> int | None:
        code = self.proc.poll()
        return None if code is None else (128 - code if code < 0 else code)

    def to_json(self) -> dict[str, Any]:
        code = self.exit_code
        state = {"running": {}} if code is None else {"terminated": {"exitCode": code,
                                                                      "reason": "Completed" if code == 0 else "Error"}}
        phase = "Running" if code is None else ("Succeeded" if code == 0 else "Failed")
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "labels": self.labels, "annotations": {INDEX_ANNOTATION: str(self.index)}},
            "spec": self.spec,
            "status": {"phase": phase, "containerStatuses": [
                {"name": self.spec["containers"][0]["name"], "state": state, "ready": code is None, "restartCount": 0,
                 "image": "x", "imageID": "x"}]},
        }


class FakeKubernetes:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[FakePod]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.deletions: list[tuple[str, str]] = []  # (job, propagationPolicy)
        self.requests: list[tuple[str, str]] = []   # (method, path)
        self.forbidden: set[str] = set()           # "create jobs"...: answered 403 as RBAC would
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        for pods in self.pods.values():
            for pod in pods:
                with_group(pod.proc.pid, signal.SIGKILL)
        self.server.shutdown()

    # -- state ----------------------------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self._lock:
            if name in self.jobs:
                raise Conflict(name)
            body["metadata"]["uid"] = str(uuid.uuid4())
            body["status"] = {}
            self.jobs[name] = body
            template = body["spec"]["template"]
            self.pods[name] = [FakePod(f"{name}-{i}-abcde", i, template, self.env)
                               for i in range(body["spec"]["completions"])]
        return body

    def job(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                return None
            codes = [pod.exit_code for pod in self.pods[name]]
            if any(code not in (None, 0) for code in codes):
                job["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                               "reason": "BackoffLimitExceeded",
                                                               "message": "Job has reached the specified backoff limit"}]}
            elif all(code == 0 for code in codes):
                job["status"] = {"succeeded": len(codes), "conditions": [{"type": "Complete", "status": "True"}]}
            return job

    def delete_job(self, name: str, policy: str) -> bool:
        with self._lock:
            if name not in self.jobs:
                return False
            self.deletions.append((name, policy))
            pods = self.pods[name]
        for pod in pods:
            with_group(pod.proc.pid, signal.SIGTERM)

        def finish() -> None:
            if policy == "Foreground":
                for pod in pods:
                    pod.proc.wait()
            with self._lock:
                self.jobs.pop(name, None)

        threading.Thread(target=finish, daemon=True).start()
        return True

    def find_pod(self, name: str) -> FakePod | None:
        return next((pod for pods in self.pods.values() for pod in pods if pod.name == name), None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and chunked log streams as the API server sends them

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, what: str) -> None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                 "message": f"{what} not found", "code": 404})

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((method, url.path))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                jobs = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?", url.path)
                pods = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?", url.path)
                services = re.fullmatch(r"/api/v1/namespaces/([^/]+)/services", url.path)
                if jobs and method == "POST" and "create jobs" in fake.forbidden:
                    return self._send(403, {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                        "message": 'jobs.batch is forbidden: User "system:serviceaccount:tuneserve:tuneserve" cannot '
                                   'create resource "jobs" in API group "batch" in the namespace "tuneserve"'})
                if jobs and method == "POST":
                    try:
                        return self._send(201, fake.create_job(body))
                    except Conflict:
                        return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                if jobs and jobs.group(2) and method == "GET":
                    job = fake.job(jobs.group(2))
                    return self._send(200, job) if job else self._not_found(f"job {jobs.group(2)}")
                if jobs and jobs.group(2) and method == "DELETE":
                    policy = query.get("propagationPolicy") or body.get("propagationPolicy", "")
                    if fake.delete_job(jobs.group(2), policy):
                        return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                    return self._not_found(f"job {jobs.group(2)}")
                if pods and not pods.group(2) and method == "GET":
                    wanted = dict(pair.split("=", 1) for pair in query.get("labelSelector", "").split(",") if pair)
                    items = [pod.to_json() for pods_ in list(fake.pods.values()) for pod in pods_
                             if all(pod.labels.get(k) == v for k, v in wanted.items())]
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
                if pods and pods.group(2) and method == "GET":
                    pod = fake.find_pod(pods.group(2))
                    if pod is None:
                        return self._not_found(f"pod {pods.group(2)}")
                    return self._log(pod, query) if pods.group(3) else self._send(200, pod.to_json())
                if services and method == "POST":
                    fake.services[body["metadata"]["name"]] = body
                    return self._send(201, body)
                self._send(405, {"kind": "Status", "code": 405, "message": f"{method} {url.path} not faked"})

            def _log(self, pod: FakePod, query: dict[str, str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                if query.get("follow") != "true":
                    with pod.done:
                        lines = pod.lines[-int(query["tailLines"]):] if "tailLines" in query else list(pod.lines)
                    data = b"".join(lines)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                # NOTE: a followed log is chunked, one chunk per write, as the API server streams it; a client that
                # waits for a full buffer instead of a chunk would see the events late.
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = 0
                while True:
                    with pod.done:
                        while sent == len(pod.lines) and not pod.eof:
                            pod.done.wait(0.5)
                        batch, finished = pod.lines[sent:], pod.eof
                    if batch:
                        data = b"".join(batch)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                        sent += len(batch)
                    if finished and sent == len(pod.lines):
                        self.wfile.write(b"0\r\n\r\n")
                        return

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler


class Conflict(Exception):
    pass


def with_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
