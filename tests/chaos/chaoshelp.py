"""Helpers for the orchestrator tests: real processes, real sockets, tmp run dirs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "plans"


def chaos_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CHAOS_DEBUG", None)
    return env


def chaos_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "chaos", *args]


def run_chaos(*args: str, timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(chaos_cmd(*args), cwd=cwd, env=chaos_env(), capture_output=True,
                          text=True, timeout=timeout)


def records(journal: dict, type_: str, **match) -> list[dict]:
    """A finished run's records of one type whose fields equal ``match``."""
    return [r for r in journal["records"] if r["type"] == type_
            and all(r.get(k) == v for k, v in match.items())]


def run_valid_plan(out: Path, name: str, timeout: float = 300) -> dict:
    """Run the shipped plan ``plans/NAME.yaml`` into ``out``; assert it ends valid
    (naming any other verdict) and return its journal."""
    import json
    res = run_chaos("run", str(PLANS / f"{name}.yaml"), "--out", str(out), timeout=timeout)
    j = json.loads((out / "journal.json").read_text())
    bad = [(i["name"], i["verdict"], i["message"]) for i in j["invariants"] if i["verdict"] != "valid"]
    assert res.returncode == 0 and j["verdict"] == "valid", (res.stderr[-3000:], bad)
    return j


def start_run_until(tmp_path: Path, name: str, plan_text: str, marker: str, what: str,
                    timeout: float = 120) -> tuple[subprocess.Popen, Path]:
    """Start `chaos run` on `plan_text` in its own process group (so a signal can go to
    the whole group, as a terminal's ^C does) and return once its journal shows `marker`."""
    plan = tmp_path / f"{name}.yaml"
    plan.write_text(plan_text)
    out = tmp_path / "run"
    proc = subprocess.Popen(chaos_cmd("run", str(plan), "--out", str(out)), cwd=ROOT, env=chaos_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jl = out / "journal.jsonl"
        if jl.exists() and marker in jl.read_text():
            return proc, out
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the run never {what}: {proc.communicate()}")


def procs_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose cmdline contains `text` (e.g. a run dir)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if text in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def toxiproxy_available() -> bool:
    try:
        import chaos.toxiproxy.client  # noqa: F401
        import chaos.toxiproxy.process  # noqa: F401
    except Exception:
        return False
    return True


def node_available() -> bool:
    return (ROOT / "node" / "__main__.py").exists()


needs_toxiproxy = pytest.mark.skipif(not toxiproxy_available(),
                                     reason="chaos.toxiproxy client/process not importable yet")
needs_node = pytest.mark.skipif(not node_available(), reason="node/ has no entry point yet")

