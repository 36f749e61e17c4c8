"""A Location carries the identity it acts as, through join, pickling and every client built from it."""

from __future__ import annotations

import pickle

import dagster as dg
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from ismip6_assets.core.gcs import GcsAccess, gcs_filesystem
from ismip6_assets.core.locations import parse_location


class AnonymousGCS(dg.ConfigurableResource):
    """A dagster-gcp-style resource whose client reads anonymously (a public bucket, no ADC)."""

    project: str = "public-reader"

    def get_client(self) -> storage.Client:
        return storage.Client(project=self.project, credentials=AnonymousCredentials())


def test_a_gs_location_keeps_its_resource_and_access_through_join_and_pickle_and_builds_its_clients_from_them():
    resource, access = AnonymousGCS(), GcsAccess(emulator_host=None, credentials_file="/nowhere/adc.json")
    source = parse_location("gs://ismip6", "source").with_gcs(resource, access)
    file_folder = source.join("Projection-AIS/AWI/PISM1/exp05")
    assert file_folder.gcs is resource and file_folder == parse_location("gs://ismip6/Projection-AIS/AWI/PISM1/exp05", "x")
    assert file_folder.access is access
    assert file_folder.fs is gcs_filesystem(access, "anon")  # gcsfs as the resource's (anonymous) principal
    shipped = pickle.loads(pickle.dumps(file_folder))  # as handed to a worker process
    assert shipped.gcs == resource and shipped.access == access and "fs" not in shipped.__dict__  # clients are rebuilt there
    assert shipped.fs is gcs_filesystem(access, "anon")


def test_local_paths_carry_no_identity_and_pin_no_reads(tmp_path):
    local = parse_location(str(tmp_path), "store").with_gcs(AnonymousGCS())
    assert local.gcs is None and local.local_dir == str(tmp_path)
    assert local.pinned_read_options("mtime:1.0:size:3") is None
    assert parse_location("gs://b/p", "source").pinned_read_options("generation:42") == {"version": "42"}
    assert parse_location("gs://b/p", "source").local_dir is None
