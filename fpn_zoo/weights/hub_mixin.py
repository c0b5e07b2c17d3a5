"""``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``, and the detector class that has them.

[`ZooDetector`][fpn_zoo.weights.hub_mixin.ZooDetector] here, exported as ``fpn_zoo.ZooDetector``, is the model of
[`fpn_zoo.detector`][fpn_zoo.detector] with [`ZooHubMixin`][fpn_zoo.weights.hub_mixin.ZooHubMixin] applied; it is
what [`create_model`][fpn_zoo.factory.create_model], the torch.hub entrypoints and the CLI build. The mixin is
applied in this module, above the model, because it needs the factory and the exporter: the model's own import graph
holds no I/O (``tests/test_import_graph.py`` checks it).

The three methods follow ``huggingface_hub.ModelHubMixin``'s signatures and conventions (a local folder or a Hub
repository id; ``config.json`` + ``model.safetensors`` + ``README.md``; one ``upload_folder`` commit; the model comes
back in eval mode), so code written for Hub models works here.

Why not subclass ``ModelHubMixin``: its machinery would all have to be overridden. It builds ``config.json`` from
the ``__init__`` arguments captured in ``__new__``, but ``ZooDetector(config, backbone)`` takes a built backbone
module, and fpn_zoo's ``config.json`` is the export format ``create_model(weights=...)`` reads
(``{"format_version", "model": ModelConfig, ...provenance}``), not a dump of constructor arguments. Its
``from_pretrained`` instantiates ``cls(**config)`` and loads with ``strict=False`` by default, where fpn_zoo's loader
is strict and only ever drops the class predictor on request; and it downloads with ``hf_hub_download`` alone, whereas
every Hub file here goes through [`fetch_hub_file`][fpn_zoo.weights.hub_download.fetch_hub_file] for its sha256 check.
What would remain (card metadata class attributes) is a dict. So this mixin implements the three methods on top of
[`create_model`][fpn_zoo.factory.create_model] and [`write_export`][fpn_zoo.publish.export.write_export], and needs no
``__init__``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from fpn_zoo import detector
from fpn_zoo.weights.checkpoint import CONFIG_FILENAME, WEIGHTS_FILENAME, CheckpointError, read_checkpoint
from fpn_zoo.weights.hub_download import HF_HUB_PREFIX, fetch_hub_file, parse_hf_hub_spec

__all__ = ["ZooDetector", "ZooHubMixin"]

T = TypeVar("T", bound="ZooHubMixin")
DEFAULT_COMMIT_MESSAGE = "Push model using fpn_zoo."


def _hub_repo(name_or_path: str, revision: str | None) -> tuple[str, str | None]:
    """``ORG/NAME`` or ``hf-hub:ORG/NAME[@REV]`` as (repo_id, revision)."""
    spec = name_or_path if name_or_path.startswith(HF_HUB_PREFIX) else HF_HUB_PREFIX + name_or_path
    try:
        repo_id, spec_revision = parse_hf_hub_spec(spec)
    except ValueError:
        raise ValueError(
            f"{name_or_path!r} is neither a local folder nor a Hub repository id ('ORG/NAME' or "
            "'hf-hub:ORG/NAME@REVISION')."
        ) from None
    if spec_revision is not None and revision is not None and spec_revision != revision:
        raise ValueError(f"Two revisions given: {spec_revision!r} in {name_or_path!r} and revision={revision!r}.")
    return repo_id, spec_revision or revision


def _download(
    repo_id: str,
    revision: str | None,
    *,
    force_download: bool,
    hub_kwargs: dict[str, Any],
) -> Path:
    """``model.safetensors`` and ``config.json`` of one commit in the Hugging Face cache, sha256-verified."""
    weights = fetch_hub_file(repo_id, WEIGHTS_FILENAME, revision, force_download=force_download, **hub_kwargs)
    # The config of the same commit, even if the branch moved between the two requests.
    fetch_hub_file(repo_id, CONFIG_FILENAME, weights.commit, **hub_kwargs)
    return weights.path


class ZooHubMixin:
    """Hub-style saving and loading, for subclasses of [`fpn_zoo.detector.ZooDetector`][fpn_zoo.detector.ZooDetector].

    Mixed into [`ZooDetector`][fpn_zoo.weights.hub_mixin.ZooDetector] below.
    """

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        strict: bool = True,
        device: Any = None,
        **model_kwargs: Any,
    ) -> T:
        """Load an exported detector from a local folder or a Hub repository; the model name comes from its config.

        Args:
            pretrained_model_name_or_path: A folder with ``model.safetensors`` + ``config.json``, a Hub repository id
                ``"ORG/NAME"``, or ``"hf-hub:ORG/NAME@REVISION"``.
            force_download: Download again even if the files are cached.
            token: Hub token (default: ``HF_TOKEN`` or the ``hf auth login`` one).
            cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE``).
            local_files_only: Use the cache only, never the network.
            revision: Branch, tag or 40-hex commit (a commit is served from the cache without a network call).
            strict: ``True`` (default) loads every tensor exactly; a ``num_classes`` other than the checkpoint's is
                then an error. ``False`` allows exactly one exception: with ``num_classes=K`` the class predictor
                is re-initialised (with a warning naming the dropped tensors). Nothing else is ever left random.
            device: ``None`` = CUDA when available, else CPU.
            **model_kwargs: ``num_classes`` and [`ModelConfig`][fpn_zoo.config.ModelConfig] overrides, as for
                [`fpn_zoo.create_model`][fpn_zoo.factory.create_model].

        Returns:
            The detector in eval mode.

        Raises:
            ValueError: Not a folder nor a repository id, a folder without ``config.json``, or ``num_classes``
                other than the checkpoint's with ``strict=True``.
            WeightsMismatchError: Weights that do not fit the model ``config.json`` names.
            WeightsDownloadError: As [`fpn_zoo.create_model`][fpn_zoo.factory.create_model] with
                ``weights="hf-hub:..."``.
            WeightsIntegrityError: As [`fpn_zoo.create_model`][fpn_zoo.factory.create_model] with
                ``weights="hf-hub:..."``.

        Examples:
            >>> from fpn_zoo import ZooDetector
            >>> model = ZooDetector.from_pretrained("acme/fpn_r50_bccd", revision="v1")  # doctest: +SKIP
            >>> model = ZooDetector.from_pretrained("export/", strict=False, num_classes=5)  # doctest: +SKIP
        """
        from fpn_zoo.factory import create_model  # deferred: the factory imports this module

        source = str(pretrained_model_name_or_path)
        if os.path.isdir(source):
            weights = Path(source)
        else:
            repo_id, rev = _hub_repo(source, revision)
            hub_kwargs = {"token": token, "cache_dir": cache_dir, "local_files_only": local_files_only}
            weights = _download(repo_id, rev, force_download=force_download, hub_kwargs=hub_kwargs)
        ckpt = read_checkpoint(weights)
        if ckpt.config is None:
            raise CheckpointError(
                f"{source} has no {CONFIG_FILENAME}, so the model is unknown; load the weights with "
                f"fpn_zoo.create_model(NAME, weights={str(ckpt.weights_path)!r}) instead."
            )
        num_classes = model_kwargs.get("num_classes")
        if strict and num_classes is not None and num_classes != ckpt.config.num_classes:
            raise ValueError(
                f"num_classes={num_classes} differs from the checkpoint's {ckpt.config.num_classes}: strict=True loads "
                "every tensor. Pass strict=False to re-initialise the class predictor for fine-tuning."
            )
        model = create_model(ckpt.config.name, weights=weights, device=device, **model_kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{source} holds a {type(model).__name__}, not a {cls.__name__}.")
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write the export folder: ``model.safetensors``, ``config.json`` and a ``README.md`` model card.

        Unlike ``ModelHubMixin``, an existing ``README.md`` is replaced: the card states the weights' sha256, so a
        card from an earlier save would describe other weights.

        Args:
            save_directory: Folder, created if needed.
            repo_id: Hub repository for the card's usage snippets and for ``push_to_hub`` (default for the push:
                the folder name, as ``ModelHubMixin`` does).
            push_to_hub: Also upload the folder ([`push_to_hub`][fpn_zoo.weights.hub_mixin.ZooHubMixin.push_to_hub]).
            model_card_kwargs: Card contents, passed to [`write_export`][fpn_zoo.publish.export.write_export]:
                ``metrics`` ([`Metric`][fpn_zoo.weights.manifest.Metric] objects, each with its source), ``license``,
                ``datasets``, ``tag``, ``gflops_input_size`` (e.g. ``(800, 800)`` to count GFLOPs: one CPU forward
                pass; default: not counted).
            **push_to_hub_kwargs: Passed to [`push_to_hub`][fpn_zoo.weights.hub_mixin.ZooHubMixin.push_to_hub].

        Returns:
            The commit URL when pushed, else ``None``.

        Examples:
            >>> card = {"license": "apache-2.0", "gflops_input_size": (800, 800)}
            >>> model.save_pretrained("export/fpn_r50_bccd", model_card_kwargs=card)  # doctest: +SKIP
        """
        from fpn_zoo.publish.export import write_export  # deferred: building a model never imports the exporter

        card = {"gflops_input_size": None, **(model_card_kwargs or {})}
        write_export(self._as_detector(), save_directory, repo_id=repo_id, **card)
        if push_to_hub:
            return self.push_to_hub(
                repo_id or Path(save_directory).name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs
            )
        return None

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = DEFAULT_COMMIT_MESSAGE,
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Upload the model in one commit: ``create_repo(exist_ok=True)``, save to a temporary folder, upload it.

        The transfer is ``huggingface_hub``'s. To list the weights in ``weights_manifest.json`` as well, save and
        use ``fpn-zoo publish`` instead: it pins the commit and records the sha256.

        Args:
            repo_id: ``"ORG/NAME"``; created if missing.
            commit_message: Message of the commit.
            private: Visibility of a newly created repository (``None``: the account's default).
            token: Hub token (default: ``HF_TOKEN`` or the ``hf auth login`` one).
            branch: Branch to commit to (default ``main``); created if missing, unless ``create_pr``.
            create_pr: Open a pull request with the commit instead of committing to the branch.
            model_card_kwargs: As for [`save_pretrained`][fpn_zoo.weights.hub_mixin.ZooHubMixin.save_pretrained].

        Returns:
            The commit URL (a ``huggingface_hub.CommitInfo``, whose ``.oid`` is the commit id).
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        if branch not in (None, "main") and not create_pr:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fpn-zoo-push-") as tmp:
            self.save_pretrained(tmp, repo_id=repo_id, model_card_kwargs=model_card_kwargs)
            return api.upload_folder(
                repo_id=repo_id,
                repo_type="model",
                folder_path=tmp,
                commit_message=commit_message,
                revision=branch,
                create_pr=create_pr,
            )

    def _as_detector(self) -> detector.ZooDetector:
        if not isinstance(self, detector.ZooDetector):
            raise TypeError(f"ZooHubMixin is for ZooDetector, not {type(self).__name__}.")
        return self


class ZooDetector(detector.ZooDetector, ZooHubMixin):
    """The zoo detector with ``from_pretrained``, ``save_pretrained`` and ``push_to_hub``: ``fpn_zoo.ZooDetector``.

    The model itself is [`fpn_zoo.detector.ZooDetector`][fpn_zoo.detector.ZooDetector] (same constructor, forward
    and state dict); this subclass adds [`ZooHubMixin`][fpn_zoo.weights.hub_mixin.ZooHubMixin]'s methods. It is
    what [`fpn_zoo.create_model`][fpn_zoo.factory.create_model], the torch.hub entrypoints and the CLI return, so
    ``isinstance(model, fpn_zoo.detector.ZooDetector)`` holds for those models too.

    Examples:
        >>> import fpn_zoo
        >>> model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", min_size=128, max_size=128)
        >>> isinstance(model, fpn_zoo.ZooDetector), isinstance(model, detector.ZooDetector)
        (True, True)
        >>> model.save_pretrained("export/fpn_r50_coco")  # doctest: +SKIP
    """
