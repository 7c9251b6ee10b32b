"""What the job writes: fragments in staging, the shard layout and formats, the merge, the manifest, the output folder's safety, the report."""
