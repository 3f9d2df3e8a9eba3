"""Validate Kubernetes manifests offline: built-in kinds against the Kubernetes JSON schemas of
kubernetes-validate (strict: unknown fields are errors), Prometheus Operator kinds against the
openAPIV3Schema of their CRDs (made strict the same way).

    kustomize build deploy/kubernetes | python tools/validate_k8s.py --crds DIR [-k 1.30 -k 1.37] -

Needs kubernetes-validate importable and the CRD YAMLs in ``--crds``; tools/install-k8s-tools.sh
puts both in the cache (run this with PYTHONPATH=<its kubernetes_validate dir>). Prints one line
per problem; exit status 1 when there is one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_VERSIONS = ("1.30.0", "1.37.0")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads a bare ``=`` (in the CRDs' enums) as a string (PyYAML #89)."""


def _value(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:value", _value)


def _strict(schema: Any) -> Any:
    """The CRD schema with additionalProperties: false wherever it lists properties and does not
    say unknown fields are kept (what kubeconform's -strict does with CRD schemas)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_schemas(crd_dir: Path) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON schema, from every CRD in ``crd_dir``."""
    schemas: dict[tuple[str, str], Any] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


def validate(docs: list[dict[str, Any]], crds: dict[tuple[str, str], Any], versions: tuple[str, ...]) -> list[str]:
    # From the --target dir of tools/install-k8s-tools.sh (PYTHONPATH), not the project env.
    import jsonschema  # type: ignore[import-untyped,unused-ignore]
    import kubernetes_validate.utils as kv  # type: ignore[import-not-found,unused-ignore]

    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        if key in crds:
            validator = jsonschema.Draft7Validator(crds[key])
            problems += [f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
            continue
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                problems.append(f"{name} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kv.SchemaNotFoundError as e:
                problems.append(f"{name}: {e.message}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crds", type=Path, required=True, help="folder of CustomResourceDefinition YAMLs")
    parser.add_argument("-k", "--kubernetes-version", action="append", help=f"default: {', '.join(DEFAULT_VERSIONS)}")
    parser.add_argument("files", nargs="+", help="manifest files, - for stdin")
    args = parser.parse_args(argv)
    docs = []
    for f in args.files:
        text = sys.stdin.read() if f == "-" else Path(f).read_text()
        docs += [d for d in yaml.safe_load_all(text) if d]
    crds = crd_schemas(args.crds)
    if not crds:
        print(f"no CustomResourceDefinitions in {args.crds}", file=sys.stderr)
        return 2
    problems = validate(docs, crds, tuple(args.kubernetes_version or DEFAULT_VERSIONS))
    for p in problems:
        print(p)
    print(f"{len(docs)} objects, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
