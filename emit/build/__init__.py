"""Builders: a C folder → an artefact for one target."""
