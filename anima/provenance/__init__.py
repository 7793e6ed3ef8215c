"""Provenance: signing identity, C2PA manifests and the invisible video watermark."""
