"""Partitioning: which provider runs each node, and the plan users can inspect."""
