"""Probe sources: coordinate and image variants behind one interface, and the registry that names them all."""
