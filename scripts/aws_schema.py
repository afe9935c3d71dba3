"""The aws provider's argument schema, distilled from cdk-terrain's prebuilt bindings.

Terraform cannot download providers here (no network but the package registries), so
`terraform validate` is out of reach. cdk-terrain's `cdktn-provider-aws` is generated from the
provider's schema and ships it as a jsii assembly (`.jsii`, a JSON type system): every resource and
data source is a class whose initializer takes a `<Name>Config` struct, whose properties are the
arguments one can set and whose nested blocks are further structs. This script downloads the wheel
once (`pip download`, about 60 MB), reads the assembly straight out of it, and keeps only what the
schema check needs (tests/deploy/tfschema.py), as a small JSON file under .cache/.

What the assembly holds, and how it is read (checked against the whole assembly, not guessed):
- Classes with base `cdktf.TerraformResource` / `cdktf.TerraformDataSource` carry their Terraform
  type in their summary, `Represents a {@link .../docs/resources/lambda_function
  aws_lambda_function}` (`docs/data-sources/...` for data sources); the initializer's `config`
  parameter names the struct.
- Every struct property's docs link to `...#<terraform_name> <Class>#<terraform_name>`: that anchor
  is the Terraform name. Deriving it from the camelCase property name would be wrong in dozens of
  cases (`equalTo` is `equals`, `selfAttribute` is `self`, `fetchPasswordData` is
  `get_password_data`, `addressLine1` is `address_line_1`).
- A nested block's summary reads `<name> block.`; its type is a struct (at most one block), or an
  array of structs (unioned with IResolvable). A few blocks deeper than the generator follows are
  typed `any`: their contents are not checked. A struct-typed property without that summary is an
  attribute holding an object or a list of objects (`name = {...}`, `name = [{...}]`). The
  assembly cannot tell a list of objects that the provider lets one write as blocks too (SDK
  "attributes as blocks", `ingress {...}` of aws_security_group) from one it does not, so the
  check accepts both spellings for lists of objects, and only `name = {...}` for a single object.
- A property without `optional` is required. Meta-arguments come from the interface
  `cdktf.TerraformMetaArguments` (another assembly), so they are not among the properties.

    python scripts/aws_schema.py --out .cache/tfschema/aws.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The oldest cdk-terrain build of the aws provider (6.28.0): the closest there is to versions.tf's
# `>= 5.40` (cdk-terrain has no 5.x bindings). Changing it re-downloads (the Makefile depends on
# this file).
PACKAGE = "cdktn-provider-aws"
VERSION = "21.23.0"
DEFAULT_OUT = ROOT / ".cache" / "tfschema" / "aws.json"
FORMAT = 1

_TYPE_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/([\w-]+/[\w-]+)/([\w.]+)/docs/"
    r"(resources|data-sources)/\w+ (\w+)\}"
)
_PROVIDER_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/([\w-]+/[\w-]+)/([\w.]+)"
)
_ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")
_FQN = re.compile(r'"fqn": "([^"]+)"')

Schema = dict[str, Any]


def _doc_text(member: dict[str, Any]) -> str:
    docs = member.get("docs", {})
    return f"{docs.get('summary', '')} {docs.get('remarks', '')}"


def _config_fqn(cls: dict[str, Any]) -> str:
    for param in cls["initializer"]["parameters"]:
        if param["name"] == "config":
            return str(param["type"]["fqn"])
    raise ValueError(f"{cls['fqn']}: no config parameter")


class _Distiller:
    def __init__(self, assembly: dict[str, Any]) -> None:
        self.name = assembly["name"]
        self.types: dict[str, Any] = assembly["types"]
        self.structs: dict[str, Schema] = {}

    def _local(self, fqn: str) -> str:
        return fqn.removeprefix(self.name + ".")

    def struct(self, fqn: str) -> str:
        """Distil one struct (and the blocks below it); returns its key in `structs`."""
        key = self._local(fqn)
        if key in self.structs:
            return key
        arguments: dict[str, bool] = {}
        objects: dict[str, Schema] = {}
        blocks: dict[str, Schema] = {}
        self.structs[key] = {"arguments": arguments, "objects": objects, "blocks": blocks}
        for prop in self.types[fqn].get("properties", []):
            anchor = _ANCHOR.search(_doc_text(prop))
            if anchor is None:
                raise ValueError(f"{fqn}.{prop['name']}: no Terraform name in its docs")
            tf_name = anchor.group(1)
            required = not prop.get("optional", False)
            type_text = json.dumps(prop["type"])
            refs = [r for r in _FQN.findall(type_text) if r.startswith(self.name + ".")]
            single = "fqn" in prop["type"]
            if not prop.get("docs", {}).get("summary", "").endswith(" block."):
                arguments[tf_name] = required
                if refs:  # an attribute holding objects; a list of them may be written as blocks
                    objects[tf_name] = {"single": single, "struct": self.struct(refs[0])}
                continue
            blocks[tf_name] = {
                "required": required,
                "single": single,
                "struct": self.struct(refs[0]) if refs else None,  # None: typed `any`
            }
        return key

    def run(self) -> Schema:
        out: Schema = {"resource": {}, "data": {}, "structs": self.structs}
        for fqn, cls in sorted(self.types.items()):
            if cls["kind"] != "class":
                continue
            base = cls.get("base")
            summary = cls.get("docs", {}).get("summary", "")
            if base == "cdktf.TerraformProvider":
                link = _PROVIDER_LINK.search(summary)
                if link is None:
                    raise ValueError(f"{fqn}: no provider link in {summary!r}")
                out["source"], out["version"] = link.groups()
                out["provider"] = self.struct(_config_fqn(cls))
            elif base in ("cdktf.TerraformResource", "cdktf.TerraformDataSource"):
                link = _TYPE_LINK.search(summary)
                if link is None:
                    raise ValueError(f"{fqn}: no Terraform type in {summary!r}")
                kind = "resource" if link.group(3) == "resources" else "data"
                out[kind][link.group(4)] = self.struct(_config_fqn(cls))
        if "provider" not in out or not out["resource"]:
            raise ValueError(f"{self.name}: no provider or resources in the assembly")
        return out


def distil(assembly: dict[str, Any]) -> Schema:
    """The provider, resource and data source argument schemas of a cdktf/cdktn jsii assembly."""
    return _Distiller(assembly).run()


def read_assembly(wheel: Path) -> dict[str, Any]:
    """The `.jsii` file inside the npm tarball inside the Python wheel (nothing else extracted)."""
    with zipfile.ZipFile(wheel) as zipped:
        inner = [n for n in zipped.namelist() if n.endswith(".jsii.tgz")]
        if len(inner) != 1:
            raise ValueError(f"{wheel.name}: expected one *.jsii.tgz, found {inner}")
        with (
            zipped.open(inner[0]) as raw,
            tarfile.open(fileobj=io.BufferedReader(raw), mode="r|gz") as tar,  # type: ignore[arg-type]
        ):
            for member in tar:
                if member.name == "package/.jsii":
                    handle = tar.extractfile(member)
                    if handle is None:
                        break
                    return json.load(handle)
    raise ValueError(f"{wheel.name}: no package/.jsii")


def download(workdir: Path) -> Path:
    subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(workdir),
            f"{PACKAGE}=={VERSION}",
        ],
        check=True,
    )
    (wheel,) = workdir.glob("*.whl")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--wheel", type=Path, help="use this wheel instead of downloading it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aws-schema-") as tmp:
        wheel = args.wheel or download(Path(tmp))
        print(f"aws schema: {wheel.name} ({wheel.stat().st_size / 1e6:.0f} MB)")
        schema = distil(read_assembly(wheel))
    schema["package"] = f"{PACKAGE}=={VERSION}"
    schema["format"] = FORMAT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".partial")
    partial.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    os.replace(partial, args.out)
    print(
        f"aws schema: provider {schema['source']} {schema['version']}, "
        f"{len(schema['resource'])} resources, {len(schema['data'])} data sources -> {args.out} "
        f"({args.out.stat().st_size / 1e6:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
