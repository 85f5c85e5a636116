"""Datasets: VTAB-1K folders and video clip lists."""

from dyt.data.vtab import VTAB_GROUPS, VTAB_TASKS, VTABFolder, read_split_file, vtab_group_means

__all__ = ["VTAB_GROUPS", "VTAB_TASKS", "VTABFolder", "read_split_file", "vtab_group_means"]
