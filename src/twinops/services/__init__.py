"""Embedded services for the local default: each a separate process in its own folder.

``twinops services up`` starts what no ``TWINOPS_*`` URI replaces; the state (PIDs, ports, URIs)
lives in ``TWINOPS_HOME/services.json`` so every later process (CLI, KFP local tasks) finds them.
"""
