"""Build hook: ship the repository-root weights_manifest.json inside the package.

The root file is the single source of truth (torch.hub checkouts and editable installs read it there); built wheels
carry a copy as ``fpn_zoo/weights_manifest.json``. A symlink would not do: torch.hub unpacks GitHub zips with
``zipfile``, which turns symlinks into small text files.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithManifest(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "fpn_zoo" / "weights_manifest.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(Path(__file__).parent / "weights_manifest.json"), str(target))


setup(cmdclass={"build_py": BuildPyWithManifest})
