"""BEIR data sets (kept at this path; the code lives in :mod:`softdb.eval`)."""

from softdb.eval._data import DATASETS, BeirDataset, DataError, data_dir, dataset_path, get, resolve

__all__ = ["DATASETS", "BeirDataset", "DataError", "data_dir", "dataset_path", "get", "resolve"]
