"""An archive with the real ISMIP6 AIS archive's shape (see /work/shared/ismip6-facts.md).

439 model/experiment partitions across 17 institution/model folders with the real experiment
counts, 10,034 files (22 or 23 variables a partition), real NetCDF files of the real per-file structure
on tiny grids, so the benchmark measures per-file, per-chunk and per-partition costs, not bytes:
86 time steps (2015-2100), one chunk per step (NetCDF4: time-chunked, zlib; NetCDF3: time as the
record dimension, one record a step), and the archive's mix of formats: mostly NetCDF4, one
partition in `NETCDF3_EVERY` NetCDF3 (64-bit offset). Cost grows with chunk count, not bytes.
``scale`` keeps the model folders and scales the experiments per model (at least 1 each).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# (institution, model folder, model token in file names, experiments) - the real counts.
MODELS = [
    ("AWI", "PISM1", "PISM1", 33),
    ("CPOM", "BISICLES", "BISICLES", 3),
    ("DOE", "MALI", "MALI", 9),
    ("ILTS_PIK", "SICOPOLIS1", "SICOPOLIS", 60),
    ("IMAU", "IMAUICE1", "IMAUICE1", 10),
    ("IMAU", "IMAUICE2", "IMAUICE2", 14),
    ("JPL1", "ISSM", "ISSM", 58),
    ("LSCE", "GRISLI2", "GRISLI2", 58),
    ("NCAR", "CISM", "CISM", 59),
    ("PIK", "PISM1", "PISM1", 6),
    ("PIK", "PISM2", "PISM2", 5),
    ("UCIJPL", "ISSM", "ISSM", 50),
    ("ULB", "fETISh_16km", "fETISh", 25),
    ("ULB", "fETISh_32km", "fETISh", 25),
    ("UTAS", "ElmerIce", "ElmerIce", 4),
    ("VUB", "AISMPALEO", "AISMPALEO", 14),
    ("VUW", "PISM", "PISM", 6),
]
FULL_PARTITIONS = 439
FULL_FILES = 10_034
EXPERIMENTS = (
    ["ctrl_proj_std", "ctrl_proj_open", "hist_std", "hist_open"]
    + [f"exp{i:02d}" for i in range(1, 14)]
    + [f"expA{i}" for i in range(1, 9)]
    + [f"expB{i}" for i in range(1, 11)]
    + [f"expC{i}" for i in range(1, 13)]
    + [f"expD{i}" for i in range(1, 19) if i != 12]  # NCAR/CISM/expD12 is skip-listed as a whole
    + [f"expD{i}" for i in range(51, 59)]
    + [f"expE{i}" for i in range(1, 19)]
)
SCALARS = {"lim", "limnsw", "iareagr", "iareafl", "tendacabf", "tendlibmassbf", "tendlibmassbffl", "tendlicalvf", "tendlifmassbf", "tendligroundf"}
VARIABLES = sorted(
    "base iareafl iareagr lim limnsw litempbotfl litempbotgr litemptop lithk orog sftflf sftgif sftgrf strbasemag topg "
    "xvelbase xvelmean xvelsurf yvelbase yvelmean yvelsurf zvelbase zvelsurf acabf dlithkdt hfgeoubed libmassbffl "
    "libmassbfgr licalvf lifmassbf ligroundf tendacabf tendlibmassbf tendlibmassbffl tendlicalvf tendlifmassbf tendligroundf".split()
)
N_TIMES = 86  # annual steps of a projection, 2015-2100
NETCDF3_EVERY = 8  # partitions i with i % 8 == 5 are NetCDF3 (the real archive: "mostly NetCDF4")
# 376 partitions of 23 files + 63 of 22 = 10,034 files.
FILES_PER_PARTITION = FULL_FILES / FULL_PARTITIONS


def plan(scale: float = 1.0) -> list[tuple[str, str, str, str, list[str]]]:
    """(institution, model, token, experiment, variables) for every partition at `scale`."""
    out = []
    for inst, model, token, n_exp in MODELS:
        for exp in EXPERIMENTS[: max(1, round(n_exp * scale))]:
            out.append((inst, model, token, exp))
    result = []
    for i, (inst, model, token, exp) in enumerate(out):
        # Spread the 23-file partitions evenly: partition i gets floor((i+1)*r) - floor(i*r) extra files.
        n = int((i + 1) * FILES_PER_PARTITION) - int(i * FILES_PER_PARTITION)
        offset = (i * 7) % len(VARIABLES)
        variables = [VARIABLES[(offset + k) % len(VARIABLES)] for k in range(n)]
        result.append((inst, model, token, exp, variables))
    return result


def netcdf_format(partition_index: int) -> str:
    return "NETCDF3_64BIT_OFFSET" if partition_index % NETCDF3_EVERY == 5 else "NETCDF4"


def _write_file(args: tuple) -> None:
    import netCDF4

    path, variable, n_times, n, fmt = args if len(args) == 5 else (*args, "NETCDF4")
    rng = np.random.default_rng(abs(hash(path)) % 2**32)
    nc4 = fmt == "NETCDF4"
    compression = {"zlib": True, "complevel": 1} if nc4 else {}
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.Conventions = "CF-1.7"
        nc.createDimension("time", n_times if nc4 else None)  # NetCDF3: the record dimension
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.standard_name, t.axis = "days since 2015-01-01", "365_day", "time", "T"
        t[:] = np.arange(n_times) * 365.0
        if variable in SCALARS:
            v = nc.createVariable(variable, "f8", ("time",), **compression, **({"chunksizes": (1,)} if nc4 else {}))
            v[:] = 2.6e19 + rng.normal(0, 1e16, n_times)
        else:
            for axis in ("y", "x"):
                nc.createDimension(axis, n)
                c = nc.createVariable(axis, "f8", (axis,))
                c.units, c.standard_name = "m", f"projection_{axis}_coordinate"
                c[:] = np.linspace(-3_040_000.0, 3_040_000.0, n)
            v = nc.createVariable(variable, "f4", ("time", "y", "x"), **compression, **({"chunksizes": (1, n, n)} if nc4 else {}))
            v[:] = rng.normal(1000.0, 300.0, (n_times, n, n)).astype("float32")
        v.units = "1"


def write_archive(dest: str | Path, scale: float = 1.0, n_times: int = N_TIMES, grid: int = 8, workers: int = 2) -> dict:
    """Write the archive under ``dest/Projection-AIS`` unless a complete one is there; return its shape."""
    dest = Path(dest)
    parts = plan(scale)
    formats = [netcdf_format(i) for i in range(len(parts))]
    shape = {"scale": scale, "partitions": len(parts), "files": sum(len(p[4]) for p in parts), "models": len(MODELS),
             "chunks_per_variable": n_times, "grid": grid,
             "netcdf3_files": sum(len(p[4]) for p, f in zip(parts, formats) if f != "NETCDF4")}
    marker = dest / "shape.json"
    if marker.exists() and json.loads(marker.read_text()) == shape:
        return shape
    jobs = []
    for (inst, model, token, exp, variables), fmt in zip(parts, formats):
        folder = dest / "Projection-AIS" / inst / model / exp
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [(str(folder / f"{v}_AIS_{inst}_{token}_{exp}.nc"), v, n_times, grid, fmt) for v in variables]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_file, jobs, chunksize=64))
    marker.write_text(json.dumps(shape))
    return shape


def first_partition(dest: str | Path) -> str:
    """``INST/MODEL/EXP`` of the first file in path order (the one `touch_one` rewrites)."""
    first = sorted((Path(dest) / "Projection-AIS").rglob("*.nc"))[0]
    return "/".join(first.parent.relative_to(Path(dest) / "Projection-AIS").parts)


def touch_one(dest: str | Path) -> Path:
    """Rewrite one file with other bytes (new mtime and size): the 'one changed file' refresh case."""
    first = sorted((Path(dest) / "Projection-AIS").rglob("*.nc"))[0]
    variable = first.name.split("_AIS_")[0]
    _write_file((str(first), variable, N_TIMES + 1, 8))
    return first


def restore_one(path: Path) -> None:
    """Undo `touch_one`: the file again has the archive's shape (with a new mtime)."""
    _write_file((str(path), path.name.split("_AIS_")[0], N_TIMES, 8))


def write_partitions(dest: str | Path, partitions: int, files: int, grid: int = 8) -> None:
    """`partitions` partitions of `files` files each (names beyond the 37 standard ones are made up)."""
    dest = Path(dest)
    marker = dest / "shape.json"
    wanted = {"partitions": partitions, "files": files, "chunks_per_variable": N_TIMES}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return
    names = (VARIABLES + [f"extra{i:03d}" for i in range(files)])[:files]
    jobs = []
    for p in range(partitions):
        folder = dest / "Projection-AIS" / "MEM" / "MODEL" / f"exp{p + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [(str(folder / f"{v}_AIS_MEM_MODEL_exp{p + 1:02d}.nc"), v, N_TIMES, grid) for v in names]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_write_file, jobs, chunksize=32))
    marker.write_text(json.dumps(wanted))


def code_commit(repo: Path) -> str:
    """The commit a bench measured, marked when the package had uncommitted changes."""
    import subprocess

    git = ["git", "-C", str(repo)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "ismip6_assets"], capture_output=True, text=True).stdout.strip():
        commit += " + uncommitted changes"
    return commit
