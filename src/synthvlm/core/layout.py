"""Every path inside a run directory and an export folder: the one owner of folder and shard names.

Stages, the driver, reports, plans and validators ask this module for paths; none spells a folder or a
shard name itself.
"""

from __future__ import annotations

from pathlib import Path

from synthvlm.core import fsio

CONFIG = "config.yaml"
"""The resolved config of a run; its presence is what makes a folder a run directory."""

STAGE_ORDER = ("caption", "ingest", "curate", "generate", "score", "select", "export")
"""Every stage's folder name, in pipeline order (`stages.STAGES` registers a stage class for each)."""

_SHARD = "part-{index:05d}"
_SHARD_GLOB = "part-*"
_EXPORT_TAR = "shard-{index:05d}.tar"


def shard_name(index: int, suffix: str = ".parquet") -> str:
    """The file name of shard `index` (`part-00003.parquet`); `suffix=""` names a shard's folder."""
    return _SHARD.format(index=index) + suffix


def shard_files(folder: fsio.RunPath, suffix: str = ".parquet") -> list[fsio.RunPath]:
    """The shards in a folder, in index order."""
    return sorted(folder.glob(_SHARD_GLOB + suffix))


def shard_glob(folder: fsio.RunPath, suffix: str = ".parquet") -> str:
    """A glob matching every shard of a folder (what ingest takes as an input)."""
    return str(folder / (_SHARD_GLOB + suffix))


def task_name(phase: str, index: int) -> str:
    """`<phase>-<index:05d>`: the name of a task's completion record and rejected-row shard."""
    return f"{phase}-{index:05d}"


def task_index(name: str) -> int:
    """The index back from a task name."""
    return int(name.rsplit("-", 1)[1])


def task_phase(name: str) -> str:
    """The phase back from a task name."""
    return name.rsplit("-", 1)[0]


def models_dir(run_dir: fsio.RunPath) -> Path:
    """Where models built from `builtin:` names go: always a local folder, since loaders read local files."""
    return fsio.local_root(run_dir) / "models"


def cache_dir(run_dir: fsio.RunPath) -> Path:
    """Answers of paid endpoints (judge, VQAScore), outside the stage folders so a rerun of a stage with
    `--from` keeps them: always a local folder, as SQLite needs one."""
    return fsio.local_root(run_dir) / "cache"


def judge_cache(run_dir: fsio.RunPath) -> Path:
    """The LLM judge's answer cache."""
    return cache_dir(run_dir) / "judge.sqlite"


def vqascore_cache(run_dir: fsio.RunPath) -> Path:
    """The VQAScore endpoint's answer cache."""
    return cache_dir(run_dir) / "vqascore.sqlite"


def lock_path(run_dir: fsio.RunPath) -> fsio.RunPath:
    """The driver lock: who is running stages in this run directory right now."""
    return run_dir / "driver.lock"


def config_path(run_dir: fsio.RunPath) -> fsio.RunPath:
    return run_dir / CONFIG


def is_run_dir(path: fsio.RunPath) -> bool:
    return (path / CONFIG).exists()


class StageDir:
    """The folder of one stage in a run, and every file the driver and the stage keep there."""

    def __init__(self, run_dir: fsio.RunPath, name: str) -> None:
        self.run_dir = run_dir
        self.name = name
        self.root = run_dir / name

    # -- driver records ------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> fsio.RunPath:
        """The stage config + upstream fingerprints its outputs were made with."""
        return self.root / "fingerprint.json"

    @property
    def phases(self) -> fsio.RunPath:
        """The phase names in order, as the funnel reads them."""
        return self.root / "phases.json"

    @property
    def external_outputs(self) -> fsio.RunPath:
        """Folders the stage writes outside the run, as absolute paths or URLs."""
        return self.root / "external-outputs.json"

    @property
    def complete(self) -> fsio.RunPath:
        """The stage's funnel, written when every task of every phase is done."""
        return self.root / "complete.json"

    def plan(self, phase: str) -> fsio.RunPath:
        """The number of tasks of a phase."""
        return self.root / "plan" / f"{phase}.json"

    def plans(self) -> list[fsio.RunPath]:
        return sorted((self.root / "plan").glob("*.json"))

    def done(self, task: str) -> fsio.RunPath:
        """A task's completion record (the commit point)."""
        return self.root / "done" / f"{task}.json"

    def done_records(self, phase: str | None = None) -> list[fsio.RunPath]:
        """Completion records, of one phase or of all, in name order."""
        pattern = f"{phase}-[0-9]*.json" if phase is not None else "*.json"
        return sorted((self.root / "done").glob(pattern))

    def rejected(self, task: str) -> fsio.RunPath:
        """The rows a task dropped (the REJECTED schema)."""
        return self.root / "rejected" / f"{task}.parquet"

    def rejected_files(self) -> list[fsio.RunPath]:
        return sorted((self.root / "rejected").glob("*.parquet"))

    # -- checkpoints within a task --------------------------------------------------------------------
    def parts_dir(self, task: str) -> fsio.RunPath:
        """The committed batches of a task still running: what a rerun resumes from. Removed once the
        task's completion record is written."""
        return self.root / "parts" / task

    def part(self, task: str, index: int, kind: str, suffix: str = ".parquet") -> fsio.RunPath:
        """File `kind` of batch `index` of a task (`parts/generate-00002/part-00007.rows.parquet`)."""
        return self.parts_dir(task) / f"{shard_name(index, '')}.{kind}{suffix}"

    def parts(self, task: str, kind: str, suffix: str = ".parquet") -> list[fsio.RunPath]:
        """The files `kind` of a task's committed batches, in batch order."""
        return shard_files(self.parts_dir(task), f".{kind}{suffix}")

    # -- outputs --------------------------------------------------------------------------------------
    def shard(self, index: int, folder: str = "data") -> fsio.RunPath:
        """Output shard `index` of a table folder (`data` is the stage's output; curate keeps one folder
        per intermediate step)."""
        return self.root / folder / shard_name(index)

    def shards(self, folder: str = "data") -> list[fsio.RunPath]:
        """The output shards of a table folder, in order."""
        return shard_files(self.root / folder)

    def image_shard(self, index: int) -> fsio.RunPath:
        """Generate's WebDataset tar of shard `index`."""
        return self.run_dir / self.image_shard_ref(index)

    def image_shard_ref(self, index: int) -> str:
        """The same tar relative to the run directory, as the candidate rows store it."""
        return f"{self.name}/images/{shard_name(index, '.tar')}"

    def shard_of_image_shard(self, ref: str) -> fsio.RunPath:
        """The table shard written beside the image shard `ref` (an `image_shard_ref`): its candidates."""
        return self.shard(task_index(ref.rsplit("/", 1)[-1].removesuffix(".tar")))

    def embeddings(self, index: int) -> fsio.RunPath:
        """Score's CLIP embeddings of the candidates of shard `index` (the EMBEDDINGS schema)."""
        return self.shard(index, "embeddings")

    def embedding_shards(self) -> list[fsio.RunPath]:
        return self.shards("embeddings")

    def timing(self, index: int) -> fsio.RunPath:
        """Model-seconds per image of shard `index` (kept out of the deterministic tables)."""
        return self.shard(index, "timing")

    def timings(self) -> list[fsio.RunPath]:
        return self.shards("timing")

    def extracted_images(self, index: int) -> fsio.RunPath:
        """Caption's folder for the images of shard `index` that came out of tars or Parquet files."""
        return self.root / "images" / shard_name(index, "")

    def llava_part(self, index: int) -> fsio.RunPath:
        """Export's LLaVA entries of task `index`, joined by the finalize phase."""
        return self.root / "llava-parts" / shard_name(index, ".json")

    def llava_parts(self) -> list[fsio.RunPath]:
        return shard_files(self.root / "llava-parts", ".json")


