"""The offline Kubernetes tools, from tools/install-k8s-tools.sh (cached outside the repo by version):
kustomize, kubernetes-validate (Kubernetes JSON schemas) and the Prometheus Operator CRDs."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "tools" / "install-k8s-tools.sh"
VALIDATE = ROOT / "tools" / "validate_k8s.py"
KUSTOMIZATION = ROOT / "deploy" / "kubernetes"


@dataclass(frozen=True)
class K8sTools:
    kustomize: Path
    kubernetes_validate: Path  # a --target dir: use through PYTHONPATH
    prometheus_operator_crds: Path

    def build(self, path: Path = KUSTOMIZATION) -> str:
        res = subprocess.run([str(self.kustomize), "build", str(path)], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"kustomize build {path} failed:\n{res.stderr}")
        return res.stdout

    def validate(self, manifests: str) -> subprocess.CompletedProcess[str]:
        """tools/validate_k8s.py on ``manifests``: returncode 0 and no output when all is valid."""
        env = {**os.environ, "PYTHONPATH": str(self.kubernetes_validate)}
        return subprocess.run(
            [sys.executable, str(VALIDATE), "--crds", str(self.prometheus_operator_crds), "-"],
            input=manifests,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )


@functools.cache
def install() -> K8sTools:
    """Runs the install script (a no-op once cached; minutes the first time). Raises
    RuntimeError with the script's output when a tool cannot be built or fetched here."""
    res = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"{INSTALL.name} failed: {res.stderr.strip()[-800:]}")
    paths = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return K8sTools(
        Path(paths["kustomize"]), Path(paths["kubernetes_validate"]), Path(paths["prometheus_operator_crds"])
    )
