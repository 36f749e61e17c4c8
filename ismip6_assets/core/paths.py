"""Archive path parsing, partition keys and store group names. Pure: no I/O.

Every name that reaches a partition key or a store group passes `validate_name`, so a hostile
folder (``..``, control characters, Unicode look-alikes) can never escape its group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ARCHIVE_TOP = "Projection-AIS"
# ASCII letters, digits, '_' and '-' only: rejects '..', '/', whitespace, control characters
# and look-alike Unicode, and keeps '/' free to separate partition-key parts.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_VARIABLE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


class InvalidName(ValueError):
    """A folder or file name that must not become part of a key or group path."""


def validate_name(name: str, what: str = "name") -> str:
    if not _NAME.fullmatch(name) or "__" in name:
        raise InvalidName(f"invalid {what} {name!r}: expected ASCII letters, digits, '_' or '-'")
    return name


@dataclass(frozen=True, order=True)
class PartitionKey:
    """One model/experiment: the unit of a Dagster partition and of a store experiment group.

    The key string is ``INST/MODEL/EXP``: readable, and unambiguous because names never contain
    '/' (``ILTS_PIK`` has an underscore, so ``INST_MODEL`` alone could not be split back).
    """

    institution: str
    model: str
    experiment: str

    def __post_init__(self) -> None:
        validate_name(self.institution, "institution")
        validate_name(self.model, "model")
        validate_name(self.experiment, "experiment")

    @classmethod
    def parse(cls, key: str) -> PartitionKey:
        parts = key.split("/")
        if len(parts) != 3:
            raise InvalidName(f"invalid partition key {key!r}: expected INSTITUTION/MODEL/EXPERIMENT")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.institution}/{self.model}/{self.experiment}"

    @property
    def model_group(self) -> str:
        """The upstream store layout joins institution and model with '_' (``ILTS_PIK_SICOPOLIS1``)."""
        return f"{self.institution}_{self.model}"

    @property
    def group(self) -> str:
        return f"{self.model_group}/{self.experiment}"

    @property
    def archive_dir(self) -> str:
        return f"{ARCHIVE_TOP}/{self.institution}/{self.model}/{self.experiment}"

    def variable_group(self, variable: str) -> str:
        return f"{self.group}/{variable}"


@dataclass(frozen=True)
class ArchiveFile:
    """A recognised archive file: ``Projection-AIS/INST/MODEL/EXP/{var}_AIS_..._{EXP}.nc``."""

    relpath: str
    partition: PartitionKey
    variable: str

    @property
    def group(self) -> str:
        return self.partition.variable_group(self.variable)


def parse_variable(filename: str, experiment: str) -> str:
    """Variable from a file name's first token.

    UCIJPL/ISSM prefixes the experiment to the variable in 200 files
    (``exp13acabf_AIS_UCIJPL_ISSM_exp13.nc`` is ``acabf``), so a leading experiment name is dropped.
    """
    if not filename.endswith(".nc"):
        raise InvalidName(f"not a .nc file: {filename!r}")
    token, sep, _rest = filename[: -len(".nc")].partition("_AIS_")
    if not sep:
        raise InvalidName(f"file name {filename!r} lacks the '_AIS_' part of {{var}}_AIS_..._{{EXP}}.nc")
    if token.startswith(experiment) and len(token) > len(experiment):
        token = token[len(experiment) :]
    if not _VARIABLE.fullmatch(token):
        raise InvalidName(f"invalid variable {token!r} in file name {filename!r}")
    return token


def parse_archive_path(relpath: str) -> ArchiveFile:
    """Parse a path relative to the source root; raise `InvalidName` saying why it does not fit."""
    parts = relpath.strip("/").split("/")
    if len(parts) != 5 or parts[0] != ARCHIVE_TOP:
        raise InvalidName(f"{relpath!r} is not {ARCHIVE_TOP}/INST/MODEL/EXP/FILE.nc")
    _, institution, model, experiment, filename = parts
    partition = PartitionKey(institution, model, experiment)
    return ArchiveFile(relpath="/".join(parts), partition=partition, variable=parse_variable(filename, experiment))