class ExportDir:
    """One export folder: a sub-folder per format, each with a manifest that `validate` checks and a dataset
    card (README.md) whose `configs` point `datasets.load_dataset(folder)` at the format's data files."""

    LLAVA_JSON = "synthvlm_pretrain.json"
    """The LLaVA data file; pass it as --data_path and `images/` as --image_folder."""
    MANIFEST = "manifest.json"
    CARD = "README.md"
    """The Hugging Face dataset card: the hub and `datasets` read its YAML header."""
    DATA_FILES = {
        "llava": LLAVA_JSON,
        "webdataset": "shard-*.tar",
        "parquet": _SHARD_GLOB + ".parquet",
        "hf": "data/train-*.parquet",
    }
    """Per format, the glob (relative to its folder) of the files `datasets` reads: the card's data_files."""

    def __init__(self, root: fsio.RunPath) -> None:
        self.root = root

    def format_dir(self, fmt: str) -> fsio.RunPath:
        return self.root / fmt

    @staticmethod
    def manifest(folder: fsio.RunPath) -> fsio.RunPath:
        return folder / ExportDir.MANIFEST

    @staticmethod
    def llava_json(folder: fsio.RunPath) -> fsio.RunPath:
        return folder / ExportDir.LLAVA_JSON

    @staticmethod
    def llava_images(folder: fsio.RunPath) -> fsio.RunPath:
        return folder / "images"

    LLAVA_FOLDER_IMAGES = 10_000
    """Images per sub-folder of `llava/images/`, in rank order (LLaVA-558K's `00453/004539375.jpg` layout):
    file systems and `ls` stay fast at any dataset size."""

    @staticmethod
    def llava_image(key: str, rank: int) -> str:
        """A selected image's path inside `llava/images/`, as the LLaVA JSON's `image` field names it."""
        return f"{(rank - 1) // ExportDir.LLAVA_FOLDER_IMAGES:05d}/{key}.jpg"

    @staticmethod
    def webdataset_sizes(folder: fsio.RunPath) -> fsio.RunPath:
        """`{shard file name: samples}`, which open_clip's WebDataset loader reads for the dataset size."""
        return folder / "sizes.json"

    @staticmethod
    def webdataset_shard(folder: fsio.RunPath, index: int) -> fsio.RunPath:
        return folder / _EXPORT_TAR.format(index=index)

    @staticmethod
    def webdataset_shards(folder: fsio.RunPath) -> list[fsio.RunPath]:
        return sorted(folder.glob(ExportDir.DATA_FILES["webdataset"]))

    @staticmethod
    def parquet_shard(folder: fsio.RunPath, index: int) -> fsio.RunPath:
        return folder / shard_name(index)

    @staticmethod
    def parquet_shards(folder: fsio.RunPath) -> list[fsio.RunPath]:
        return shard_files(folder)

    @staticmethod
    def card(folder: fsio.RunPath) -> fsio.RunPath:
        return folder / ExportDir.CARD

    @staticmethod
    def hf_shard(folder: fsio.RunPath, index: int, count: int) -> fsio.RunPath:
        """Shard `index` of `count` in the hub's own naming (`data/train-00000-of-00003.parquet`), which the
        hub also recognises without a card."""
        return folder / "data" / f"train-{index:05d}-of-{count:05d}.parquet"

    @staticmethod
    def hf_shards(folder: fsio.RunPath) -> list[fsio.RunPath]:
        return sorted(folder.glob(ExportDir.DATA_FILES["hf"]))
