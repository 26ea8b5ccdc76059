"""Checkpoints inside a task: every finished batch (one pipeline call) is committed as a part, and a rerun
of the task resumes after the last committed part.

A part is a few files under `layout.StageDir.parts_dir(task)`, each written atomically; its `rows` table
is written last and is the commit point. The task's final shard is assembled from the parts, so an
interrupted and an uninterrupted run give the same bytes; the driver removes the parts once the task's
completion record is written.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

import pyarrow as pa

from synthvlm.core import fsio, interrupt, layout
from synthvlm.core.webdataset import add_member, iter_tar

ROWS = "rows"
"""The kind of a part's commit-point table."""


class TaskParts:
    """The committed batches of one task of a stage."""

    def __init__(self, stage_dir: layout.StageDir, task: str) -> None:
        self.stage_dir = stage_dir
        self.task = task

    def committed(self) -> int:
        """How many batches are committed: parts 0..n-1 each have their rows table."""
        indices = {layout.task_index(p.name.split(".", 1)[0]) for p in self.stage_dir.parts(self.task, ROWS)}
        n = 0
        while n in indices:
            n += 1
        return n

    def write_tar(self, index: int, members: list[tuple[str, bytes]]) -> None:
        """A part's tar members (written before its rows table)."""
        with fsio.atomic_path(self.stage_dir.part(self.task, index, "images", ".tar")) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in members:
                    add_member(tar, name, data)

    def write_table(self, index: int, kind: str, table: pa.Table) -> None:
        """A table of a part other than its rows (written before them)."""
        fsio.write_table(self.stage_dir.part(self.task, index, kind), table)

    def commit(self, index: int, rows: pa.Table) -> None:
        """Write the part's rows table: the part now counts as done. Then honour a requested stop."""
        fsio.write_table(self.stage_dir.part(self.task, index, ROWS), rows)
        interrupt.checkpoint()

    def table_rows(self, index: int, kind: str) -> int:
        """Rows of table `kind` of part `index`, from its footer."""
        return fsio.parquet_rows(self.stage_dir.part(self.task, index, kind))

    def table(self, kind: str, count: int, table_schema: pa.Schema) -> pa.Table:
        """Table `kind` of parts 0..count-1 as one table, in part order."""
        tables = [fsio.read_table(self.stage_dir.part(self.task, i, kind)) for i in range(count)]
        return concat(tables, table_schema)

    def tar_members(self, count: int) -> Iterator[tuple[str, bytes]]:
        """Every tar member of parts 0..count-1, in order."""
        for i in range(count):
            with fsio.local_copy(self.stage_dir.part(self.task, i, "images", ".tar")) as local:
                yield from iter_tar(local)


def concat(tables: list[pa.Table], table_schema: pa.Schema) -> pa.Table:
    """Tables of one schema as one contiguous table, so it writes as a table built in one piece would."""
    if not tables:
        return table_schema.empty_table()
    return pa.concat_tables(tables).combine_chunks().cast(table_schema)


def remove_finished(stage_dir: layout.StageDir) -> None:
    """Delete the parts of tasks whose completion record exists (left by a stop between the two)."""
    done = {p.stem for p in stage_dir.done_records()}
    parts_root = stage_dir.root / "parts"
    if not parts_root.exists():
        return
    for folder in parts_root.iterdir():
        if folder.name in done:
            fsio.remove_tree(folder)
